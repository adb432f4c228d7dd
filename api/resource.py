"""The job resource: what a client sees of a job, and the 200/202 answers that carry it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azurefunctions.extensions.http.fastapi import Response

from api.http import json_response
from api.links import job_links, job_url
from api.problems import Problem
from jobs.admission import Place
from jobs.events import state_version
from jobs.query import JobView
from jobs.queue_progress import queue_progress
from jobs.requests import JOB_ID
from shared import tracing
from shared.clock import parse_iso, utc_now
from shared.contracts import FINISHED_STATUSES, JobStatus
from shared.status import JobState
from storage.jobs import JobRecord


def checked_job_id(value: str | None) -> str:
    """Job ids are 32 lowercase hex digits; anything else cannot name a job."""
    if value is None or not JOB_ID.fullmatch(value):
        raise Problem(404, "no such job")
    return value


def job_resource(record: JobRecord, state: JobState, updated_at: str, base: str) -> dict[str, Any]:
    """The public job document: no input, no secrets, no Durable URLs."""
    resource: dict[str, Any] = {
        "id": record["job_id"],
        "kind": record["kind"],
        "status": state.status.value,
        "created_at": record["created_at"],
        "updated_at": updated_at,
        "progress": {"completed": state.completed, "total": state.total, "percent": state.percent},
        "links": job_links(base, record["job_id"]),
        "priority": record["priority"],
    }
    trace_id = tracing.trace_id_of(record.get("traceparent"))
    if trace_id:
        resource["trace_id"] = trace_id  # support jumps from the job to its trace (Application Insights, OTLP)
    if record["deadline_at"]:
        resource["deadline_at"] = record["deadline_at"]
    if state.status is JobStatus.COMPLETED:
        resource["result"] = state.summary or {}
    if state.status is JobStatus.FAILED:
        error = state.error or {"type": "unknown", "message": "the job failed", "attempts": 0}
        resource["error"] = {"type": error["type"], "message": error["message"], "attempts": error["attempts"]}
    return resource


def view_resource(view: JobView, base: str) -> dict[str, Any]:
    """The public document of a job view."""
    return job_resource(view.record, view.state, view.updated_at, base)


def poll_seconds(created_at: str) -> int:
    """Poll often at first, then back off as the job proves to be long."""
    return _poll_interval(parse_iso(created_at))


def _poll_interval(created: datetime) -> int:
    age = (utc_now() - created).total_seconds()
    for limit, seconds in ((10, 1), (60, 2), (600, 5), (3600, 15)):
        if age < limit:
            return seconds
    return 30


def retry_after_seconds(record: JobRecord, waiting_to_begin: bool = False) -> int:
    """The Retry-After of a job's 202 answers: its age's poll interval; for a job that was admitted and waits
    for its first step, at least until its turn is likely to have come (jobs.queue_progress)."""
    created = parse_iso(record["created_at"])
    seconds = _poll_interval(created)
    if waiting_to_begin:
        seconds = max(seconds, queue_progress.retry_after(created))
    return seconds


def entity_tag(view: JobView) -> str:
    """The ETag of what a client can observe of the job (status and progress): its state's version.

    Weak, because updated_at may move without a visible change; the same version as the job's event ids,
    so it is the same on every app instance.
    """
    return f'W/"{state_version(view.state)}"'


def matching_versions(if_none_match: str | None) -> set[int]:
    """The versions named by an If-None-Match header (weak comparison); tags we never issue match nothing."""
    versions: set[int] = set()
    for tag in (if_none_match or "").split(","):
        opaque = tag.strip().removeprefix("W/")
        if len(opaque) >= 2 and opaque[0] == opaque[-1] == '"' and opaque[1:-1].isascii() and opaque[1:-1].isdigit():
            versions.add(int(opaque[1:-1]))
    return versions


def job_response(view: JobView, base: str, place: Place | None = None) -> Response:
    """200 once finished; 202 with Location and Retry-After while the job is pending or running; with its ETag.

    A job waiting for admission also shows its place: lane and approximate position (1 = next in its lane).
    """
    body = view_resource(view, base)
    if place is not None:
        body["queue"] = {"lane": place.lane, "position": place.position, "approximate": True}
    if view.state.status in FINISHED_STATUSES:
        return json_response(body, 200, {"ETag": entity_tag(view)})
    waiting_to_begin = view.state.status is JobStatus.PENDING and place is None
    return accepted_response(body, view.record, base, {"ETag": entity_tag(view)}, waiting_to_begin=waiting_to_begin)


def accepted_response(
    body: dict[str, Any],
    record: JobRecord,
    base: str,
    extra_headers: dict[str, str] | None = None,
    *,
    waiting_to_begin: bool = False,
) -> Response:
    """202 Accepted with the job's Location and when to poll it."""
    retry_after = retry_after_seconds(record, waiting_to_begin)
    headers = {"Location": job_url(base, record["job_id"]), "Retry-After": str(retry_after)}
    return json_response(body, 202, {**headers, **(extra_headers or {})})
