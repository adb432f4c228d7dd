"""When an admitted job's first step is likely to begin, from how far this process has seen the queue get.

A job admitted at submission still waits in Durable's queues until a worker takes its first step. On a quiet
app that is a fraction of a second; under a burst it grows to seconds, and every poll before the wait ends
can only answer PENDING again. In Azure each poll is a billed function execution and a table read (issue #15),
so a poll of such a job is told to come back when its turn is likely to have come (api.resource), not only
after the age-based interval.

The first step of every job admitted at once (activities.whole_job.prepare_or_run_job) reports when its job
was submitted. Jobs begin roughly in submission order, so the reports say how far the queue has got (the
latest submission time among jobs begun) and how fast it advances (seconds of submissions per second). A job
submitted later than the queue's front begins after the jobs in between: its distance to the front divided by
that speed. No estimate without recent reports, or once they stop coming at the pace they came: a queue that
has drained looks the same as one that stalled, and either way the age-based interval is the safer answer.
Per process, like every worker's view: each instance of a scaled-out app learns from the jobs it runs itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

REPORTS_KEPT = 32
FRESH_SECONDS = 10.0
"""Reports older than this say nothing about the queue now."""
MIN_REPORTS = 4
MIN_SPAN_SECONDS = 0.5
"""The reports must spread over this much time for their pace to mean anything."""
QUIET_GAPS = 4
"""No report for this many of the reports' usual gaps (and at least a second): the queue has drained or
stalled, so no estimate."""
SHARE_OF_ESTIMATE = 0.75
"""A client is sent back after this share of the estimated wait: one poll more when the estimate is right, and
less waiting past the job's start when the queue speeds up (as it does when a burst's polls die down)."""
ROUNDING_SLACK = 0.001
"""Submission times are stored to the microsecond: 3.000004 s is 3 s, not 4."""
MAX_RETRY_AFTER_SECONDS = 10
"""Never tell a client to wait longer than this for a job that has not begun: the estimate extrapolates."""


class QueueProgress:
    """The latest first steps this process began: (when it began, monotonic; when its job was submitted, epoch)."""

    def __init__(self, kept: int = REPORTS_KEPT, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._reports: deque[tuple[float, float]] = deque(maxlen=kept)
        self._clock = clock

    def report(self, submitted_at: datetime) -> None:
        """A job submitted at `submitted_at` has begun now."""
        with self._lock:
            self._reports.append((self._clock(), submitted_at.timestamp()))

    def seconds_until_begun(self, submitted_at: datetime) -> float | None:
        """How long until a job submitted at `submitted_at` that has not begun is likely to (0: it is due);
        None when the reports do not say."""
        now = self._clock()
        with self._lock:
            reports = [(began, submitted) for began, submitted in self._reports if began >= now - FRESH_SECONDS]
        if len(reports) < MIN_REPORTS:
            return None
        first_began, last_began = reports[0][0], reports[-1][0]
        span = last_began - first_began
        if span < MIN_SPAN_SECONDS:
            return None
        gap = span / (len(reports) - 1)
        if now - last_began > max(1.0, QUIET_GAPS * gap):
            return None
        submissions = [submitted for _, submitted in reports]
        front = max(submissions)
        ahead = submitted_at.timestamp() - front
        if ahead <= 0:
            return 0.0
        pace = (front - min(submissions)) / span  # seconds of submissions the queue takes per second
        if pace <= 0:
            return None
        return max(0.0, ahead / pace - (now - last_began))

    def retry_after(self, submitted_at: datetime) -> int:
        """Whole seconds to wait before polling a job that has not begun (0: no estimate, or it is due)."""
        wait = self.seconds_until_begun(submitted_at)
        if wait is None:
            return 0
        return min(MAX_RETRY_AFTER_SECONDS, math.ceil(wait * SHARE_OF_ESTIMATE - ROUNDING_SLACK))


queue_progress = QueueProgress()
"""This process's reports: written by first steps, read by polls (both run in every worker process)."""
