"""A job's webhook events: their ids, their JSON body (the job resource) and their Standard Webhooks signature."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from shared import tracing
from shared.clock import iso
from shared.contracts import JobOutcome, JobStart, JobStatus, RetryPolicy, WebhookEvent
from shared.settings import Settings
from shared.status import JobState

USER_AGENT = "longrun-webhooks/1"

_STATUS_OF_EVENT = {
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
    "progress": JobStatus.RUNNING,
}


def webhook_id(job_id: str, event: str, sequence: int | None = None) -> str:
    """The event's webhook-id: derived from the job id and the event, so every attempt and replay reuses it."""
    return f"msg_{job_id}_{event}" if sequence is None else f"msg_{job_id}_{event}_{sequence}"


def delivery_instance_id(webhook_id_: str) -> str:
    """The delivery orchestration's instance id for an event (one delivery per event, whoever asks twice)."""
    return f"webhook-{webhook_id_}"


def delivery_policy(settings: Settings) -> RetryPolicy:
    """The project's backoff (the RETRY_* settings) for webhook attempts."""
    return {
        "first_interval_seconds": settings.retry_first_interval_seconds,
        "backoff_coefficient": settings.retry_backoff_coefficient,
        "max_interval_seconds": settings.retry_max_interval_seconds,
        "max_attempts": settings.retry_max_attempts,
    }


def job_resource(
    start: JobStart, event: str, outcome: JobOutcome | None, completed: int, total: int, now: datetime, base: str | None
) -> dict[str, Any]:
    """The job resource as GET /api/jobs/{id} shows it at this event (links only when PUBLIC_BASE_URL is set)."""
    status = _STATUS_OF_EVENT[event]
    state = JobState(status, total if status is JobStatus.COMPLETED else completed, total)
    resource: dict[str, Any] = {
        "id": start["job_id"],
        "kind": start["kind"],
        "status": status.value,
        "created_at": start["submitted_at"],
        "updated_at": iso(now),
        "progress": {"completed": state.completed, "total": state.total, "percent": state.percent},
        # The job's lane is its priority (jobs.submit.admission_ticket); only a job started before admission
        # tickets existed has none, and it ran as "normal".
        "priority": start.get("admission", {}).get("lane", "normal"),
    }
    trace_id = tracing.trace_id_of(start.get("traceparent"))
    if trace_id:
        resource["trace_id"] = trace_id
    if base:
        url = f"{base.rstrip('/')}/api/jobs/{start['job_id']}"
        resource["links"] = {"self": url, "result": f"{url}/result", "cancel": url}
    if start.get("deadline_at"):
        resource["deadline_at"] = start["deadline_at"]
    if status is JobStatus.COMPLETED:
        resource["result"] = (outcome.get("summary") if outcome else None) or {}
    if status is JobStatus.FAILED:
        error = (outcome.get("error") if outcome else None) or {
            "type": "unknown",
            "message": "the job failed",
            "attempts": 0,
        }
        resource["error"] = {"type": error["type"], "message": error["message"], "attempts": error["attempts"]}
    return resource


def job_event(
    start: JobStart,
    url: str,
    event: str,
    outcome: JobOutcome | None,
    completed: int,
    total: int,
    now: datetime,
    base: str | None,
) -> WebhookEvent:
    """The event to deliver: its id, and the body every attempt sends."""
    sequence = completed if event == "progress" else None
    type_ = f"job.{event}"
    return {
        "webhook_id": webhook_id(start["job_id"], event, sequence),
        "job_id": start["job_id"],
        "kind": start["kind"],
        "type": type_,
        "url": url,
        "payload": {
            "type": type_,
            "timestamp": iso(now),
            "data": job_resource(start, event, outcome, completed, total, now, base),
        },
    }


def body_of(event: WebhookEvent) -> bytes:
    """The exact bytes POSTed (and signed): the same for every attempt of the event."""
    return json.dumps(event["payload"], separators=(",", ":"), sort_keys=True).encode()


def signed_headers(secret: str, event: WebhookEvent, body: bytes, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (webhook-timestamp is the attempt's time, the id the event's)."""
    signature = Webhook(secret).sign(msg_id=event["webhook_id"], timestamp=now, data=body.decode())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event["webhook_id"],
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
