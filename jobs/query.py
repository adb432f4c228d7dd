"""A job's state as clients see it: its row in the Jobs table reconciled with Durable's status.

The row knows what Durable cannot answer cheaply (kind, times, the outcome once recorded); Durable
knows the live status and progress. A finished job is read from its row once the row holds its
outcome and progress; so is a poll of a job whose row still says PENDING while it is younger than
PENDING_FROM_ROW_FOR (below); anything else asks Durable, and a row that lags (an orchestration that
crashed before recording its outcome) is caught up on the way.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from jobs import admission, durable
from jobs.errors import InvalidRequest, NotFound, NotReady, field_error
from jobs.requests import JSON_CONTENT_TYPE
from jobs.submit import admission_ticket, resolve_kind, resolve_spec
from kinds.registry import JSON_FORMAT
from shared.clock import parse_iso, utc_now
from shared.contracts import FINISHED_STATUSES, JobStatus
from shared.settings import Settings
from shared.status import JobState, job_state
from storage import jobs as job_store
from storage.clients import StorageClients
from storage.names import RESULTS_CONTAINER, result_blob_name

NOT_STARTED_AFTER_SECONDS = 60
"""A job with no running instance this long after it was recorded will not start by itself: its submitter
died between recording and starting (no instance), or the task hub is not picking it up (Pending)."""


def start_overdue(record: job_store.JobRecord, now: datetime | None = None) -> bool:
    """The one rule for "this job should have started by now"."""
    age = ((now or utc_now()) - parse_iso(record["created_at"])).total_seconds()
    return age >= NOT_STARTED_AFTER_SECONDS


@dataclass(frozen=True)
class JobView:
    """A job as the API shows it: its record, its current state and when it last changed."""

    record: job_store.JobRecord
    state: JobState
    updated_at: str
    unstarted: bool = False  # Durable was asked and knows no instance of the job (jobs.recovery)


def state_from_record(record: job_store.JobRecord) -> JobState:
    """The state the row alone holds (progress only once the row recorded it).

    A COMPLETED job's result is JSON under its deterministic name (storage.names.result_blob_name), written
    by merge or a whole run, unless a small whole run kept it in the job row (`get_result` reads it there).
    """
    progress = record["progress"] or {}
    status = JobStatus(record["status"])
    completed = status is JobStatus.COMPLETED
    return JobState(
        status,
        int(progress.get("completed", 0)),
        int(progress.get("total", 0)),
        summary=record["summary"],
        result_ref=result_blob_name(record["job_id"]) if completed else None,
        content_type=JSON_CONTENT_TYPE if completed else None,
        error=record["error"],
    )


def _row_is_complete(record: job_store.JobRecord) -> bool:
    """Whether the row holds the finished job's outcome and progress, so Durable need not be asked."""
    return JobStatus(record["status"]) in FINISHED_STATUSES and bool(record["progress"])


def _instance_state(instance: durable.Instance | None) -> tuple[JobState | None, str | None]:
    if instance is None:
        return None, None
    return job_state(instance.runtime_status, instance.output, instance.custom_status), instance.last_updated


async def _reconcile(
    jobs: TableClient, record: job_store.JobRecord, instance: durable.Instance | None
) -> tuple[JobState, str]:
    """The state to show, given the row and what Durable reports; catches the row up if it lags."""
    state, updated = _instance_state(instance)
    if state is None:
        return state_from_record(record), record["updated_at"]
    shown = max(updated or record["updated_at"], record["updated_at"])
    if state.status in FINISHED_STATUSES:
        if state.status is not JobStatus(record["status"]):
            # The row lags when an orchestration crashed before recording its outcome: catch it up.
            outcome: Any = {"status": state.status.value, "summary": state.summary, "error": state.error}
            await job_store.catch_up_status(
                jobs, record, state.status, outcome, (state.completed, state.total), updated_at=shown
            )
        elif not record["progress"]:
            await job_store.record_progress(jobs, record, state.completed, state.total, updated_at=shown)
    return state, shown


PENDING_FROM_ROW_FOR = timedelta(seconds=30)
"""How long a poll answers a job whose row says PENDING from the row alone (`load_job(pending_from_row=True)`).

Polls of young jobs are most polls (Retry-After is 1 s for a job's first 10 s), and most of them find the job
waiting for a worker: asking Durable as well costs a call to the extension and an Instances read each, to
learn only whether the orchestration has begun. The row says PENDING until the job's own work records
otherwise (a staged job's prepare marks it RUNNING; a whole run does after RUNNING_MARK_AFTER_SECONDS, so a
small job may go from PENDING to its outcome), and a cancel flags it. From this age on Durable is asked again:
it is jobs.recovery.RESTART_AFTER, from which a poll must learn whether the job has an instance at all.
"""


def _pending_row_answers(record: job_store.JobRecord) -> bool:
    """Whether a poll may show the job from its row: PENDING, no cancel asked, younger than PENDING_FROM_ROW_FOR."""
    if record["status"] != JobStatus.PENDING.value or record.get("stop_requested"):
        return False
    return utc_now() - parse_iso(record["created_at"]) < PENDING_FROM_ROW_FOR


async def load_job(client: Any, jobs: TableClient, job_id: str, *, pending_from_row: bool = False) -> JobView:
    """The job's row, its current state and updated_at; NotFound if the job is unknown.

    A finished job whose row is complete is read from its row alone: one storage request per poll
    instead of two (issue #15). With `pending_from_row` (a plain poll), so is a young PENDING job
    (PENDING_FROM_ROW_FOR). Other jobs ask Durable after the row (the row says whether the job exists).
    """
    record = await job_store.get_job(jobs, job_id)
    if record is None:
        raise NotFound("no such job")
    if pending_from_row and _pending_row_answers(record):
        return JobView(record, state_from_record(record), record["updated_at"])
    return await live_view(client, jobs, record)


async def live_view(client: Any, jobs: TableClient, record: job_store.JobRecord) -> JobView:
    """The view of a job whose row is already read: from the row once it holds the finished job's outcome and
    progress, else from Durable (status and progress as of now)."""
    if _row_is_complete(record):
        return JobView(record, state_from_record(record), record["updated_at"])
    instance = await durable.status(client, record["job_id"])
    state, updated = await _reconcile(jobs, record, instance)
    return JobView(record, state, updated, unstarted=instance is None)


async def queue_place(clients: StorageClients, view: JobView) -> admission.Place | None:
    """A waiting job's lane and approximate position (two reads; one if it was admitted); None unless the job
    is PENDING and waits for admission."""
    if view.state.status is not JobStatus.PENDING:
        return None
    return await admission.place_async(clients.settings, clients.jobs, admission_ticket(view.record)["key"])


def check_filters(settings: Settings, *, status: str | None, kind: str | None) -> None:
    """InvalidRequest unless `status` is a job status and `kind` a known kind (each when given)."""
    if status is not None and status not in JobStatus.__members__:
        names = ", ".join(JobStatus.__members__)
        raise InvalidRequest("invalid status filter", [field_error("status", f"one of: {names}")])
    if kind is not None:
        resolve_kind(kind, settings)


@dataclass(frozen=True)
class JobsPage:
    """A page of the newest-first listing."""

    items: list[JobView]
    continuation: str | None  # the index key the next page starts after


async def list_jobs(
    client: Any,
    clients: StorageClients,
    settings: Settings,
    *,
    limit: int,
    status: str | None,
    kind: str | None,
    after: str | None,
) -> JobsPage:
    """Newest jobs first, filtered by the status recorded in the row and by kind."""
    check_filters(settings, status=status, kind=kind)
    page = await job_store.list_jobs(clients.jobs, limit=limit, status=status, kind=kind, after=after)
    # At most one status call per item of the page (none for finished jobs whose row is complete).
    views = await asyncio.gather(*(live_view(client, clients.jobs, record) for record in page.items))
    return JobsPage(list(views), page.continuation)


@dataclass(frozen=True)
class Result:
    """A completed job's result document, rendered as asked."""

    view: JobView
    data: bytes
    content_type: str


async def get_result(client: Any, clients: StorageClients, settings: Settings, job_id: str, fmt: str | None) -> Result:
    """The job's result, as stored (`fmt` None or "json") or rendered by its kind; NotReady before COMPLETED."""
    view = await load_job(client, clients.jobs, job_id)
    state = view.state
    if state.status is not JobStatus.COMPLETED or not state.result_ref:
        raise NotReady(
            f"the job is {state.status.value}; its result exists once it is COMPLETED",
            finished=state.status in FINISHED_STATUSES,
            created_at=view.record["created_at"],
        )
    data = await _result_bytes(clients, view.record, state.result_ref)
    if fmt is None or fmt == JSON_FORMAT:
        return Result(view, data, state.content_type or "application/json")
    kind_name = view.record["kind"]
    spec = resolve_spec(kind_name, settings)
    rendered = spec.kind.render(json.loads(data), fmt) if fmt in spec.render_formats else None
    if rendered is None:
        formats = ", ".join(spec.render_formats)
        raise InvalidRequest(
            f"the format asked for is not available for {kind_name}", [field_error("format", f"one of: {formats}")]
        )
    return Result(view, bytes(rendered[0]), str(rendered[1]))


async def _result_bytes(clients: StorageClients, record: job_store.JobRecord, result_ref: str) -> bytes:
    """The result document as stored: in the job row (a small whole run's) or in its blob."""
    inline = record.get("result")
    if inline is not None:
        return inline.encode()
    blob = clients.blobs.get_blob_client(RESULTS_CONTAINER, result_ref)
    try:
        return bytes(await (await blob.download_blob()).readall())
    except ResourceNotFoundError:
        raise NotFound("the job's result is no longer available") from None


async def job_counts(clients: StorageClients) -> tuple[dict[str, int], bool]:
    """Jobs by recorded status over the newest job_store.COUNT_CAP; the flag says whether the cap was hit."""
    return await job_store.count_by_status(clients.jobs)
