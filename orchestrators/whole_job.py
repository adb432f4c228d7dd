"""The job orchestration's first step: prepare the job, or run a one-chunk job whole (activities.whole_job).

A job run whole completes in that step: its outcome is recorded and its result written by the activity,
so the orchestration only returns it. Two rules keep that consistent with the staged path:

- a whole run that completed is the job's outcome even if the deadline passed while its completion was
  on its way (the activity checked the deadline before writing anything), so a COMPLETED row never turns
  FAILED afterwards;
- a cancel that wins the race against the step still waits for it (orchestrators.job._wind_down), and
  if the step completed the job in the meantime, that outcome stands (`outcome_of_whole_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from orchestrators.retry import backoff_seconds
from orchestrators.spans import JobTrace
from orchestrators.steps import Interrupted, Interrupts, Orchestration, StepFailed, failed, race
from shared.contracts import PREPARE_OR_RUN_JOB, JobOutcome, PrepareInput, RetryPolicy
from shared.failures import classify_failure


def _outcome(task: Any) -> JobOutcome | None:
    if not task.is_completed or failed(task) or not isinstance(task.result, dict):
        return None
    outcome = task.result.get("outcome")
    return outcome if isinstance(outcome, dict) else None  # type: ignore[return-value]


def outcome_of_whole_run(tasks: Sequence[Any]) -> JobOutcome | None:
    """The outcome of a prepare_or_run_job among `tasks` that completed the job whole, if there is one."""
    for task in tasks:
        outcome = _outcome(task)
        if outcome is not None:
            return outcome
    return None


def prepare_or_run(context: Any, start: PrepareInput, policy: RetryPolicy, interrupts: Interrupts) -> Orchestration:
    """Call prepare_or_run_job with exponential backoff (as steps.call_step); returns its WholeJobOutput."""
    attempt = 1
    trace = JobTrace.of(context)
    while True:
        started = context.current_utc_datetime
        task = context.call_activity(PREPARE_OR_RUN_JOB, trace.with_parent(start, "prepare", attempt))
        try:
            yield from race(context, task, interrupts)
        except Interrupted as interrupt:
            if interrupt.reason == "deadline" and _outcome(task) is not None:
                return task.result
            raise
        if not failed(task):
            trace.step_done(context, PREPARE_OR_RUN_JOB, "prepare", attempt, started)
            return task.result
        failure = classify_failure(task.result)
        trace.step_done(context, PREPARE_OR_RUN_JOB, "prepare", attempt, started, error=failure.error_type)
        if not failure.retryable or attempt >= policy["max_attempts"]:
            error_type = failure.error_type if not failure.retryable else "retries_exhausted"
            raise StepFailed({"type": error_type, "message": f"prepare: {failure.message}", "attempts": attempt})
        delay = backoff_seconds(policy, context.instance_id, "prepare", attempt)
        trace.retry_scheduled(context, "prepare", attempt, delay)
        waiting_from = context.current_utc_datetime
        timer = context.create_timer(waiting_from + timedelta(seconds=delay))
        yield from race(context, timer, interrupts)
        trace.backoff_done(context, "prepare", attempt, waiting_from, delay)
        attempt += 1
