"""devhost.sanitizer against the cases of the host's own Sanitizer (azure-functions-host, Sanitizer.cs)."""

from __future__ import annotations

import pytest

from devhost.sanitizer import sanitize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("boom AccountKey=abc;rest", "boom [Hidden Credential]"),
        ('{"conn": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k"}', '{"conn": "[Hidden Credential]"}'),
        ("see https://blob/x?sv=1&sig=abc<br>", "see https://blob/x?sv=1[Hidden Credential]<br>"),
        ("token=abc'then", "[Hidden Credential]'then"),
        ("Version=1.0, PublicKeyToken=31bf3856ad364e35", "Version=1.0, PublicKeyToken=31bf3856ad364e35"),
        ("at amqp://user:pass@host:5671 now", "at [Hidden Credential] now"),
        ("nothing secret here", "nothing secret here"),
        ("", ""),
        (None, ""),
    ],
)
def test_sanitize_hides_what_the_host_hides(text: str | None, expected: str) -> None:
    assert sanitize(text) == expected
