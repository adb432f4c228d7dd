"""Requests as the Functions host delivers them (#9, the app's side): function keys in the query
string, and raw bodies sent without Content-Length."""

from __future__ import annotations

import json
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


def test_a_chunked_json_envelope_is_read_as_it_streams_in(devhost):
    """With HTTP streams the host forwards a chunked body to the worker (`DefaultHttpProxyService`), where
    the classic host handed it over empty: a JSON envelope needs no Content-Length any more."""
    envelope = json.dumps({"kind": "vector-normalize", "input": {"vector_data": [[3, 4]]}}).encode()

    def chunks() -> Iterator[bytes]:
        yield envelope[:10]
        yield envelope[10:]

    response = devhost.client.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    final = devhost.wait_for_job(response.headers["location"], timeout=60)
    assert final.json()["status"] == "COMPLETED", final.text


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(devhost_factory, azurite):
    """No length to check up front: the API counts the body as it reads it and answers 413 at the limit,
    so an endless body is neither buffered nor stored."""
    host = devhost_factory(env={"MAX_JSON_BODY_BYTES": "500"})
    before = footprint(host, azurite.connection_string)
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"kind": "simulate", "options": {"x": "'
        for _ in range(20_000):  # 20 MB if nobody stops it
            sent += 1000
            yield b"y" * 1000

    response = host.client.post("/api/jobs", content=endless(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert footprint(host, azurite.connection_string) == before


def test_a_function_key_in_the_query_string_stays_out_of_the_logs(devhost):
    """The worker's web server logs each request; `api/access_log.py` keeps the query (and `?code=`) out."""
    response = devhost.client.get("/api/jobs", params={"limit": "1", "code": FUNCTION_KEY})
    assert response.status_code == 200
    assert '"GET /api/jobs HTTP/1.1" 200' in devhost.logs()
    assert FUNCTION_KEY not in devhost.logs()
