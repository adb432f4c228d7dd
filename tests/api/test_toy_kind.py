"""A new kind is one module: a toy kind registered by a test is accepted by POST /api/jobs, listed by the
OpenAPI document and offered for uploads, with no edit to api/ or jobs/ (issue #14).

The routes run in-process against Azurite; the Durable client is the one stand-in (it records the start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from azurefunctions.extensions.http.fastapi import Request, Response

import kinds
from api.http import dispatch
from api.jobs import submit
from api.openapi import openapi_document
from shared.settings import Settings, get_settings
from storage.clients import close_storage_clients
from tests.jobs.test_submit import AcceptingDurable
from tests.kinds import toy_kind

TEXT = b"one\n\nthree\n"


@pytest.fixture
def settings(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def raw_submit(durable: AcceptingDurable, body: bytes = TEXT) -> Response:
    # The request as the HTTP streams web server hands it to the function (an ASGI scope and its body).
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("127.0.0.1", 7071),
        "root_path": "",
        "path": "/api/jobs",
        "raw_path": b"/api/jobs",
        "query_string": b"kind=line-count",
        "headers": [
            (b"host", b"127.0.0.1:7071"),
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
        ],
        "path_params": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    req = Request(scope, receive)

    async def call() -> Response:
        try:
            return await dispatch(req, {"POST": lambda: submit(req, durable)})
        finally:
            await close_storage_clients()

    return asyncio.run(call())


def test_a_toy_kind_is_accepted_and_documented_while_registered(settings: Settings) -> None:
    durable = AcceptingDurable()
    with kinds.registered(toy_kind.KIND):
        accepted = raw_submit(durable)
        assert accepted.status_code == 202, accepted.body
        doc = openapi_document("http://127.0.0.1:7071", settings)
    assert len(durable.started) == 1
    schemas = doc["components"]["schemas"]
    assert "line-count" in schemas["JobRequest"]["discriminator"]["mapping"]
    toy = schemas["JobRequest.line-count"]
    assert toy["properties"]["kind"] == {"const": "line-count"} and "input_ref" in toy["properties"]
    assert "skip_blank" in toy["properties"]["options"]["properties"]
    submit_op = doc["paths"]["/api/jobs"]["post"]
    assert "text/plain" in submit_op["requestBody"]["content"]
    assert "line-count" in submit_op["parameters"][1]["schema"]["enum"]
    format_param = doc["paths"]["/api/jobs/{job_id}/result"]["parameters"][1]
    assert format_param["x-formats-by-kind"]["line-count"] == ["json", "text"]
    assert "text" in format_param["schema"]["enum"]
    upload_types = doc["paths"]["/api/uploads"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "text/plain" in upload_types["properties"]["content_type"]["enum"]

    # Unregistered, the same request is refused and the document forgets the kind.
    refused = raw_submit(durable)
    assert refused.status_code == 415 and len(durable.started) == 1
    doc = openapi_document("http://127.0.0.1:7071", settings)
    assert "JobRequest.line-count" not in doc["components"]["schemas"]


def test_the_document_follows_the_registry_for_the_shipped_kinds(settings: Settings) -> None:
    """The drift #14 found: `format` allowed json/csv while vector-normalize renders ndjson too."""
    doc = openapi_document("http://127.0.0.1:7071", settings)
    format_param = doc["paths"]["/api/jobs/{job_id}/result"]["parameters"][1]
    assert format_param["x-formats-by-kind"]["vector-normalize"] == ["json", "ndjson", "csv"]
    assert set(format_param["schema"]["enum"]) >= {"json", "csv", "ndjson"}
    enabled = set(kinds.kind_names(simulate_enabled=settings.enable_simulate_kind))
    assert set(doc["components"]["schemas"]["JobRequest"]["discriminator"]["mapping"]) == enabled
