"""The `Jobs` table: the index of jobs (for idempotency, listing and retention) and of uploads.

Durable Functions holds a job's live state; this table answers what Durable cannot answer cheaply:
which job an idempotency key names, the newest jobs by status and kind, which jobs finished before a
date, and which uploads the server created. Layout (one table, three kinds of rows):

- job row:    PartitionKey = job id,   RowKey = "job"     (the idempotency arbiter: create fails if it exists)
- index row:  PartitionKey = "index",  RowKey = "<inverted ms>_<job id>" (newest first by RowKey order)
- upload row: PartitionKey = "uploads", RowKey = upload id

Job and index rows carry the same public fields, so a listing page is one range query.
The async functions serve the API; the sync ones (mark_running, record_outcome, iter_finished_before,
delete_job, purge_uploads_before) are called by activities.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables.aio import TableClient as AsyncTableClient

from shared.contracts import FINISHED_STATUSES, JobError, JobOutcome, JobStatus
from shared.settings import Settings
from shared.storage import JOBS_TABLE, PAYLOADS_CONTAINER, blob_service, table_service, upload_blob_name

JOB_ROW = "job"
INDEX_PARTITION = "index"
UPLOADS_PARTITION = "uploads"
_MAX_MS = 10**13 - 1  # inverted timestamps stay 13 digits until the year 2286
COUNT_CAP = 10_000  # health's job counts read at most this many index rows


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC, so string order is time order in table filters."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def inverted_time_key(moment: datetime) -> str:
    """A RowKey prefix that sorts newest first."""
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}"


class JobRecord(TypedDict):
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
) -> JobRecord:
    return {
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
        "index_key": f"{inverted_time_key(created)}_{job_id}",
        "summary": None,
        "error": None,
    }


_JSON_FIELDS = ("options", "summary", "error")


def _entity(record: JobRecord, partition_key: str, row_key: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
    for key, value in record.items():
        if value is None:
            continue  # absent, not empty: filters such as `finished_at lt ...` then skip the row
        entity[key] = json.dumps(value) if key in _JSON_FIELDS else value
    return entity


def job_entity(record: JobRecord) -> dict[str, Any]:
    return _entity(record, record["job_id"], JOB_ROW)


def index_entity(record: JobRecord) -> dict[str, Any]:
    return _entity(record, INDEX_PARTITION, record["index_key"])


def record_from_entity(entity: dict[str, Any]) -> JobRecord:
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
    }


def _status_fields(status: JobStatus, now: datetime, outcome: JobOutcome | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": status.value, "updated_at": iso(now)}
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


# --- async: the API -------------------------------------------------------------------------------


async def create_job_row(table: AsyncTableClient, record: JobRecord) -> bool:
    """Create the job row, the idempotency arbiter; False if a job with this id exists."""
    try:
        await table.create_entity(job_entity(record))
    except ResourceExistsError:
        return False
    return True


async def write_index_row(table: AsyncTableClient, record: JobRecord) -> None:
    await table.upsert_entity(index_entity(record), mode=UpdateMode.REPLACE)


async def insert_job(table: AsyncTableClient, record: JobRecord) -> bool:
    """Create the job row and then its index row; False if the job id exists."""
    if not await create_job_row(table, record):
        return False
    await write_index_row(table, record)
    return True


async def remove_job(table: AsyncTableClient, record: JobRecord) -> None:
    """Undo insert_job when the job could not be started (a refused request leaves nothing)."""
    for partition_key, row_key in ((INDEX_PARTITION, record["index_key"]), (record["job_id"], JOB_ROW)):
        try:
            await table.delete_entity(partition_key, row_key)
        except ResourceNotFoundError:
            pass


async def get_job(table: AsyncTableClient, job_id: str) -> JobRecord | None:
    try:
        entity = await table.get_entity(job_id, JOB_ROW)
    except ResourceNotFoundError:
        return None
    return record_from_entity(dict(entity))


async def sync_status(
    table: AsyncTableClient, record: JobRecord, status: JobStatus, outcome: JobOutcome | None = None
) -> None:
    """Bring both rows up to the status Durable reports (covers an orchestration that crashed)."""
    fields = _status_fields(status, utc_now(), outcome)
    for partition_key, row_key in ((record["job_id"], JOB_ROW), (INDEX_PARTITION, record["index_key"])):
        try:
            await table.update_entity(
                {"PartitionKey": partition_key, "RowKey": row_key, **fields}, mode=UpdateMode.MERGE
            )
        except ResourceNotFoundError:
            pass


@dataclass(frozen=True)
class JobPage:
    items: list[JobRecord]
    continuation: str | None  # the index RowKey of the last item, when more may follow


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def list_jobs(
    table: AsyncTableClient, *, limit: int, status: str | None, kind: str | None, after: str | None
) -> JobPage:
    """Newest jobs first, optionally filtered; `after` is a previous page's continuation."""
    clauses = [f"PartitionKey eq {_quote(INDEX_PARTITION)}"]
    if after:
        clauses.append(f"RowKey gt {_quote(after)}")
    if status:
        clauses.append(f"status eq {_quote(status)}")
    if kind:
        clauses.append(f"kind eq {_quote(kind)}")
    items: list[JobRecord] = []
    has_more = False
    entities = table.query_entities(" and ".join(clauses), results_per_page=min(limit + 1, 1000))
    async for entity in entities:
        if len(items) == limit:
            has_more = True
            break
        items.append(record_from_entity(dict(entity)))
    return JobPage(items, items[-1]["index_key"] if has_more and items else None)


async def count_by_status(table: AsyncTableClient, cap: int = COUNT_CAP) -> tuple[dict[str, int], bool]:
    """Job counts by status over at most `cap` newest jobs; the flag says whether the cap was hit."""
    counts = {status.value: 0 for status in JobStatus}
    seen = 0
    entities = table.query_entities(
        f"PartitionKey eq {_quote(INDEX_PARTITION)}", select=["status"], results_per_page=1000
    )
    async for entity in entities:
        if seen == cap:
            return counts, True
        seen += 1
        status = str(entity.get("status", ""))
        if status in counts:
            counts[status] += 1
    return counts, False


class UploadRecord(TypedDict):
    upload_id: str
    content_type: str | None
    created_at: str
    expires_at: str


async def insert_upload(table: AsyncTableClient, upload: UploadRecord) -> None:
    entity: dict[str, Any] = {"PartitionKey": UPLOADS_PARTITION, "RowKey": upload["upload_id"]}
    entity.update({key: value for key, value in upload.items() if value is not None})
    await table.create_entity(entity)


async def get_upload(table: AsyncTableClient, upload_id: str) -> UploadRecord | None:
    try:
        entity = await table.get_entity(UPLOADS_PARTITION, upload_id)
    except ResourceNotFoundError:
        return None
    content_type = entity.get("content_type")
    return {
        "upload_id": upload_id,
        "content_type": str(content_type) if content_type else None,
        "created_at": str(entity["created_at"]),
        "expires_at": str(entity["expires_at"]),
    }


async def iter_index(table: AsyncTableClient) -> AsyncIterator[JobRecord]:
    """Every job, newest first (tests and tools)."""
    async for entity in table.query_entities(f"PartitionKey eq {_quote(INDEX_PARTITION)}"):
        yield record_from_entity(dict(entity))


# --- sync: the orchestration's activities -------------------------------------------------------


def _jobs_table(settings: Settings) -> TableClient:
    return table_service(settings).get_table_client(JOBS_TABLE)


def _merge_both(table: TableClient, job_id: str, fields: dict[str, Any]) -> None:
    try:
        entity = table.get_entity(job_id, JOB_ROW)
    except ResourceNotFoundError:
        return  # not submitted through the API (e.g. started by a test); nothing to index
    if fields.get("status") == JobStatus.RUNNING.value and entity.get("status") in FINISHED_STATUSES:
        return  # a late or replayed mark_running must not reopen a finished job
    for partition_key, row_key in ((job_id, JOB_ROW), (INDEX_PARTITION, str(entity["index_key"]))):
        try:
            table.update_entity({"PartitionKey": partition_key, "RowKey": row_key, **fields}, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            pass


def mark_running(settings: Settings, job_id: str) -> None:
    """Record that the job's orchestration started working (idempotent)."""
    with _jobs_table(settings) as table:
        _merge_both(table, job_id, _status_fields(JobStatus.RUNNING, utc_now()))


def record_outcome(settings: Settings, job_id: str, outcome: JobOutcome) -> None:
    """Record a job's final status, summary and error (idempotent)."""
    with _jobs_table(settings) as table:
        _merge_both(table, job_id, _status_fields(JobStatus(outcome["status"]), utc_now(), outcome))


def iter_finished_before(settings: Settings, cutoff: datetime) -> Iterator[str]:
    """Ids of the jobs that finished before `cutoff` (for retention)."""
    query = f"PartitionKey eq {_quote(INDEX_PARTITION)} and finished_at lt {_quote(iso(cutoff))}"
    with _jobs_table(settings) as table:
        for entity in table.query_entities(query, select=["job_id", "finished_at"]):
            yield str(entity["job_id"])


def purge_uploads_before(settings: Settings, cutoff: datetime) -> int:
    """Delete the uploads (row and blob) created before `cutoff`; returns how many were deleted."""
    query = f"PartitionKey eq {_quote(UPLOADS_PARTITION)} and created_at lt {_quote(iso(cutoff))}"
    deleted = 0
    with _jobs_table(settings) as table, blob_service(settings) as blobs:
        container = blobs.get_container_client(PAYLOADS_CONTAINER)
        for entity in list(table.query_entities(query, select=["RowKey"])):
            upload_id = str(entity["RowKey"])
            try:
                container.delete_blob(upload_blob_name(upload_id))
            except ResourceNotFoundError:
                pass
            table.delete_entity(UPLOADS_PARTITION, upload_id)
            deleted += 1
    return deleted


def delete_job(settings: Settings, job_id: str) -> None:
    """Remove a job's rows (idempotent)."""
    with _jobs_table(settings) as table:
        try:
            entity = table.get_entity(job_id, JOB_ROW)
        except ResourceNotFoundError:
            return
        for partition_key, row_key in ((INDEX_PARTITION, str(entity["index_key"])), (job_id, JOB_ROW)):
            try:
                table.delete_entity(partition_key, row_key)
            except ResourceNotFoundError:
                pass
