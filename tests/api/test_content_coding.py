"""A request body sent with a content coding (gzip and the like) is refused with 415, and nothing is stored.

The Functions host decodes no request body (tests/devhost/test_http_streams.py), so the app gets the
compressed bytes with their Content-Encoding; read as they are, they would be taken for the data (a CSV
job over gzip bytes fails only when it runs). RFC 9110 15.5.16: 415, and Accept-Encoding names what is
accepted.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from jobs.streamed_input import BLOCK_BYTES
from tests.api.probes import footprint

CSV = {"kind": "csv-report", "group_by": "region", "metrics": "amount"}
ENVELOPE = {"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 0}}


def _json(document: Any) -> dict[str, Any]:
    return {"content": gzip.compress(json.dumps(document).encode()), "headers": {"Content-Type": "application/json"}}


CODED = [
    ("/api/jobs", _json(ENVELOPE)),
    ("/api/jobs/batch", _json({"jobs": [ENVELOPE]})),
    ("/api/uploads", _json({"content_type": "text/csv"})),
    ("/api/tasks", _json({"vector_data": [[3, 4]]})),
    (
        "/api/jobs",
        {"content": gzip.compress(b"region,amount\neu,1\n"), "params": CSV, "headers": {"Content-Type": "text/csv"}},
    ),
]


@pytest.mark.parametrize(("path", "request_args"), CODED, ids=[f"{p} {a['headers']['Content-Type']}" for p, a in CODED])
def test_a_compressed_body_is_refused_before_anything_is_stored(
    devhost: DevHost, azurite: Azurite, path: str, request_args: dict[str, Any]
) -> None:
    before = footprint(devhost, azurite.connection_string)
    request_args = {**request_args, "headers": {**request_args["headers"], "Content-Encoding": "gzip"}}
    response = devhost.client.post(path, **request_args)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["accept-encoding"] == "identity"
    assert [error["field"] for error in response.json()["errors"]] == ["Content-Encoding"]
    assert footprint(devhost, azurite.connection_string) == before


def test_a_large_compressed_raw_body_is_refused_and_stages_nothing(devhost: DevHost, azurite: Azurite) -> None:
    """A body over one block would be staged while it arrives (jobs.streamed_input): refused before that."""
    before = footprint(devhost, azurite.connection_string)
    body = b"region,amount\n" + b"eu,1\n" * ((BLOCK_BYTES + 1024) // 5)
    response = devhost.client.post(
        "/api/jobs", params=CSV, content=body, headers={"Content-Type": "text/csv", "Content-Encoding": "br"}
    )
    assert response.status_code == 415, response.text
    assert response.headers["accept-encoding"] == "identity"
    assert footprint(devhost, azurite.connection_string) == before


def test_identity_is_no_coding(devhost: DevHost) -> None:
    """`identity` (RFC 9110 8.4.1) means the body is as it is: accepted like a body without the header."""
    response = devhost.client.post(
        "/api/jobs",
        content=json.dumps(ENVELOPE).encode(),
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
    )
    assert response.status_code == 202, response.text
