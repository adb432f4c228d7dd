"""The stop marker: a blob whose presence tells a job's chunks to stop (cancel, deadline, failure).

Chunks also stop on their own at the job's deadline: the orchestrator's deadline timer cannot
reach them sooner, because the host schedules its stop-marker activity only once the running
chunks have returned.
"""

from __future__ import annotations

import time

from azure.storage.blob import ContainerClient

from shared.clock import parse_iso
from storage.names import stop_marker_blob_name

CHECK_INTERVAL_SECONDS = 0.5
"""Chunks ask between batches of rows; caching the answer this long keeps the check cheap."""


class StopSignal:
    """A callable `should_stop()` for kinds: True once the job's stop marker exists or its deadline passed."""

    def __init__(
        self,
        results: ContainerClient,
        job_id: str,
        deadline_at: str | None = None,
        interval: float = CHECK_INTERVAL_SECONDS,
    ) -> None:
        self._marker = results.get_blob_client(stop_marker_blob_name(job_id))
        self._deadline = parse_iso(deadline_at).timestamp() if deadline_at else None
        self._interval = interval
        self._checked_at = float("-inf")
        self._stopped = False

    def __call__(self) -> bool:
        """True once the deadline passed or the marker exists (asked at most once per interval)."""
        if self._stopped:
            return True
        if self._deadline is not None and time.time() >= self._deadline:
            self._stopped = True
            return True
        now = time.monotonic()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            self._stopped = bool(self._marker.exists())
        return self._stopped

    def check_now(self) -> bool:
        """Ask storage now, ignoring the cache (before writing an output)."""
        self._checked_at = float("-inf")
        return self()


def write_stop_marker(results: ContainerClient, job_id: str, reason: str) -> None:
    """Create (or refresh) the job's stop marker; idempotent."""
    results.get_blob_client(stop_marker_blob_name(job_id)).upload_blob(reason.encode(), overwrite=True)
