"""The contracts between the HTTP API, the queue intake and the job orchestration.

Only these small, JSON-native shapes travel through Durable Functions: references to blobs,
counts and short dicts, never payloads (claim check).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

JOB_ORCHESTRATOR = "job_orchestrator"
"""Name of the one orchestrator that runs every job kind."""

CANCEL_EVENT = "cancel_job"
"""External event raised on the job orchestration when a client asks to cancel it."""


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobStart(TypedDict):
    """Input of the job orchestrator (the instance id is the job id)."""

    job_id: str
    kind: str
    input_ref: str | None  # blob name in the payloads container, or None for kinds without input
    input_content_type: str | None
    options: dict[str, Any]
    deadline_at: str | None  # ISO 8601 UTC; None = no deadline
    submitted_at: str  # ISO 8601 UTC


class Progress(TypedDict):
    """Custom status of a job orchestration (well under Durable's 16 KB limit)."""

    phase: Literal["preparing", "processing", "merging", "finalizing", "cleaning_up", "done"]
    completed: int
    total: int


class JobError(TypedDict):
    type: str  # machine-readable: deadline_exceeded, retries_exhausted, invalid_input, ...
    message: str  # one line for humans; never a stack trace
    attempts: int


class JobOutcome(TypedDict):
    """Output of the job orchestrator. It always returns one; only an unexpected crash fails it."""

    status: Literal["COMPLETED", "FAILED", "CANCELLED"]
    result_ref: NotRequired[str | None]  # blob name in the results container
    content_type: NotRequired[str | None]
    summary: NotRequired[dict[str, Any] | None]  # small: shown in the job resource
    error: NotRequired[JobError | None]


class DeadLetterRecord(TypedDict):
    """One dead letter: a job that failed for good, or a poison intake message."""

    id: str
    source: Literal["job", "poison"]
    job_id: str | None
    kind: str | None
    input_ref: str | None  # kept so the job can be replayed
    input_content_type: str | None
    options: dict[str, Any] | None
    error_type: str
    reason: str
    attempts: int
    raw_message: str | None  # poison messages: the message text as received
    created_at: str  # ISO 8601 UTC
