"""Typed views of the API's documents: the job, its progress and error, dead letters, health, uploads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """A job's status; the last three are final."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        """Whether the job has ended (COMPLETED, FAILED or CANCELLED)."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Progress:
    """Chunks done of the planned total; `phase` where the server reports one."""

    completed: int = 0
    total: int = 0
    percent: float = 0.0
    phase: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Progress:
        """Read the resource's `progress` member (missing members count as zero)."""
        data = data if isinstance(data, dict) else {}
        phase = data.get("phase")
        return cls(
            completed=int(data.get("completed") or 0),
            total=int(data.get("total") or 0),
            percent=float(data.get("percent") or 0.0),
            phase=str(phase) if phase else None,
        )


@dataclass(frozen=True)
class JobError:
    """Why a job FAILED."""

    type: str
    message: str
    attempts: int = 0


@dataclass(frozen=True)
class JobSnapshot:
    """The job resource as the API last answered it."""

    id: str
    kind: str
    status: JobStatus
    created_at: str
    updated_at: str
    progress: Progress
    links: dict[str, str]
    summary: dict[str, Any] | None = None
    error: JobError | None = None
    deadline_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSnapshot:
        """Read a job resource; unknown members are kept in `raw` only."""
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind", "")),
            status=JobStatus(data["status"]),
            created_at=str(data.get("created_at", "")),
            updated_at=str(data.get("updated_at", "")),
            # The phase sits in `progress` or beside it, as the event stream sends it.
            progress=Progress.from_json({"phase": data.get("phase"), **(data.get("progress") or {})}),
            links={str(k): str(v) for k, v in (data.get("links") or {}).items()},
            summary=data.get("result") if isinstance(data.get("result"), dict) else None,
            error=JobError(str(error.get("type", "")), str(error.get("message", "")), int(error.get("attempts") or 0))
            if isinstance(error, dict)
            else None,
            deadline_at=data.get("deadline_at"),
            raw=dict(data),
        )

    @property
    def phase(self) -> str:
        """The server's phase when it reports one, else what status and counts say."""
        if self.progress.phase:
            return self.progress.phase
        if self.status is not JobStatus.RUNNING:
            return self.status.value.lower()
        if self.progress.total == 0:
            return "preparing"
        return "processing" if self.progress.completed < self.progress.total else "merging"


@dataclass(frozen=True)
class DeadLetter:
    """A failed job or a poison intake message."""

    id: str
    source: str
    job_id: str | None
    kind: str | None
    error_type: str
    reason: str
    attempts: int
    created_at: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def replayable(self) -> bool:
        """Only failed jobs can be replayed; poison messages must be fixed and sent again."""
        return self.source == "job" and bool(self.kind)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeadLetter:
        """Read a dead-letter document."""
        return cls(
            id=str(data["id"]),
            source=str(data.get("source", "")),
            job_id=data.get("job_id"),
            kind=data.get("kind"),
            error_type=str(data.get("error_type", "")),
            reason=str(data.get("reason", "")),
            attempts=int(data.get("attempts") or 0),
            created_at=str(data.get("created_at", "")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Health:
    """What GET /api/health says: storage reachable, queue depths, job counts."""

    status: str
    storage: str
    queues: dict[str, int | None]
    jobs: dict[str, int]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Whether storage answered."""
        return self.status == "ok"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Health:
        """Read the health document."""
        return cls(
            status=str(data.get("status", "")),
            storage=str(data.get("storage", "")),
            queues=dict(data.get("queues") or {}),
            jobs=dict(data.get("jobs") or {}),
            raw=dict(data),
        )


@dataclass(frozen=True)
class UploadTicket:
    """A write-only URL for one blob, and the input_ref a job names it by."""

    input_ref: str
    upload_url: str
    expires_at: str
    headers: dict[str, str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadTicket:
        """Read POST /api/uploads' answer."""
        return cls(
            input_ref=str(data["input_ref"]),
            upload_url=str(data["upload_url"]),
            expires_at=str(data.get("expires_at", "")),
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
        )
