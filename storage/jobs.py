"""The `Jobs` table: the index of jobs (for idempotency, listing and retention) and of uploads.

Durable Functions holds a job's live state; this table answers what Durable cannot answer cheaply:
which job an idempotency key names, the newest jobs by status and kind, which jobs finished before a
date, and which uploads the server created. Layout (one table, three kinds of rows):

- job row:    PartitionKey = job id,   RowKey = "job"     (the idempotency arbiter: create fails if it exists)
- index row:  PartitionKey = "index",  RowKey = "<inverted ms>_<job id>" (storage.indexed_table)
- upload row: PartitionKey = "uploads", RowKey = upload id

The async functions serve the API; the sync ones (mark_running, record_outcome, iter_finished_before,
delete_job, purge_uploads_before) are called by activities and timers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables.aio import TableClient as AsyncTableClient

from shared.clock import iso, utc_now
from shared.contracts import FINISHED_STATUSES, JobError, JobOutcome, JobStatus
from shared.settings import Settings
from storage import indexed_table
from storage.clients import blob_service, table_service
from storage.indexed_table import INDEX_PARTITION, Page, quote
from storage.names import JOBS_TABLE, PAYLOADS_CONTAINER, upload_blob_name

JOB_ROW = "job"
INLINE_RESULT_BYTES = 16 * 1024
"""A whole run's result document of at most this many bytes of JSON is kept in its job row, not in a blob.

The row is written anyway to record the outcome; a result blob would add a billed write per job (Put Blob,
the dearest request a small job makes) and a read per result download. ASCII JSON, so at most 32 KiB as
the UTF-16 Azure Tables counts, under its 64 KiB property limit. Never in the index row: listings stay small.
"""
UPLOADS_PARTITION = "uploads"
COUNT_CAP = 10_000  # health's job counts read at most this many index rows

LAYOUT = indexed_table.Layout(primary=lambda job_id: (job_id, JOB_ROW))
JobPage = Page["JobRecord"]


class JobRecord(TypedDict):
    """A job as the table keeps it (both rows hold these fields)."""

    job_id: str
    kind: str
    status: str
    created_at: str
    updated_at: str
    finished_at: str | None
    input_ref: str | None
    input_content_type: str | None
    options: dict[str, Any]
    deadline_at: str | None
    idempotency_key_hash: str | None
    fingerprint: str
    source: str  # "http", "queue" or "replay"
    index_key: str
    summary: dict[str, Any] | None
    error: JobError | None
    progress: dict[str, int] | None  # {completed, total} once the job finished and someone read it from Durable
    priority: str  # admission lane: high, normal, low
    client: str  # who submitted it (admission's per-client cap)
    traceparent: NotRequired[str | None]  # W3C context of the submit span: the job's trace (shared.tracing)
    callback: NotRequired[dict[str, Any] | None]  # webhooks: {url, events}, as checked at submit
    result: NotRequired[str | None]  # a small whole run's result document (JSON), in the job row only
    whole_chunks: NotRequired[int | None]  # a job run whole: its chunk count, recorded with its outcome
    stop_requested: NotRequired[bool | None]  # a cancel was asked (set before the stop marker), job row only
    input_inline: NotRequired[str | None]  # a small posted input (base64, jobs.inline_input), job row only


def new_job_record(
    *,
    job_id: str,
    kind: str,
    created: datetime,
    input_ref: str | None,
    input_content_type: str | None,
    options: dict[str, Any],
    deadline_at: str | None,
    idempotency_key_hash: str | None,
    fingerprint: str,
    source: str,
    priority: str = "normal",
    client: str = "anonymous",
    traceparent: str | None = None,
    callback: dict[str, Any] | None = None,
    input_inline: str | None = None,
) -> JobRecord:
    """A PENDING job's record."""
    return {
        "input_inline": input_inline,
        "traceparent": traceparent,
        "job_id": job_id,
        "kind": kind,
        "status": JobStatus.PENDING.value,
        "created_at": iso(created),
        "updated_at": iso(created),
        "finished_at": None,
        "input_ref": input_ref,
        "input_content_type": input_content_type,
        "options": options,
        "deadline_at": deadline_at,
        "idempotency_key_hash": idempotency_key_hash,
        "fingerprint": fingerprint,
        "source": source,
        "index_key": indexed_table.index_key(created, job_id),
        "summary": None,
        "error": None,
        "progress": None,
        "priority": priority,
        "client": client,
        "callback": callback,
    }


_JSON_FIELDS = ("options", "summary", "error", "progress", "callback")


def _fields(record: JobRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if value is None:
            continue  # absent, not empty: filters such as `finished_at lt ...` then skip the row
        fields[key] = json.dumps(value) if key in _JSON_FIELDS else value
    return fields


def job_entity(record: JobRecord) -> dict[str, Any]:
    """The job row of a record."""
    return indexed_table.row(LAYOUT.primary(record["job_id"]), _fields(record))


_JOB_ROW_ONLY = ("result", "whole_chunks", "stop_requested", "input_inline")


def _index_fields(record: JobRecord) -> dict[str, Any]:
    return {key: value for key, value in _fields(record).items() if key not in _JOB_ROW_ONLY}


def index_entity(record: JobRecord) -> dict[str, Any]:
    """The index row of a record (without what only the job row keeps)."""
    return indexed_table.row((INDEX_PARTITION, record["index_key"]), _index_fields(record))


def record_from_entity(entity: dict[str, Any]) -> JobRecord:
    """The record a job or index row holds."""

    def text(key: str) -> str | None:
        value = entity.get(key)
        return str(value) if value is not None else None

    def loaded(key: str) -> Any:
        value = entity.get(key)
        return json.loads(value) if isinstance(value, str) and value else None

    return {
        "job_id": str(entity["job_id"]),
        "kind": str(entity["kind"]),
        "status": str(entity["status"]),
        "created_at": str(entity["created_at"]),
        "updated_at": str(entity["updated_at"]),
        "finished_at": text("finished_at"),
        "input_ref": text("input_ref"),
        "input_content_type": text("input_content_type"),
        "options": loaded("options") or {},
        "deadline_at": text("deadline_at"),
        "idempotency_key_hash": text("idempotency_key_hash"),
        "fingerprint": str(entity.get("fingerprint", "")),
        "source": str(entity.get("source", "http")),
        "index_key": str(entity["index_key"]),
        "summary": loaded("summary"),
        "error": loaded("error"),
        "progress": loaded("progress"),
        "priority": str(entity.get("priority") or "normal"),
        "client": str(entity.get("client") or "anonymous"),
        "traceparent": text("traceparent"),
        "callback": loaded("callback"),
        "result": text("result"),
        "whole_chunks": int(entity["whole_chunks"]) if entity.get("whole_chunks") is not None else None,
        "stop_requested": bool(entity.get("stop_requested")),
        "input_inline": text("input_inline"),
    }


def _status_fields(
    status: JobStatus,
    now: datetime,
    outcome: JobOutcome | None = None,
    progress: tuple[int, int] | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": status.value, "updated_at": iso(now)}
    if progress is not None:
        fields["progress"] = json.dumps({"completed": progress[0], "total": progress[1]})
    if status in FINISHED_STATUSES:
        fields["finished_at"] = iso(now)
    if outcome is not None:
        if outcome.get("summary") is not None:
            fields["summary"] = json.dumps(outcome.get("summary"))
        error = outcome.get("error")
        if error is not None:
            fields["error"] = json.dumps(error)
            fields["error_type"] = error["type"]
    return fields


def _rows(record: JobRecord) -> tuple[indexed_table.Keys, indexed_table.Keys]:
    return LAYOUT.rows(record["job_id"], record["index_key"])


# --- async: the API -------------------------------------------------------------------------------


async def create_job_row(table: AsyncTableClient, record: JobRecord) -> bool:
    """Create the job row, the idempotency arbiter; False if a job with this id exists."""
    return await indexed_table.create(table, LAYOUT.primary(record["job_id"]), _fields(record))


async def write_index_row(table: AsyncTableClient, record: JobRecord) -> None:
    """Write the job's index row (it lists the job)."""
    await indexed_table.put(table, (INDEX_PARTITION, record["index_key"]), _index_fields(record))


async def write_index_rows(table: AsyncTableClient, records: list[JobRecord]) -> None:
    """Write many jobs' index rows: they share the index partition, so 100 go in one Table transaction."""
    for start in range(0, len(records), 100):
        operations = [
            ("upsert", index_entity(record), {"mode": UpdateMode.REPLACE}) for record in records[start : start + 100]
        ]
        await table.submit_transaction(operations)


async def insert_job(table: AsyncTableClient, record: JobRecord) -> bool:
    """Create the job row and then its index row; False if the job id exists."""
    if not await create_job_row(table, record):
        return False
    await write_index_row(table, record)
    return True


async def remove_job(table: AsyncTableClient, record: JobRecord) -> None:
    """Undo insert_job when the job could not be started (a refused request leaves nothing)."""
    await indexed_table.delete(table, _rows(record))


async def get_job(table: AsyncTableClient, job_id: str) -> JobRecord | None:
    """The job's record, or None."""
    entity = await indexed_table.read(table, LAYOUT.primary(job_id))
    return record_from_entity(entity) if entity is not None else None


async def is_listed(table: AsyncTableClient, record: JobRecord) -> bool:
    """Whether the job's index row exists (one read, only its keys)."""
    index_row, _ = _rows(record)
    return await indexed_table.read(table, index_row, select=["PartitionKey"]) is not None


async def flag_stop_requested(table: AsyncTableClient, job_id: str) -> None:
    """Record in the job row that a cancel was asked, before the stop marker is written.

    So the marker never exists without the flag: a step that read the row without the flag knows the marker
    did not exist then either, and need not ask for it (activities.whole_job).
    """
    await indexed_table.merge(table, [LAYOUT.primary(job_id)], {"stop_requested": True})


async def catch_up_status(
    table: AsyncTableClient,
    record: JobRecord,
    status: JobStatus,
    outcome: JobOutcome | None = None,
    progress: tuple[int, int] | None = None,
    updated_at: str | None = None,
) -> None:
    """Bring both rows up to the status (and progress) Durable reports (covers an orchestration that crashed).

    `updated_at` is what the reader was shown: stored as is, so later reads (from the row alone) show the
    same value instead of one that moves, or goes back, without a change.
    """
    fields = _status_fields(status, utc_now(), outcome, progress)
    if updated_at:
        fields["updated_at"] = updated_at
    await indexed_table.merge(table, reversed(_rows(record)), fields)


async def record_progress(
    table: AsyncTableClient, record: JobRecord, completed: int, total: int, updated_at: str | None = None
) -> None:
    """Keep a finished job's final progress (and the updated_at readers were shown) in its rows, so listings
    need not ask Durable again and show what the first read showed."""
    fields = {"progress": json.dumps({"completed": completed, "total": total})}
    if updated_at:
        fields["updated_at"] = updated_at
    await indexed_table.merge(table, reversed(_rows(record)), fields)


async def list_jobs(
    table: AsyncTableClient, *, limit: int, status: str | None, kind: str | None, after: str | None
) -> JobPage:
    """Newest jobs first, optionally filtered; `after` is a previous page's continuation."""
    filters = []
    if status:
        filters.append(f"status eq {quote(status)}")
    if kind:
        filters.append(f"kind eq {quote(kind)}")
    return await indexed_table.read_page(table, record_from_entity, limit=limit, after=after, filters=filters)


async def count_by_status(table: AsyncTableClient, cap: int = COUNT_CAP) -> tuple[dict[str, int], bool]:
    """Job counts by status over at most `cap` newest jobs; the flag says whether the cap was hit."""
    counts = {status.value: 0 for status in JobStatus}
    seen = 0
    async for entity in indexed_table.scan_index(table, select=["status"]):
        if seen == cap:
            return counts, True
        seen += 1
        status = str(entity.get("status", ""))
        if status in counts:
            counts[status] += 1
    return counts, False


class JobTimes(TypedDict):
    """What the statistics need of a job: its kind, status and times."""

    kind: str
    status: str
    created_at: str
    finished_at: str | None


async def iter_created_since(table: AsyncTableClient, since: datetime) -> AsyncIterator[JobTimes]:
    """Jobs created at or after `since`, newest first (one key-range query on the index partition)."""
    select = ["kind", "status", "created_at", "finished_at"]
    async for entity in indexed_table.scan_index(table, filters=[indexed_table.newer_than(since)], select=select):
        finished = entity.get("finished_at")
        yield {
            "kind": str(entity.get("kind", "")),
            "status": str(entity.get("status", "")),
            "created_at": str(entity["created_at"]),
            "finished_at": str(finished) if finished else None,
        }


class UploadRecord(TypedDict):
    """An upload the server created (its blob is written by the client)."""

    upload_id: str
    content_type: str | None
    created_at: str
    expires_at: str


async def insert_upload(table: AsyncTableClient, upload: UploadRecord) -> None:
    """Record an upload."""
    fields = {key: value for key, value in upload.items() if value is not None}
    await table.create_entity(indexed_table.row((UPLOADS_PARTITION, upload["upload_id"]), fields))


async def get_upload(table: AsyncTableClient, upload_id: str) -> UploadRecord | None:
    """The upload's record, or None if the server created no such upload."""
    entity = await indexed_table.read(table, (UPLOADS_PARTITION, upload_id))
    if entity is None:
        return None
    content_type = entity.get("content_type")
    return {
        "upload_id": upload_id,
        "content_type": str(content_type) if content_type else None,
        "created_at": str(entity["created_at"]),
        "expires_at": str(entity["expires_at"]),
    }


async def pending_created_before(table: AsyncTableClient, cutoff: datetime) -> list[JobRecord]:
    """Jobs still recorded PENDING that were created before `cutoff` (orphan candidates)."""
    filters = [f"status eq {quote(JobStatus.PENDING.value)}", f"created_at lt {quote(iso(cutoff))}"]
    return [record_from_entity(entity) async for entity in indexed_table.scan_index(table, filters=filters)]


async def unlisted_pending_created_before(table: AsyncTableClient, cutoff: datetime) -> list[JobRecord]:
    """Job rows still PENDING, created before `cutoff`, that have no index row (orphan candidates too).

    A submit whose index write failed and whose undo failed as well leaves such a row, which the index scan
    of `pending_created_before` cannot see. Finding it means reading every job row (each job is its own
    partition), so only the daily retention asks.
    """
    query = " and ".join(
        [
            f"RowKey eq {quote(JOB_ROW)}",
            f"status eq {quote(JobStatus.PENDING.value)}",
            f"created_at lt {quote(iso(cutoff))}",
        ]
    )
    pending = [record_from_entity(entity) async for entity in table.query_entities(query, results_per_page=1000)]
    return [record for record in pending if not await is_listed(table, record)]


async def restore_job(table: AsyncTableClient, record: JobRecord) -> None:
    """Write both rows of a record back (undoes remove_job)."""
    await indexed_table.put(table, LAYOUT.primary(record["job_id"]), _fields(record))
    await write_index_row(table, record)


async def iter_index(table: AsyncTableClient) -> AsyncIterator[JobRecord]:
    """Every job, newest first (tests and tools)."""
    async for entity in indexed_table.scan_index(table):
        yield record_from_entity(entity)


# --- sync: the orchestration's activities and the timers ------------------------------------------------


@lru_cache(maxsize=8)
def _jobs_table(settings: Settings) -> TableClient:
    # One client per process and settings, never closed: its pooled connection serves every activity's
    # calls. A client per call cost a new client, a TCP connect and a close for each row read or merge
    # (getaddrinfo and connect were a tenth of a whole run's samples; docs/benchmarks.md).
    return table_service(settings).get_table_client(JOBS_TABLE)


class RowChanged(Exception):
    """The job row changed since the ETag a conditional write was given (nothing was written)."""


def _merge_both(
    table: TableClient,
    job_id: str,
    fields: dict[str, Any],
    index_key: str | None = None,
    job_row_only: dict[str, Any] | None = None,
    if_match: str | None = None,
) -> str | None:
    """Merge `fields` into both rows (and `job_row_only` into the job row); the job's index key, None if it
    has no job row. With `if_match`, the job row only if its ETag is still that (else RowChanged, and
    neither row is written).

    The job row is read first for its index key, and so that RUNNING never reopens a finished job. A caller
    that knows the index key and writes a finished status needs neither: the two rows are merged at once
    (each only if it still exists), the job row first. They are in different partitions, so no one
    transaction takes both.
    """
    if index_key is None or fields.get("status") == JobStatus.RUNNING.value:
        entity = indexed_table.read_sync(table, LAYOUT.primary(job_id))
        if entity is None:
            return None  # not submitted through the API (e.g. started by a test); nothing to index
        if fields.get("status") == JobStatus.RUNNING.value and entity.get("status") in FINISHED_STATUSES:
            return str(entity["index_key"])  # a late or replayed mark_running must not reopen a finished job
        index_key = str(entity["index_key"])
    index_row, job_row = LAYOUT.rows(job_id, index_key)
    entity = indexed_table.row(job_row, {**fields, **(job_row_only or {})})
    condition = MatchConditions.IfNotModified if if_match else MatchConditions.Unconditionally
    try:
        table.update_entity(entity, mode=UpdateMode.MERGE, etag=if_match, match_condition=condition)
    except ResourceNotFoundError:
        index_key = None
    except ResourceModifiedError:
        raise RowChanged(job_id) from None
    indexed_table.merge_sync(table, [index_row], fields)
    return index_key


def mark_running(settings: Settings, job_id: str) -> str | None:
    """Record that the job's orchestration started working (idempotent); returns its index key if it has a row."""
    table = _jobs_table(settings)
    return _merge_both(table, job_id, _status_fields(JobStatus.RUNNING, utc_now()))


def record_outcome(
    settings: Settings,
    job_id: str,
    outcome: JobOutcome,
    progress: tuple[int, int] | None = None,
    index_key: str | None = None,
    *,
    result: str | None = None,
    whole_chunks: int | None = None,
    if_match: str | None = None,
) -> bool:
    """Record a job's final status, summary and error, and its final progress if known (idempotent); whether
    the job has a row to record it in. With `if_match` (the job row's ETag as read), only if the row has not
    changed since (RowChanged otherwise: e.g. a cancel flagged it).

    With the progress the row is complete: reads of the finished job need not catch it up. With the index
    key (kept in the plan since prepare read the row) the row is not read first. A whole run also records
    its chunk count and, when small, its result document (INLINE_RESULT_BYTES), in the job row only.
    """
    extra: dict[str, Any] = {}
    if result is not None:
        extra["result"] = result
    if whole_chunks is not None:
        extra["whole_chunks"] = whole_chunks
    table = _jobs_table(settings)
    fields = _status_fields(JobStatus(outcome["status"]), utc_now(), outcome, progress)
    return _merge_both(table, job_id, fields, index_key, extra, if_match) is not None


def read_job(settings: Settings, job_id: str) -> JobRecord | None:
    """The job's record, from its job row, or None (a job started without one, as tests do)."""
    versioned = read_job_versioned(settings, job_id)
    return versioned[0] if versioned is not None else None


def read_job_versioned(settings: Settings, job_id: str) -> tuple[JobRecord, str] | None:
    """The job's record and its row's ETag (for record_outcome's `if_match`), or None."""
    try:
        entity = _jobs_table(settings).get_entity(*LAYOUT.primary(job_id))
    except ResourceNotFoundError:
        return None
    return record_from_entity(dict(entity)), str(entity.metadata["etag"])


def iter_finished_before(settings: Settings, cutoff: datetime) -> Iterator[str]:
    """Ids of the jobs that finished before `cutoff` (for retention)."""
    table = _jobs_table(settings)
    for entity in indexed_table.scan_index_sync(
        table, filters=[f"finished_at lt {quote(iso(cutoff))}"], select=["job_id", "finished_at"]
    ):
        yield str(entity["job_id"])


def purge_uploads_before(settings: Settings, cutoff: datetime) -> int:
    """Delete the uploads (row and blob) created before `cutoff`; returns how many were deleted."""
    query = f"PartitionKey eq {quote(UPLOADS_PARTITION)} and created_at lt {quote(iso(cutoff))}"
    deleted = 0
    table = _jobs_table(settings)
    with blob_service(settings) as blobs:
        container = blobs.get_container_client(PAYLOADS_CONTAINER)
        for entity in list(table.query_entities(query, select=["RowKey"])):
            upload_id = str(entity["RowKey"])
            try:
                container.delete_blob(upload_blob_name(upload_id))
            except ResourceNotFoundError:
                pass
            indexed_table.delete_sync(table, [(UPLOADS_PARTITION, upload_id)])
            deleted += 1
    return deleted


def delete_job(settings: Settings, job_id: str) -> None:
    """Remove a job's rows (idempotent)."""
    table = _jobs_table(settings)
    entity = indexed_table.read_sync(table, LAYOUT.primary(job_id))
    if entity is not None:
        indexed_table.delete_sync(table, LAYOUT.rows(job_id, str(entity["index_key"])))
