"""The stop marker: a blob whose presence tells a job's chunks to stop (cancel, deadline, failure).

Chunks also stop on their own at the job's deadline: the orchestrator's deadline timer cannot
reach them sooner, because the host schedules its stop-marker activity only once the running
chunks have returned.

Asking for the marker is a billed request (GetBlobProperties). A worker process runs several chunks of
the same job at once, so the answer is shared by all of them (one `_MarkerWatch` per job and process),
and the interval between asks grows from CHECK_INTERVAL_SECONDS to MAX_CHECK_INTERVAL_SECONDS while the
job runs undisturbed: a cancel is heard within MAX_CHECK_INTERVAL_SECONDS (plus the kind's time between
two `should_stop()` calls), the deadline at once (it is the clock, not a request).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from azure.storage.blob import ContainerClient

from shared.clock import parse_iso
from storage.names import stop_marker_blob_name

CHECK_INTERVAL_SECONDS = 0.5
"""The first interval between two asks for a job's marker; it doubles after each ask that finds none."""

MAX_CHECK_INTERVAL_SECONDS = 2.0
"""The longest interval between two asks: the bound on how late a running chunk hears a cancel."""

_WATCHES_KEPT = 256
"""Jobs whose marker state a process remembers (the oldest are forgotten; a chunk then asks anew)."""


class _MarkerWatch:
    """What one worker process knows of one job's stop marker, shared by that job's steps running in it."""

    def __init__(self, interval: float) -> None:
        self.lock = threading.Lock()  # one ask at a time; the others use the last answer meanwhile
        self.checked_at = float("-inf")
        self.interval = interval
        self.stopped = False

    def record(self, exists: bool, max_interval: float, grow: bool) -> None:
        self.checked_at = time.monotonic()
        self.stopped = self.stopped or exists  # a marker is never removed while its job runs
        if grow:
            self.interval = min(max_interval, self.interval * 2)


_watches: OrderedDict[tuple[str, str], _MarkerWatch] = OrderedDict()
_watches_lock = threading.Lock()


def _watch_for(container: ContainerClient, job_id: str, interval: float) -> _MarkerWatch:
    key = (container.url, job_id)  # the account too: tests run several storages in one process
    with _watches_lock:
        watch = _watches.get(key)
        if watch is None:
            watch = _watches[key] = _MarkerWatch(interval)
            while len(_watches) > _WATCHES_KEPT:
                _watches.popitem(last=False)
        else:
            _watches.move_to_end(key)
        return watch


class StopSignal:
    """A callable `should_stop()` for kinds: True once the job's stop marker exists or its deadline passed."""

    def __init__(
        self,
        results: ContainerClient,
        job_id: str,
        deadline_at: str | None = None,
        interval: float = CHECK_INTERVAL_SECONDS,
        max_interval: float = MAX_CHECK_INTERVAL_SECONDS,
    ) -> None:
        self._results, self._job_id = results, job_id
        self._deadline = parse_iso(deadline_at).timestamp() if deadline_at else None
        self._watch = _watch_for(results, job_id, interval)
        self._max_interval = max(interval, max_interval)
        self._stopped = False

    def _marker_exists(self) -> bool:
        # The blob client is made only when storage is asked: building one (its generated client and
        # serializers) was 2-4 % of a worker's CPU per job under load, and a small job's run never asks
        # (docs/benchmarks.md, "Cost per job", stop 19).
        return bool(self._results.get_blob_client(stop_marker_blob_name(self._job_id)).exists())

    def _known_stopped(self) -> bool:
        """True if stopped without asking storage: the deadline passed, or the marker was seen already."""
        if not self._stopped and self._deadline is not None and time.time() >= self._deadline:
            self._stopped = True
        self._stopped = self._stopped or self._watch.stopped
        return self._stopped

    def __call__(self) -> bool:
        """True once the deadline passed or the marker exists (storage asked at most once per interval per job)."""
        if self._known_stopped():
            return True
        watch = self._watch
        if not watch.stopped and time.monotonic() - watch.checked_at >= watch.interval:
            if watch.lock.acquire(blocking=False):  # another chunk asking now: use the answer before it
                try:
                    if time.monotonic() - watch.checked_at >= watch.interval:
                        watch.record(self._marker_exists(), self._max_interval, grow=True)
                finally:
                    watch.lock.release()
        self._stopped = watch.stopped
        return self._stopped

    def known_absent(self, as_of: float) -> None:
        """The marker did not exist at `as_of` (time.monotonic()), learned without asking for it: the job row
        read then had no cancel flag, and a cancel flags the row before it writes the marker
        (storage.jobs.flag_stop_requested). The next ask comes an interval after `as_of`."""
        with self._watch.lock:
            self._watch.checked_at = max(self._watch.checked_at, as_of)

    def check_now(self, fresh_within: float = 0.0) -> bool:
        """Ask storage now (before writing an output), unless this job's marker was asked `fresh_within` seconds
        ago; the deadline is checked either way."""
        if self._known_stopped() or time.monotonic() - self._watch.checked_at < fresh_within:
            return self._stopped
        with self._watch.lock:
            self._watch.record(self._marker_exists(), self._max_interval, grow=False)
        self._stopped = self._watch.stopped
        return self._stopped


def write_stop_marker(results: ContainerClient, job_id: str, reason: str) -> None:
    """Create (or refresh) the job's stop marker; idempotent."""
    results.get_blob_client(stop_marker_blob_name(job_id)).upload_blob(reason.encode(), overwrite=True)
