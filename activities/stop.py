"""Stopping a job's work: write the stop marker, and watch for it beside a long backoff."""

from __future__ import annotations

import time

from activities.plan import load_plan
from activities.resources import results
from activities.stop_marker import CHECK_INTERVAL_SECONDS, StopSignal, write_stop_marker
from shared.contracts import StopReason, WatchOutput
from shared.failures import NonRetryableError
from shared.settings import get_settings


def request_stop(job_id: str, reason: StopReason | str) -> None:
    """Write the stop marker that running chunks poll."""
    write_stop_marker(results(get_settings()), job_id, reason)


def watch_for_stop(job_id: str, seconds: float) -> WatchOutput:
    """Wait up to `seconds` for the job's stop marker (or deadline); {"stopped": True} as soon as it appears.

    Run beside a long backoff timer so a cancel does not wait for the timer (see orchestrators.steps.back_off).
    """
    settings = get_settings()
    try:
        deadline_at = load_plan(settings, job_id).get("deadline_at")
    except NonRetryableError:
        return {"stopped": True}  # the job was cleaned up
    should_stop = StopSignal(results(settings), job_id, deadline_at=deadline_at)
    give_up = time.monotonic() + max(0.0, seconds)
    while time.monotonic() < give_up:
        if should_stop():
            return {"stopped": True}
        time.sleep(min(CHECK_INTERVAL_SECONDS, max(0.0, give_up - time.monotonic())))
    return {"stopped": should_stop.check_now()}
