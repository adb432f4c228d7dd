"""No job left behind (#16 item 1): a crash between recording a job and starting it.

The crash is reproduced exactly: the job's rows are written as the submitter writes them, and no
orchestration is started (the submitter died). Then the client retries, cancels, or nobody comes back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from jobs.requests import JobRequest, job_id_for, key_hash
from jobs.submit import parse_options, resolve_kind
from jobs.sweep import ORPHAN_AFTER
from shared.clock import utc_now
from shared.settings import Settings
from storage import jobs as job_store
from storage.clients import close_storage_clients, storage_clients
from storage.names import PAYLOADS_CONTAINER, job_input_blob_name
from tests.api.probes import count_blobs, instances

SIMULATE: dict[str, Any] = {"kind": "simulate", "options": {"chunks": 1}}


def record_then_die(conn: str, key: str | None, created: datetime, *, with_input: bool = False) -> str:
    """Write a simulate job's rows (and its input) as submit_job does, and start nothing; returns the job id."""
    settings = Settings(AzureWebJobsStorage=conn, ENABLE_SIMULATE_KIND=True)
    options = parse_options(resolve_kind("simulate", settings), {"chunks": 1})
    request = JobRequest(
        kind="simulate", options=options, deadline_seconds=None, input_bytes=None, input_ref=None,
        input_content_type=None, idempotency_key=key, source="http",
    )  # fmt: skip
    job_id = job_id_for(key)
    record = job_store.new_job_record(
        job_id=job_id, kind="simulate", created=created,
        input_ref=job_input_blob_name(job_id) if with_input else None, input_content_type=None, options=options,
        deadline_at=None, idempotency_key_hash=key_hash(key) if key else None, fingerprint=request.fingerprint(),
        source="http",
    )  # fmt: skip

    async def write() -> None:
        clients = await storage_clients(settings)
        try:
            assert await job_store.insert_job(clients.jobs, record)
            if with_input:
                blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
                await blob.upload_blob(b"{}", overwrite=True)
        finally:
            await close_storage_clients()

    asyncio.run(write())
    return job_id


def test_a_keyed_retry_right_after_the_crash_starts_the_job(devhost, azurite):
    """Before: the retry got 202 and the job stayed PENDING until a retry 60 s later."""
    key = f"crash-{uuid.uuid4()}"
    job_id = record_then_die(azurite.connection_string, key, utc_now())
    retry = devhost.client.post("/api/jobs", json=SIMULATE, headers={"Idempotency-Key": key})
    assert retry.status_code == 202 and retry.json()["id"] == job_id, retry.text
    final = devhost.wait_for_job(retry.headers["location"], timeout=60)
    assert final.json()["status"] == "COMPLETED", final.text
    assert [i["instanceId"] for i in instances(devhost, instanceIdPrefix=job_id)] == [job_id]


def test_cancelling_a_job_that_never_started_ends_it(devhost, azurite):
    """Before: DELETE answered 202 and the job stayed PENDING for ever."""
    key = f"crash-{uuid.uuid4()}"
    job_id = record_then_die(azurite.connection_string, key, utc_now())
    cancelled = devhost.client.delete(f"/api/jobs/{job_id}")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    polled = devhost.client.get(f"/api/jobs/{job_id}")
    assert polled.status_code == 200 and polled.json()["status"] == "CANCELLED"
    again = devhost.client.post("/api/jobs", json=SIMULATE, headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json()["status"] == "CANCELLED"  # the key names the cancelled job
    assert instances(devhost, instanceIdPrefix=job_id) == []


@pytest.mark.slow
def test_orphans_are_swept_and_no_longer_counted(devhost_factory: Any, azurite):
    """Before: an unkeyed orphan stayed PENDING for ever, was never purged and was counted by health."""
    host = devhost_factory(env={"RETENTION_SCHEDULE": "*/1 * * * * *"})
    long_ago = utc_now() - ORPHAN_AFTER - timedelta(minutes=5)
    orphan = record_then_die(azurite.connection_string, None, long_ago, with_input=True)
    recent = record_then_die(azurite.connection_string, None, utc_now())  # its submitter may still be alive
    conn = azurite.connection_string
    deadline = time.monotonic() + 30
    while host.client.get(f"/api/jobs/{orphan}").status_code != 404:
        assert time.monotonic() < deadline, "the orphan was not swept"
        time.sleep(0.2)
    assert count_blobs(conn, prefix=job_input_blob_name(orphan)) == 0
    assert host.client.get(f"/api/jobs/{recent}").json()["status"] == "PENDING"
    listed = host.client.get("/api/jobs", params={"status": "PENDING", "kind": "simulate", "limit": 100}).json()
    assert orphan not in {item["id"] for item in listed["items"]}  # health counts the same index rows
