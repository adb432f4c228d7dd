"""Idempotency-Key: one key, one job, even under concurrent retries; a reused key with another request is 409."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from devhost.testing.harness import DevHost
from jobs.requests import job_id_for
from tests.api.probes import count_blobs, count_job_rows, eventually, footprint, instances

VECTORS = {"kind": "vector-normalize", "input": {"vector_data": [[3.0, 4.0], [0.0, 0.0]], "metadata": {"n": 1}}}


def test_the_same_key_and_request_name_the_same_job(devhost, azurite):
    key = f"order-{uuid.uuid4()}"
    first = devhost.client.post("/api/jobs", json=VECTORS, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    assert job_id == job_id_for(key) and key not in first.text
    before = started_footprint(devhost, azurite.connection_string, job_id)
    again = devhost.client.post("/api/jobs", json=VECTORS, headers={"Idempotency-Key": key})
    assert again.status_code == 202
    assert again.json()["id"] == job_id
    assert again.headers["location"] == first.headers["location"]
    assert footprint(devhost, azurite.connection_string) == before
    # Key order in JSON does not make a different request.
    reordered = {"input": VECTORS["input"], "kind": "vector-normalize", "options": {}}
    assert devhost.client.post("/api/jobs", json=reordered, headers={"Idempotency-Key": key}).json()["id"] == job_id


def test_the_same_key_with_a_different_request_is_409(devhost, azurite):
    key = f"order-{uuid.uuid4()}"
    first = devhost.client.post("/api/jobs", json=VECTORS, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    before = started_footprint(devhost, azurite.connection_string, first.json()["id"])
    other = {"kind": "vector-normalize", "input": {"vector_data": [[1.0, 0.0]]}}
    response = devhost.client.post("/api/jobs", json=other, headers={"Idempotency-Key": key})
    assert response.status_code == 409
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert key not in response.text
    assert footprint(devhost, azurite.connection_string) == before


def started_footprint(devhost: DevHost, conn: str, job_id: str) -> tuple[int, int, int]:
    """The footprint once the job's orchestration exists: a submit answers before it starts the job."""
    eventually(lambda: instances(devhost, instanceIdPrefix=job_id))
    return footprint(devhost, conn)


LARGE_VECTORS = {"kind": "vector-normalize", "input": {"vector_data": [[1.0] * 5000]}}
"""Over jobs.inline_input's threshold: its input goes to one blob, which sixteen duplicates must not multiply."""


def test_sixteen_concurrent_duplicates_start_one_job(devhost, azurite):
    key = f"burst-{uuid.uuid4()}"
    job_id = job_id_for(key)
    barrier = threading.Barrier(16)

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=devhost.base_url, timeout=30) as client:
            barrier.wait()
            return client.post("/api/jobs", json=LARGE_VECTORS, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(post, range(16)))
    assert [r.status_code for r in responses] == [202] * 16, [r.text for r in responses if r.status_code != 202]
    assert {r.json()["id"] for r in responses} == {job_id}
    assert {r.headers["location"] for r in responses} == {f"{devhost.base_url}/api/jobs/{job_id}"}
    assert [i["instanceId"] for i in instances(devhost, instanceIdPrefix=job_id)] == [job_id]
    assert count_blobs(azurite.connection_string, prefix=f"jobs/{job_id}/input") == 1
    final = devhost.wait_for_job(f"/api/jobs/{job_id}")
    assert final.json()["status"] == "COMPLETED"
    assert count_job_rows(azurite.connection_string) >= 2


def test_the_same_key_for_a_raw_body_names_the_same_job(devhost):
    key = f"csv-{uuid.uuid4()}"
    params = {"kind": "csv-report", "group_by": "region", "metrics": "amount"}
    body = b"region,amount\neu,1\nus,2\n"
    headers = {"Content-Type": "text/csv", "Idempotency-Key": key}
    first = devhost.client.post("/api/jobs", content=body, headers=headers, params=params)
    second = devhost.client.post("/api/jobs", content=body, headers=headers, params=params)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    changed = devhost.client.post("/api/jobs", content=body + b"eu,3\n", headers=headers, params=params)
    assert changed.status_code == 409
