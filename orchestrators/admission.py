"""Waiting for admission: the first step of a job that could not be admitted when it was submitted.

The job claims its place (an activity that admits whatever can be admitted), and if it must wait, it
waits for its `job_admitted` event, its cancel event, or a recheck timer, whichever comes first. The
timer is never longer than the recheck interval and never runs past the deadline (which counts from
submit), so a job whose admission notice was lost finds out by itself, a deadline ends the wait on
time, and no timer is left open: a timer that lost the race is cancelled (see orchestrators.steps).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrators.steps import Interrupted, Interrupts, Orchestration, call_step, cancel_timers
from shared.contracts import (
    ADMITTED_EVENT,
    CLAIM_ADMISSION,
    AdmissionClaim,
    AdmissionInput,
    AdmissionTicket,
    RetryPolicy,
)


def wait_for_admission(
    context: Any, job_id: str, ticket: AdmissionTicket, policy: RetryPolicy, interrupts: Interrupts
) -> Orchestration:
    """Return once the job is admitted; raise Interrupted if it is cancelled or its deadline passes first."""
    if ticket.get("admitted"):
        return
    interrupts.check(context)
    claim_input: AdmissionInput = {"job_id": job_id, "ticket": ticket}
    # One waiter for the whole wait: a second waiter for the same event name would not see an event
    # the first one consumed.
    admitted = context.wait_for_external_event(ADMITTED_EVENT)
    while True:
        claim: AdmissionClaim = yield from call_step(
            context, CLAIM_ADMISSION, claim_input, policy, "admission", interrupts
        )
        if claim["admitted"] or admitted.is_completed:
            return
        wake = context.current_utc_datetime + timedelta(seconds=int(claim["recheck_seconds"]))
        if interrupts.deadline_at is not None and interrupts.deadline_at < wake:
            wake = interrupts.deadline_at
        timer = context.create_timer(wake)
        winner = yield context.task_any([admitted, timer, *interrupts.tasks])
        reason = interrupts.reason_for(winner)
        if reason is not None:
            raise Interrupted(reason, cancel_timers([timer]))
        if winner is admitted:
            cancel_timers([timer])
            return
        interrupts.check(context)  # the timer fired: at the deadline, or time to claim again
