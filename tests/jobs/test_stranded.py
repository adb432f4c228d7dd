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
from azure.data.tables import TableClient

from jobs import admission, inline_input
from jobs.recovery import RESTART_AFTER
from jobs.requests import JobRequest, job_id_for, key_hash
from jobs.submit import admission_ticket, parse_options, resolve_kind
from jobs.sweep import ORPHAN_AFTER
from shared.clock import utc_now
from shared.settings import Settings
from storage import jobs as job_store
from storage.clients import close_storage_clients, storage_clients
from storage.names import JOBS_TABLE, PAYLOADS_CONTAINER, job_input_blob_name
from tests.api.probes import count_blobs, eventually, instances

SIMULATE: dict[str, Any] = {"kind": "simulate", "options": {"chunks": 1}}


def record_then_die(
    conn: str,
    key: str | None,
    created: datetime,
    *,
    with_input: bool = False,
    placed_in: str | None = None,
    listed: bool = True,
    inline: bytes | None = None,
) -> str:
    """Write a simulate job's rows (and its input) as submit_job does, and start nothing; returns the job id.

    `placed_in`: a task hub whose admission lane the job joins too: the job was accepted (answered 202),
    and only its start, which runs after the answer, was lost. `listed=False`: the job row only, as a submit
    leaves it whose index write failed and whose undo failed too. `inline`: a vector-normalize job instead,
    with this small input travelling in its job row (jobs.inline_input), as a submit records it.
    """
    settings = Settings(AzureWebJobsStorage=conn, ENABLE_SIMULATE_KIND=True, TASK_HUB_NAME=placed_in or "longrun")
    kind, raw_options = ("simulate", {"chunks": 1}) if inline is None else ("vector-normalize", {})
    options = parse_options(resolve_kind(kind, settings), raw_options)
    request = JobRequest(
        kind=kind, options=options, deadline_seconds=None, input_bytes=inline, input_ref=None,
        input_content_type=None if inline is None else "application/json", idempotency_key=key, source="http",
    )  # fmt: skip
    job_id = job_id_for(key)
    record = job_store.new_job_record(
        job_id=job_id, kind=kind, created=created,
        input_ref=job_input_blob_name(job_id) if with_input else None,
        input_content_type=request.input_content_type, options=options, deadline_at=None,
        idempotency_key_hash=key_hash(key) if key else None, fingerprint=request.fingerprint(), source="http",
        input_inline=inline_input.inline_text(request) if inline is not None else None,
    )  # fmt: skip
    assert inline is None or record["input_inline"], "the test input must be small enough to travel inline"

    async def write() -> None:
        clients = await storage_clients(settings)
        try:
            if listed:
                assert await job_store.insert_job(clients.jobs, record)
            else:
                assert await job_store.create_job_row(clients.jobs, record)
            if with_input:
                blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
                await blob.upload_blob(b"{}", overwrite=True)
            if placed_in is not None:
                assert await admission.enqueue_async(settings, [(admission_ticket(record), job_id)]) == ["admitted"]
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


def test_a_poll_starts_an_accepted_job_whose_start_was_lost(devhost, azurite):
    """The submit answers 202 before it starts the orchestration; if the instance dies in between, the
    client's next poll (RESTART_AFTER after the record) starts the job, and the job runs to its end."""
    created = utc_now() - RESTART_AFTER - timedelta(seconds=1)
    job_id = record_then_die(azurite.connection_string, None, created, placed_in=devhost.task_hub)
    assert instances(devhost, instanceIdPrefix=job_id) == []
    final = devhost.wait_for_job(f"/api/jobs/{job_id}", timeout=60)
    assert final.json()["status"] == "COMPLETED", final.text
    assert [i["instanceId"] for i in instances(devhost, instanceIdPrefix=job_id)] == [job_id]


def test_a_poll_leaves_a_young_or_unaccepted_job_alone(devhost, azurite):
    """A job younger than RESTART_AFTER may still be started by its submitter; one without its place was never
    answered 202 (its submitter failed and answered 503): a poll starts neither."""
    young = record_then_die(azurite.connection_string, None, utc_now(), placed_in=devhost.task_hub)
    created = utc_now() - RESTART_AFTER - timedelta(seconds=1)
    unplaced = record_then_die(azurite.connection_string, None, created)
    for job_id in (young, unplaced):
        polled = devhost.client.get(f"/api/jobs/{job_id}")
        assert polled.status_code == 202 and polled.json()["status"] == "PENDING", polled.text
    time.sleep(1.0)
    assert instances(devhost, instanceIdPrefix=young) == [] and instances(devhost, instanceIdPrefix=unplaced) == []


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


@pytest.mark.slow
def test_the_retention_removes_an_orphan_row_that_has_no_index_row(devhost_factory: Any, azurite):
    """Before: the sweeps read the index only, so such a row and its input stayed for ever."""
    host = devhost_factory(env={"RETENTION_SCHEDULE": "*/1 * * * * *"})
    long_ago = utc_now() - ORPHAN_AFTER - timedelta(minutes=5)
    conn = azurite.connection_string
    orphan = record_then_die(conn, None, long_ago, with_input=True, listed=False)
    recent = record_then_die(conn, None, utc_now(), listed=False)  # its submitter may still be undoing
    deadline = time.monotonic() + 30
    while host.client.get(f"/api/jobs/{orphan}").status_code != 404:
        assert time.monotonic() < deadline, "the unlisted orphan was not removed"
        time.sleep(0.2)
    assert count_blobs(conn, prefix=job_input_blob_name(orphan)) == 0
    assert job_row(conn, recent)["status"] == "PENDING"


@pytest.mark.slow
@pytest.mark.parametrize("inline", [None, b'{"vector_data":[[3,4]]}'], ids=["no input", "inline input"])
def test_the_sweep_starts_an_accepted_job_nobody_polls(devhost_factory: Any, azurite, inline):
    """An accepted job whose start was lost and whose client never comes back is started by the sweep, with
    its whole request: the sweep finds it through its index row, which does not hold an inline input (the
    fault suite saw such a job started without it end FAILED "this job kind needs an input")."""
    host = devhost_factory(env={"RETENTION_SCHEDULE": "*/1 * * * * *"})
    created = utc_now() - RESTART_AFTER - timedelta(seconds=1)
    job_id = record_then_die(azurite.connection_string, None, created, placed_in=host.task_hub, inline=inline)
    deadline = time.monotonic() + 60
    while (row := job_row(azurite.connection_string, job_id))["status"] == "PENDING":  # not polled: read the table
        assert time.monotonic() < deadline, "the sweep did not start the job"
        time.sleep(0.5)
    eventually(lambda: job_row(azurite.connection_string, job_id)["status"] != "RUNNING", 30)
    assert job_row(azurite.connection_string, job_id)["status"] == "COMPLETED", row
    assert [i["instanceId"] for i in instances(host, instanceIdPrefix=job_id)] == [job_id]


def job_row(conn: str, job_id: str) -> dict[str, Any]:
    with TableClient.from_connection_string(conn, JOBS_TABLE) as table:
        return dict(table.get_entity(job_id, "job"))
