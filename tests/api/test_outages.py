"""Storage outages: every route answers 503 + Retry-After within about two seconds (#16 item 3).

The SDK's default retries (a 15 s first backoff) held requests for minutes and then answered 500;
storage/clients.py sets the API's retries and timeouts deliberately. The test stops its own Azurite
(the session's is shared), so it needs a private one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from azurefunctions.extensions.http.fastapi import Request, Response

from api.events import HEARTBEAT_FRAME, event_stream
from api.http import dispatch
from devhost.azurite import development_connection_string
from devhost.testing.azurite import Azurite, free_port
from devhost.testing.harness import DevHost
from jobs.events import Heartbeat
from shared.settings import Settings
from storage import jobs as job_store
from storage.clients import close_storage_clients, storage_clients
from tests.api.documented import Contract
from tests.conftest import DEFAULT_TEST_ENV

pytestmark = pytest.mark.slow

ANSWER_WITHIN_SECONDS = 3.0  # ~2 s, plus slack for a loaded test machine


@pytest.fixture
def host_without_storage() -> Iterator[tuple[DevHost, str]]:
    azurite = Azurite.start()
    host = DevHost(azurite.connection_string, env=dict(DEFAULT_TEST_ENV))
    try:
        host.start()
        job = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1}})
        assert job.status_code == 202, job.text
        host.wait_for_job(job.headers["location"])
        azurite.stop()
        yield host, job.json()["id"]
    finally:
        host.stop(timeout=20)
        azurite.stop()


def test_every_route_answers_503_with_retry_after_promptly_while_storage_is_down(host_without_storage):
    host, job_id = host_without_storage
    client = httpx.Client(base_url=host.base_url, timeout=30)
    contract = Contract(client.get("/api/openapi.json").json())  # the document needs no storage
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/jobs", {"json": {"kind": "simulate", "options": {"chunks": 1}}}),
        ("POST", "/api/jobs", {"json": {"kind": "simulate"}, "headers": {"Idempotency-Key": "outage-1"}}),
        ("POST", "/api/jobs", {"json": {"kind": "vector-normalize", "input": {"vector_data": [[3, 4]]}}}),
        (
            "POST",
            "/api/jobs",
            {
                "params": {"kind": "csv-report", "group_by": "g"},
                "content": b"g,v\nx,1\n",
                "headers": {"Content-Type": "text/csv"},
            },
        ),  # fmt: skip
        (
            "POST",
            "/api/jobs",
            {
                "params": {"kind": "csv-report", "group_by": "g"},
                "content": b"g,v\n" + b"x,1\n" * (6 * 1024 * 1024 // 4),
                "headers": {"Content-Type": "text/csv"},
            },
        ),  # fmt: skip  # a body over 4 MiB, which streams to its blob (jobs.streamed_input)
        ("GET", f"/api/jobs/{job_id}", {}),
        ("GET", "/api/jobs", {}),
        ("GET", f"/api/jobs/{job_id}/result", {}),
        ("DELETE", f"/api/jobs/{job_id}", {}),
        ("POST", "/api/uploads", {"json": {"content_type": "text/csv"}}),
        ("GET", "/api/dead-letters", {}),
        ("GET", "/api/dead-letters/poison-x", {}),
        ("POST", "/api/dead-letters/poison-x/replay", {}),
    ]
    slow = []
    for method, path, kwargs in requests:
        started = time.monotonic()
        response = client.request(method, path, **kwargs)
        elapsed = time.monotonic() - started
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert int(response.headers["retry-after"]) >= 1, (method, path)
        contract.check(response)
        if elapsed > ANSWER_WITHIN_SECONDS:
            slow.append((method, path, round(elapsed, 1)))
    started = time.monotonic()
    health = client.get("/api/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    contract.check(health)
    assert not contract.broken, "\n".join(contract.broken)
    assert int(health.headers["retry-after"]) >= 1
    if time.monotonic() - started > ANSWER_WITHIN_SECONDS:
        slow.append(("GET", "/api/health", round(time.monotonic() - started, 1)))
    assert slow == [], slow


# --- storage answering 5xx: throttled (ServerBusy) or failing inside ---------------------------------------


class _BusyStorage:
    """A loopback server answering every request as a throttled Azure Storage account does: 503 ServerBusy
    (in the table service's JSON error format; the blob and queue SDKs read the x-ms-error-code header)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        error = {"odata.error": {"code": "ServerBusy", "message": {"lang": "en-US", "value": "The server is busy."}}}
        return web.json_response(error, status=503, headers={"x-ms-error-code": "ServerBusy"})

    def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> _BusyStorage:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_storage_answering_server_busy_is_a_503_with_retry_after_not_a_500() -> None:
    """Azure Storage throttles an account with 503 ServerBusy (and answers 500 OperationTimedOut or
    InternalError when it fails inside). Once the API's one retry is spent, the request may succeed later:
    503 + Retry-After, as for storage that does not answer. It used to be a 500 "internal error"."""
    with _BusyStorage() as busy:
        port = busy.port
        settings = Settings(AzureWebJobsStorage=development_connection_string((port, port, port)))
        scope = {"type": "http", "method": "GET", "path": "/api/jobs/x", "query_string": b"", "headers": []}

        async def read_a_job() -> Response:
            clients = await storage_clients(settings)
            try:
                await job_store.get_job(clients.jobs, "x")
            finally:
                await close_storage_clients()
            raise AssertionError("storage answered")

        response = asyncio.run(dispatch(Request(scope), {"GET": read_a_job}))
    assert busy.requests >= 2  # the SDK did reach it (and retried once)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    problem = json.loads(bytes(response.body))
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["status"] == 503 and problem["type"].endswith("unavailable")


def test_an_event_stream_ends_cleanly_when_storage_answers_server_busy_mid_stream() -> None:
    """The status line is sent already: the stream ends after what it sent (the client reconnects with
    Last-Event-ID), where the error used to escape the response body and abort the connection."""
    with _BusyStorage() as busy:
        port = busy.port
        settings = Settings(AzureWebJobsStorage=development_connection_string((port, port, port)))

        async def feed() -> AsyncIterator[Heartbeat]:
            yield Heartbeat()
            clients = await storage_clients(settings)
            try:
                await job_store.get_job(clients.jobs, "x")
            finally:
                await close_storage_clients()
            yield Heartbeat()

        async def body() -> list[bytes]:
            return [frame async for frame in event_stream(feed(), "http://h", 0.3, "jobs/events")]

        frames = asyncio.run(body())
    assert frames == [b"retry: 300\n\n", HEARTBEAT_FRAME]
