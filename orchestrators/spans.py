"""The job's trace as the orchestrators see it: replay-safe spans for the job, its steps and its backoffs.

Every id is derived (shared.tracing.span_id_for) from the job id, the step's key and its attempt, and a
span is emitted once, in the episode that sees its end for the first time (`context.is_replaying` is
False), with the orchestration's own clock for its start and end. A step's activity gets the step's
span as its parent in its input before the step's span exists; exporters and Application Insights join
them by id, not by order. The trace comes from the orchestration's input (JobStart or ChunkBatchInput
`traceparent`), so the helpers in orchestrators.steps need nothing but the context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import tracing
from shared.contracts import PROCESS_CHUNK
from shared.failures import classify_failure
from shared.telemetry import log_event


@dataclass(frozen=True)
class JobTrace:
    """A job's trace: its id and whether it is sampled (None trace id: the job has no trace context)."""

    job_id: str
    trace_id: str | None
    sampled: bool = True

    @classmethod
    def of(cls, context: Any) -> JobTrace:
        """The trace of the job an orchestration (job or chunk batch) belongs to, from its input."""
        try:
            data = context.get_input()
        except Exception:  # an input that is not JSON cannot carry trace context
            data = None
        data = data if isinstance(data, dict) else {}
        job_id = str(data.get("job_id") or context.instance_id)
        parsed = tracing.parse_traceparent(data.get(tracing.TRACEPARENT))
        if parsed is None:
            return cls(job_id, None)
        return cls(job_id, parsed[0], parsed[2])

    def traceparent(self, *key: object) -> str | None:
        """The traceparent of the span named by `key` (("job",) or (step, attempt))."""
        if self.trace_id is None:
            return None
        return tracing.format_traceparent(self.trace_id, tracing.span_id_for(self.job_id, *key), self.sampled)

    @property
    def job(self) -> str | None:
        """The job span's traceparent: the parent of every step."""
        return self.traceparent("job")

    def with_parent(self, payload: Any, key: str, attempt: int) -> Any:
        """An activity input carrying its step span's traceparent (the activity's span is that span's child)."""
        parent = self.traceparent(key, attempt)
        if parent is None or not isinstance(payload, dict):
            return payload
        return {**payload, tracing.TRACEPARENT: parent}

    def emit(
        self,
        context: Any,
        name: str,
        key: tuple[object, ...],
        parent: str | None,
        started: datetime,
        attributes: dict[str, Any] | None = None,
        error: str | None = None,
        ended: datetime | None = None,
    ) -> None:
        """Emit the span `key` from `started` to `ended` (default: now), once (never while replaying)."""
        if self.trace_id is None or context.is_replaying:
            return
        tracing.record_span(
            name,
            parent=parent,
            span_id=tracing.span_id_for(self.job_id, *key),
            start=started,
            end=ended or context.current_utc_datetime,
            attributes={"job.id": self.job_id, **(attributes or {})},
            error=error,
        )

    def step_done(
        self, context: Any, activity: str, key: str, attempt: int, started: datetime, error: str | None = None
    ) -> None:
        """A step's attempt is over (its activity returned or failed)."""
        attributes = {"step": key, "activity": activity, "attempt": attempt}
        self.emit(context, f"step {key}", (key, attempt), self.job, started, attributes, error)

    def backoff_done(self, context: Any, key: str, attempt: int, started: datetime, delay: float) -> None:
        """A backoff after a failed attempt is over; also the retry event (and metric) for it."""
        attributes = {"step": key, "attempt": attempt, "backoff.seconds": round(delay, 3)}
        ended = min(started + timedelta(seconds=delay), context.current_utc_datetime)  # a cancel cuts it short
        self.emit(context, f"backoff {key}", ("backoff", key, attempt), self.job, started, attributes, ended=ended)

    def chunks_done(
        self, context: Any, wave: Sequence[tuple[int, int]], tasks: Sequence[Any], started: datetime
    ) -> None:
        """A wave of chunks is over: one step span per chunk attempt (failed ones marked as errors)."""
        for (index, attempt), task in zip(wave, tasks, strict=True):
            error = classify_failure(task.result).error_type if isinstance(task.result, Exception) else None
            self.step_done(context, PROCESS_CHUNK, f"chunk-{index}", attempt, started, error)

    def retry_scheduled(self, context: Any, key: str, attempt: int, delay: float) -> None:
        """A failed attempt will be retried after `delay` seconds (logged once, not on replay)."""
        if not context.is_replaying:
            step = "chunk" if key.startswith("chunk-") else key
            with tracing.within(self.job):
                log_event(
                    "job.retry", job_id=self.job_id, step=step, key=key, attempt=attempt, delay_ms=int(delay * 1000)
                )

    def under_job(self, payload: Any) -> Any:
        """An input carrying the job span's context: an activity that is no retried step, or a chunk batch."""
        if self.job is None or not isinstance(payload, dict):
            return payload
        return {**payload, tracing.TRACEPARENT: self.job}


def job_span(context: Any, start: Any, started: datetime, outcome: Any) -> None:
    """The job's own span, from the orchestration's first step to its outcome: the submit span's child."""
    error = outcome.get("error") if isinstance(outcome, dict) else None
    attributes = {"job.kind": start.get("kind"), "job.status": outcome.get("status") if outcome else None}
    JobTrace.of(context).emit(
        context,
        "job",
        ("job",),
        start.get(tracing.TRACEPARENT),
        started,
        attributes,
        error=error["type"] if isinstance(error, dict) else None,
    )
