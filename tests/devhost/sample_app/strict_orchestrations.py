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


@bp.orchestration_trigger(context_name="context")
def leaky_activity(context: df.DurableOrchestrationContext):
    """Fails with an activity error whose message carries credential-like text."""
    yield context.call_activity("fail_always", context.get_input())
    return "unreachable"


@bp.orchestration_trigger(context_name="context")
def leaky_orchestrator(context: df.DurableOrchestrationContext):
    """Fails with credential-like text in its own exception."""
    yield context.call_activity("hello", "x")
    raise ValueError(f"cannot connect: {context.get_input()}")


@bp.orchestration_trigger(context_name="context")
def status_of_size(context: df.DurableOrchestrationContext):
    """Sets a custom status of the given number of characters (a JSON string: 2 more with its quotes)."""
    characters = context.get_input()
    context.set_custom_status("x" * characters)
    yield context.call_activity("noop", 1)
    return characters


@bp.activity_trigger(input_name="seconds")
def overrun(seconds: float) -> float:
    """Sleeps past a short functionTimeout."""
    import time

    time.sleep(seconds)
    return seconds


@bp.orchestration_trigger(context_name="context")
def times_out(context: df.DurableOrchestrationContext):
    """Reports the failure of an activity that overran functionTimeout."""
    try:
        yield context.call_activity("overrun", context.get_input())
    except Exception as exc:  # noqa: BLE001 - the sample reports what the SDK raised
        return str(exc).split("\n")[0]
    return "finished"
