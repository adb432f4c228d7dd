"""The job orchestration's first step: prepare the job, or run a small job whole (activities.whole_job).

A job run whole completes in that step: its outcome is recorded and its result written by the activity,
so the orchestration only returns it. Two rules keep that consistent with the staged path (the staged
tail, activities.complete, follows them too):

- a whole run that completed is the job's outcome even if the deadline passed while its completion was
  on its way (the activity checked the deadline before writing anything), so a COMPLETED row never turns
  FAILED afterwards (steps.call_step);
- a cancel that wins the race against the step still waits for it (orchestrators.job._wind_down), and
  if the step completed the job in the meantime, that outcome stands (`outcome_of_whole_run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrators.steps import Interrupts, Orchestration, call_step, recorded_outcome
from shared.contracts import PREPARE_OR_RUN_JOB, JobOutcome, PrepareInput, RetryPolicy


def outcome_of_whole_run(tasks: Sequence[Any]) -> JobOutcome | None:
    """The outcome of a prepare_or_run_job among `tasks` that completed the job whole, if there is one."""
    return recorded_outcome(tasks)


def prepare_or_run(context: Any, start: PrepareInput, policy: RetryPolicy, interrupts: Interrupts) -> Orchestration:
    """Call prepare_or_run_job with exponential backoff (steps.call_step); returns its WholeJobOutput."""
    prepared = yield from call_step(context, PREPARE_OR_RUN_JOB, start, policy, "prepare", interrupts)
    return prepared
