"""Storage outages: every route answers 503 + Retry-After within about two seconds (#16 item 3).

The SDK's default retries (a 15 s first backoff) held requests for minutes and then answered 500;
storage/clients.py sets the API's retries and timeouts deliberately. The test stops its own Azurite
(the session's is shared), so it needs a private one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
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
        if elapsed > ANSWER_WITHIN_SECONDS:
            slow.append((method, path, round(elapsed, 1)))
    started = time.monotonic()
    health = client.get("/api/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert int(health.headers["retry-after"]) >= 1
    if time.monotonic() - started > ANSWER_WITHIN_SECONDS:
        slow.append(("GET", "/api/health", round(time.monotonic() - started, 1)))
    assert slow == [], slow
