"""Requests as the Functions host delivers them (#9, the app's side): function keys in the query
string, and raw bodies sent without Content-Length."""

from __future__ import annotations

from collections.abc import Iterator

from tests.api.probes import FUNCTION_KEY, footprint

CSV = b"g,v\nx,1\ny,2\n"


def test_a_function_key_in_the_query_string_is_not_an_option(devhost):
    """The host passes `code` on to the function (docs/api.md offers ?code=); it is not a kind option."""
    response = devhost.client.post(
        "/api/jobs",
        params={"kind": "csv-report", "group_by": "g", "code": FUNCTION_KEY},
        content=CSV,
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    final = devhost.wait_for_job(response.headers["location"], timeout=60)
    assert final.json()["status"] == "COMPLETED", final.text
    assert final.json()["result"]["rows"] == 2


def test_a_raw_body_without_content_length_is_411_and_stores_nothing(devhost, azurite):
    """A chunked body reaches a Python function empty in Azure (the host does not stream it to the
    worker), so it must never be taken for the input: 411, and a way out (uploads)."""

    def chunks() -> Iterator[bytes]:
        yield CSV[:5]
        yield CSV[5:]

    before = footprint(devhost, azurite.connection_string)
    response = devhost.client.post(
        "/api/jobs",
        params={"kind": "csv-report", "group_by": "g"},
        content=chunks(),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 411, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert "Content-Length" in problem["detail"] and "/api/uploads" in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["Content-Length"]
    assert footprint(devhost, azurite.connection_string) == before
