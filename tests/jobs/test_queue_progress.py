"""When a job that has not begun is likely to: jobs.queue_progress, on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.queue_progress import MAX_RETRY_AFTER_SECONDS, QueueProgress

EPOCH = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def submitted(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def burst(progress: QueueProgress, clock: Clock, begun: int, every: float, submitted_every: float) -> None:
    """`begun` jobs begin `every` seconds apart; they had been submitted `submitted_every` seconds apart."""
    for n in range(begun):
        progress.report(submitted(n * submitted_every))
        if n < begun - 1:
            clock.now += every


def test_a_job_far_behind_the_front_is_told_when_its_turn_comes(clock: Clock) -> None:
    """Jobs submitted 0.01 s apart begin 0.1 s apart: the queue takes 0.1 s of submissions a second, so a job
    submitted 0.3 s after the front begins in about 3 s."""
    progress = QueueProgress(clock=clock)
    burst(progress, clock, begun=10, every=0.1, submitted_every=0.01)  # the front: submitted at 0.09 s
    assert progress.seconds_until_begun(submitted(0.39)) == pytest.approx(3.0, abs=1e-3)
    assert progress.retry_after(submitted(0.39)) == 3  # three quarters of 3 s, in whole seconds rounded up
    assert progress.retry_after(submitted(0.49)) == 3  # of 4 s
    assert progress.retry_after(submitted(0.59)) == 4  # of 5 s
    clock.now += 0.5  # half a second without a report (under a second: still an estimate), half a second less
    assert progress.seconds_until_begun(submitted(0.39)) == pytest.approx(2.5, abs=1e-3)


def test_a_job_at_or_behind_the_front_is_due(clock: Clock) -> None:
    progress = QueueProgress(clock=clock)
    burst(progress, clock, begun=10, every=0.1, submitted_every=0.01)
    assert progress.seconds_until_begun(submitted(0.05)) == 0.0
    assert progress.retry_after(submitted(0.09)) == 0


def test_the_estimate_is_capped(clock: Clock) -> None:
    progress = QueueProgress(clock=clock)
    burst(progress, clock, begun=10, every=0.1, submitted_every=0.001)  # a queue that barely moves
    wait = progress.seconds_until_begun(submitted(60))
    assert wait is not None and wait > MAX_RETRY_AFTER_SECONDS
    assert progress.retry_after(submitted(60)) == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("begun", "every", "then_wait", "why"),
    [
        (3, 0.5, 0.0, "too few reports"),
        (10, 0.01, 0.0, "reports too close together to have a pace"),
        (10, 0.1, 1.5, "no report for longer than a second and four usual gaps: drained or stalled"),
        (10, 0.1, 11.0, "the reports are stale"),
    ],
)
def test_no_estimate_without_evidence(clock: Clock, begun: int, every: float, then_wait: float, why: str) -> None:
    progress = QueueProgress(clock=clock)
    burst(progress, clock, begun=begun, every=every, submitted_every=0.01)
    clock.now += then_wait
    assert progress.seconds_until_begun(submitted(5)) is None, why
    assert progress.retry_after(submitted(5)) == 0, why


def test_only_recent_reports_count(clock: Clock) -> None:
    """An old burst's slow pace does not linger: once its reports are stale, a new pace is read."""
    progress = QueueProgress(clock=clock)
    burst(progress, clock, begun=10, every=0.1, submitted_every=0.001)
    clock.now += 20
    start = 100.0
    for n in range(10):
        progress.report(submitted(start + n * 0.1))
        if n < 9:
            clock.now += 0.1
    assert progress.seconds_until_begun(submitted(start + 1.9)) == pytest.approx(1.0, abs=1e-3)
