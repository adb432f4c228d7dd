"""The job resource: what a client sees of a job, from its row and its orchestration's status."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from api.http import json_response
from api.links import job_links, job_url
from shared.clock import iso, parse_iso, utc_now
from shared.contracts import FINISHED_STATUSES, JobStatus
from shared.problems import Problem
from shared.status import JobState, job_state
from shared.submission import JOB_ID
from storage import jobs as job_store
from storage.jobs import JobRecord


def checked_job_id(value: str | None) -> str:
    """Job ids are 32 lowercase hex digits; anything else cannot name a job."""
    if value is None or not JOB_ID.fullmatch(value):
        raise Problem(404, "no such job")
    return value


async def durable_state(client: df.DurableOrchestrationClient, job_id: str) -> tuple[JobState | None, str | None]:
    """The job state Durable reports and when it last changed; (None, None) if it has no instance (yet)."""
    status = await client.get_status(job_id)
    runtime = getattr(status, "runtime_status", None)
    name = getattr(runtime, "value", runtime)
    if name is None:
        return None, None
    updated: datetime | None = getattr(status, "last_updated_time", None)
    return job_state(str(name), status.output, status.custom_status), iso(updated) if updated else None


def state_from_record(record: JobRecord) -> JobState:
    status = JobStatus(record["status"])
    return JobState(status, 0, 0, summary=record["summary"], error=record["error"])


async def load_job(client: df.DurableOrchestrationClient, jobs: Any, job_id: str) -> tuple[JobRecord, JobState, str]:
    """The job's row, its current state and updated_at; 404 if the job is unknown."""
    record, durable = await asyncio.gather(job_store.get_job(jobs, job_id), durable_state(client, job_id))
    if record is None:
        raise Problem(404, "no such job")
    state, updated = await reconcile(jobs, record, *durable)
    return record, state, updated


async def live_state(client: df.DurableOrchestrationClient, jobs: Any, record: JobRecord) -> tuple[JobState, str]:
    """The state and updated_at of a job whose row is already read: from its row once it has finished
    (the row then holds the outcome), else from Durable (status and progress as of now)."""
    if JobStatus(record["status"]) in FINISHED_STATUSES:
        return state_from_record(record), record["updated_at"]
    return await reconcile(jobs, record, *(await durable_state(client, record["job_id"])))


async def reconcile(jobs: Any, record: JobRecord, state: JobState | None, updated: str | None) -> tuple[JobState, str]:
    """The state to show, given the row and what Durable reports; catches the row up if it lags."""
    if state is None:
        return state_from_record(record), record["updated_at"]
    if state.status is not JobStatus(record["status"]) and state.status in FINISHED_STATUSES:
        # The index lags when an orchestration crashed before recording its outcome: catch it up.
        outcome: Any = {"status": state.status.value, "summary": state.summary, "error": state.error}
        await job_store.catch_up_status(jobs, record, state.status, outcome)
    return state, max(updated or record["updated_at"], record["updated_at"])


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
    }
    if record["deadline_at"]:
        resource["deadline_at"] = record["deadline_at"]
    if state.status is JobStatus.COMPLETED:
        resource["result"] = state.summary or {}
    if state.status is JobStatus.FAILED:
        error = state.error or {"type": "unknown", "message": "the job failed", "attempts": 0}
        resource["error"] = {"type": error["type"], "message": error["message"], "attempts": error["attempts"]}
    return resource


def retry_after_seconds(record: JobRecord) -> int:
    """Poll often at first, then back off as the job proves to be long."""
    age = (utc_now() - parse_iso(record["created_at"])).total_seconds()
    for limit, seconds in ((10, 1), (60, 2), (600, 5), (3600, 15)):
        if age < limit:
            return seconds
    return 30


def job_response(record: JobRecord, state: JobState, updated_at: str, base: str) -> func.HttpResponse:
    """200 once finished; 202 with Location and Retry-After while the job is pending or running."""
    body = job_resource(record, state, updated_at, base)
    if state.status in FINISHED_STATUSES:
        return json_response(body, 200)
    return accepted_response(body, record, base)


def accepted_response(body: dict[str, Any], record: JobRecord, base: str) -> func.HttpResponse:
    headers = {"Location": job_url(base, record["job_id"]), "Retry-After": str(retry_after_seconds(record))}
    return json_response(body, 202, headers)
