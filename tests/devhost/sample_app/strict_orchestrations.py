"""Sample orchestrations for the behaviours where Azure is strict: open tasks, long timers (a blueprint, so
the sample app's main module stays as it was)."""

from datetime import timedelta
from typing import Any

import azure.durable_functions as df

bp = df.Blueprint()


def _timer_in(context: df.DurableOrchestrationContext, seconds: float) -> Any:
    return context.create_timer(context.current_utc_datetime + timedelta(seconds=seconds))


@bp.orchestration_trigger(context_name="context")
def raced_timer(context: df.DurableOrchestrationContext):
    """An activity beats a timer that is left running (not cancelled)."""
    seconds, cancel = context.get_input()
    timer = _timer_in(context, seconds)
    work = context.call_activity("hello", "race")
    winner = yield context.task_any([work, timer])
    if cancel and winner is work:
        timer.cancel()
    return {"winner": "work" if winner is work else "timer"}


@bp.orchestration_trigger(context_name="context")
def failing_with_open_timer(context: df.DurableOrchestrationContext):
    """Fails after an activity beat a timer that stays open."""
    timer = _timer_in(context, context.get_input())
    yield context.task_any([context.call_activity("hello", "race"), timer])
    raise ValueError("broke with a timer still open")


@bp.orchestration_trigger(context_name="context")
def raced_activity(context: df.DurableOrchestrationContext):
    """A slow activity loses to a fast one; the loser is still running when the orchestrator returns."""
    slow = context.call_activity("sleep_for", context.get_input())
    fast = context.call_activity("hello", "fast")
    winner = yield context.task_any([slow, fast])
    return winner.result


@bp.orchestration_trigger(context_name="context")
def raced_event(context: df.DurableOrchestrationContext):
    """An activity beats an external event that never comes: a pending event is not an open task."""
    event = context.wait_for_external_event("never")
    winner = yield context.task_any([context.call_activity("hello", "event"), event])
    return winner.result


@bp.orchestration_trigger(context_name="context")
def long_timer(context: df.DurableOrchestrationContext):
    """A timer longer than maximumShortTimerDuration, then an activity after it."""
    seconds = context.get_input()
    yield _timer_in(context, seconds)
    after = yield context.call_activity("hello", "after")
    return {"after": after, "now": context.current_utc_datetime.isoformat()}
