"""A small job's result is kept in its job row (storage.jobs.INLINE_RESULT_BYTES): no result blob is written
or read, and every way of reading the result gives the same document as before (issue #15: Put Blob is the
dearest request a small job made)."""

from __future__ import annotations

import time

from azure.storage.blob import BlobServiceClient

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from storage.names import RESULTS_CONTAINER, job_prefix


def _finished(host: DevHost, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        job = host.client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return dict(job)
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_small_result_is_read_from_the_job_row(devhost: DevHost, azurite: Azurite) -> None:
    body = {"kind": "vector-normalize", "input": {"vector_data": [[3, 4], [1, 0]], "metadata": {"k": "v"}}}
    response = devhost.client.post("/api/jobs", json=body)
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert _finished(devhost, job_id)["status"] == "COMPLETED"

    results = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        RESULTS_CONTAINER
    )
    assert [blob.name for blob in results.list_blobs(name_starts_with=job_prefix(job_id))] == []

    result = devhost.client.get(f"/api/jobs/{job_id}/result")
    assert result.status_code == 200 and result.headers["content-type"].startswith("application/json")
    assert result.json()["vectors"] == [[0.6, 0.8], [1.0, 0.0]]
    assert result.json()["metadata_processed"] == {"k": "v"}
