"""Starting a recorded job that has no orchestration: the submit answered 202, then its start failed or
died with the instance.

An HTTP submit answers once the job is accepted, before its orchestration starts (jobs.submit): the start
is a third of a submit's time and the client need not wait for it. Accepted means that every write of the
submit's first round exists: the job row (with a small input inline), its index row, the claim-checked
input blob and its place in its admission lane. A submission whose first round failed answered 503 and
undid those (input, place, index row, job row); a row left without any of the others, because that undo
failed too, was never answered 202: it is the orphan sweep's to remove. (Only a write that failed for the
client but landed, followed by an undo that failed, leaves all of them: such a job runs although its
request was answered 503; a keyed retry names it, docs/api.md.)

Two paths make good a start that never happened, both through `start_recorded`:
- a poll (GET /api/jobs/{id}, GET /api/tasks/{id}) of a PENDING job that Durable does not know,
  RESTART_AFTER after it was recorded (the submitter's own attempts all begin before that);
- the orphan sweep (jobs.sweep), for jobs nobody polls.
Both ask Durable first and start only an absent instance (two starters are harmless: one start wins).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError

from jobs import admission, durable
from jobs.query import PENDING_FROM_ROW_FOR, JobView
from jobs.submit import admission_ticket, job_start
from shared.clock import parse_iso, utc_now
from shared.contracts import JobStatus
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER, job_input_blob_name

RESTART_AFTER = PENDING_FROM_ROW_FOR
"""A job recorded this long ago without an instance will not be started by its submitter any more
(jobs.submit.START_ATTEMPTS all begin within about 12 s). Polls answer a younger PENDING job from its row
(jobs.query.PENDING_FROM_ROW_FOR), so from this age on they ask Durable, and find a job without an instance."""

Recovered = Literal["started", "exists", "unaccepted"]


async def _accepted(clients: StorageClients, record: job_store.JobRecord) -> bool:
    """Whether the recorded job was accepted: it is listed, holds its place and its claim-checked input exists."""
    if not await job_store.is_listed(clients.jobs, record):
        return False
    if await admission.entry_async(clients.settings, admission_ticket(record)["key"]) is None:
        return False
    if record["input_ref"] == job_input_blob_name(record["job_id"]):
        blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"])
        try:
            await blob.get_blob_properties()
        except ResourceNotFoundError:
            return False
    return True


async def start_recorded(client: Any, clients: StorageClients, record: job_store.JobRecord) -> Recovered:
    """Start the accepted job's orchestration unless it has an instance.

    "unaccepted": the job lacks its index row, its place or its input, so no 202 named it (jobs.sweep removes it).
    The ticket says "not admitted" whatever the place says: the orchestration then claims its place, which
    finds it admitted if it is (a recovered job pays one admission step; the common path pays none).
    """
    if not await _accepted(clients, record):
        return "unaccepted"
    if await durable.start_unless_exists(client, job_start(record, admission_ticket(record))):
        log_event("job.restarted", job_id=record["job_id"], kind=record["kind"])
        return "started"
    return "exists"


def stranded(view: JobView, now: datetime | None = None) -> bool:
    """Whether a polled job looks recorded but never started: PENDING, no instance, RESTART_AFTER old."""
    record = view.record
    if not view.unstarted or record["status"] != JobStatus.PENDING.value:
        return False
    return (now or utc_now()) - parse_iso(record["created_at"]) >= RESTART_AFTER


async def start_if_stranded(client: Any, clients: StorageClients, view: JobView) -> None:
    """A poll's share of the recovery: start the job if it looks stranded (the answer stays PENDING)."""
    if stranded(view):
        await start_recorded(client, clients, view.record)
