"""Map a Durable orchestration's runtime status onto the job states clients see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.contracts import JobError, JobStatus

_RUNNING = {"Running", "ContinuedAsNew", "Suspended"}
_CANCELLED = {"Terminated", "Canceled"}


@dataclass(frozen=True)
class JobState:
    """A job's status and progress as clients see it, with its outcome once finished."""

    status: JobStatus
    completed: int
    total: int
    summary: dict[str, Any] | None = None
    result_ref: str | None = None
    content_type: str | None = None
    error: JobError | None = None
    phase: str | None = None  # the orchestrator's phase, while it reports one
    seq: int = 0  # the orchestrator's count of progress changes (0 before its first)

    @property
    def percent(self) -> float:
        """Progress in percent (100 once COMPLETED)."""
        if self.status is JobStatus.COMPLETED:
            return 100.0
        return round(100.0 * self.completed / self.total, 1) if self.total else 0.0


def _progress(custom_status: Any) -> tuple[int, int]:
    if isinstance(custom_status, dict):
        completed, total = custom_status.get("completed"), custom_status.get("total")
        if isinstance(completed, int) and isinstance(total, int):
            return completed, total
    return 0, 0


def _phase_and_seq(custom_status: Any) -> tuple[str | None, int]:
    if not isinstance(custom_status, dict):
        return None, 0
    phase, seq = custom_status.get("phase"), custom_status.get("seq")
    # An instance started before the orchestrator numbered its changes has no seq until its next episode.
    return (phase if isinstance(phase, str) else None), (seq if isinstance(seq, int) and seq >= 0 else 0)


def job_state(runtime_status: str | None, output: Any, custom_status: Any) -> JobState:
    """The job state for a Durable status (runtime status name, output, custom status)."""
    completed, total = _progress(custom_status)
    phase, seq = _phase_and_seq(custom_status)
    if runtime_status in (None, "Pending"):
        return JobState(JobStatus.PENDING, completed, total, phase=phase, seq=seq)
    if runtime_status in _RUNNING:
        waiting = isinstance(custom_status, dict) and custom_status.get("phase") == "queued"  # not yet admitted
        return JobState(JobStatus.PENDING if waiting else JobStatus.RUNNING, completed, total, phase=phase, seq=seq)
    if runtime_status in _CANCELLED:
        return JobState(JobStatus.CANCELLED, completed, total, phase=phase, seq=seq)
    if runtime_status == "Completed" and isinstance(output, dict) and output.get("status") in JobStatus.__members__:
        status = JobStatus(output["status"])
        error = output.get("error") if status is JobStatus.FAILED else None
        return JobState(
            status,
            total if status is JobStatus.COMPLETED else completed,
            total,
            summary=output.get("summary"),
            result_ref=output.get("result_ref"),
            content_type=output.get("content_type"),
            error=error,
            phase=phase,
            seq=seq,
        )
    # An orchestrator crash (runtime Failed) or an unexpected output: report a failure whose message
    # is the first line only; Durable's text can carry a stack trace.
    message = str(output).splitlines()[0][:500] if output else "the job failed"
    return JobState(
        JobStatus.FAILED,
        completed,
        total,
        error={"type": "orchestration_failed", "message": message, "attempts": 1},
        phase=phase,
        seq=seq,
    )
