"""The Jobs and DeadLetters tables as the orchestration's activities use them (against Azurite)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, Literal, TypeVar

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared.clock import iso, utc_now
from shared.contracts import DeadLetterRecord, JobError
from shared.settings import Settings
from storage import dead_letters
from storage import jobs as job_store
from storage.clients import close_storage_clients, storage_clients
from storage.names import (
    CONTAINERS,
    DEADLETTER_QUEUE,
    DEADLETTERS_TABLE,
    JOBS_TABLE,
    PAYLOADS_CONTAINER,
    QUEUES,
    upload_blob_name,
)
from tests.api.probes import count_blobs, queue_messages

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, closing the loop's storage clients before the loop goes."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await close_storage_clients()

    return asyncio.run(main())


@pytest.fixture
def settings(azurite) -> Settings:
    conn = azurite.connection_string
    with TableServiceClient.from_connection_string(conn) as tables:
        for name in (JOBS_TABLE, DEADLETTERS_TABLE):
            try:
                tables.create_table(name)
            except ResourceExistsError:
                pass
    for name in QUEUES:
        try:
            QueueClient.from_connection_string(conn, name).create_queue()
        except ResourceExistsError:
            pass
    for name in CONTAINERS:
        try:
            BlobServiceClient.from_connection_string(conn).create_container(name)
        except ResourceExistsError:
            pass
    return Settings(AzureWebJobsStorage=conn)


def new_job(settings: Settings, created=None) -> job_store.JobRecord:
    record = job_store.new_job_record(
        job_id=uuid.uuid4().hex, kind="simulate", created=created or utc_now(), input_ref=None,
        input_content_type=None, options={"chunks": 1}, deadline_at=None, idempotency_key_hash=None,
        fingerprint="f", source="http",
    )  # fmt: skip

    async def insert() -> bool:
        clients = await storage_clients(settings)
        return await job_store.insert_job(clients.jobs, record)

    assert run(insert())
    return record


def rows(settings: Settings, job_id: str) -> list[dict[str, Any]]:
    with TableServiceClient.from_connection_string(str(settings.storage_connection_string)) as tables:
        return [dict(e) for e in tables.get_table_client(JOBS_TABLE).query_entities(f"job_id eq '{job_id}'")]


def test_the_job_row_is_the_idempotency_arbiter(settings):
    record = new_job(settings)

    async def insert_again() -> bool:
        clients = await storage_clients(settings)
        return await job_store.insert_job(clients.jobs, record)

    assert run(insert_again()) is False
    assert len(rows(settings, record["job_id"])) == 2


def test_running_then_outcome_update_both_rows_and_a_late_running_changes_nothing(settings):
    record = new_job(settings)
    job_store.mark_running(settings, record["job_id"])
    assert {r["status"] for r in rows(settings, record["job_id"])} == {"RUNNING"}
    error: JobError = {"type": "retries_exhausted", "message": "chunk 0 failed", "attempts": 3}
    job_store.record_outcome(settings, record["job_id"], {"status": "FAILED", "error": error})
    job_store.mark_running(settings, record["job_id"])
    for row in rows(settings, record["job_id"]):
        assert row["status"] == "FAILED" and row["error_type"] == "retries_exhausted"
        assert json.loads(row["error"]) == error and row["finished_at"]
    job_store.mark_running(settings, uuid.uuid4().hex)  # unknown jobs are ignored


def test_finished_jobs_are_found_by_cutoff_and_deleted(settings):
    done, running = new_job(settings), new_job(settings)
    job_store.record_outcome(settings, done["job_id"], {"status": "COMPLETED", "summary": {"chunks": 1}})
    job_store.mark_running(settings, running["job_id"])
    now = utc_now()
    assert done["job_id"] in set(job_store.iter_finished_before(settings, now + timedelta(seconds=5)))
    assert running["job_id"] not in set(job_store.iter_finished_before(settings, now + timedelta(seconds=5)))
    assert done["job_id"] not in set(job_store.iter_finished_before(settings, now - timedelta(hours=1)))
    job_store.delete_job(settings, done["job_id"])
    job_store.delete_job(settings, done["job_id"])  # idempotent
    assert rows(settings, done["job_id"]) == []


def test_old_uploads_are_purged_with_their_blobs(settings, azurite):
    async def create(created) -> str:
        clients = await storage_clients(settings)
        upload_id = uuid.uuid4().hex
        upload: job_store.UploadRecord = {
            "upload_id": upload_id, "content_type": "text/csv", "created_at": iso(created),
            "expires_at": iso(created + timedelta(minutes=15)),
        }  # fmt: skip
        await job_store.insert_upload(clients.jobs, upload)
        await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, upload_blob_name(upload_id)).upload_blob(b"a\n1\n")
        return upload_id

    now = utc_now()
    old, new = run(create(now - timedelta(days=10))), run(create(now))
    assert job_store.purge_uploads_before(settings, now - timedelta(days=7)) >= 1

    async def exists(upload_id: str) -> bool:
        clients = await storage_clients(settings)
        return await job_store.get_upload(clients.jobs, upload_id) is not None

    assert not run(exists(old)) and run(exists(new))
    assert count_blobs(azurite.connection_string, prefix=upload_blob_name(old)) == 0
    assert count_blobs(azurite.connection_string, prefix=upload_blob_name(new)) == 1


def dead_letter(created: str, source: Literal["job", "poison"] = "job") -> DeadLetterRecord:
    return {
        "id": f"job-{uuid.uuid4().hex}", "source": source, "job_id": uuid.uuid4().hex, "kind": "simulate",
        "input_ref": None, "input_content_type": None, "options": {"chunks": 1}, "error_type": "retries_exhausted",
        "reason": "chunk 0 failed 3 times", "attempts": 3, "raw_message": None, "created_at": created,
    }  # fmt: skip


def test_dead_letters_are_recorded_once_listed_newest_first_and_purged(settings):
    old = dead_letter(iso(utc_now() - timedelta(days=40)))
    new = dead_letter(iso(utc_now()))
    connection = str(settings.storage_connection_string)
    queued = queue_messages(connection, DEADLETTER_QUEUE)
    for record in (old, new, old):
        dead_letters.record_dead_letter(settings, record)
    assert queue_messages(connection, DEADLETTER_QUEUE) - queued == 2  # the second record of `old` sent nothing

    async def listing() -> list[str]:
        clients = await storage_clients(settings)
        page = await dead_letters.list_dead_letters(clients.dead_letters, limit=1, after=None)
        ids = [r["id"] for r in page.items]
        while page.continuation:  # every page: the session's other tests leave dead letters too
            page = await dead_letters.list_dead_letters(clients.dead_letters, limit=100, after=page.continuation)
            ids += [r["id"] for r in page.items]
        got = await dead_letters.get_dead_letter(clients.dead_letters, old["id"])
        assert got == old
        return ids

    ids = run(listing())
    assert ids.index(new["id"]) < ids.index(old["id"])
    assert dead_letters.purge_dead_letters_before(settings, utc_now() - timedelta(days=30)) >= 1
    remaining = run(_ids(settings))
    assert old["id"] not in remaining and new["id"] in remaining


def _ids(settings: Settings):
    async def run() -> list[str]:
        clients = await storage_clients(settings)
        page = await dead_letters.list_dead_letters(clients.dead_letters, limit=1000, after=None)
        return [r["id"] for r in page.items]

    return run()
