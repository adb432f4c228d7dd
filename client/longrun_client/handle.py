"""What the sync and async job handles share: the snapshot's fields, and reading progress events."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from longrun_client.models import JobError, JobSnapshot, JobStatus, Progress

TERMINAL_EVENTS = {"completed": JobStatus.COMPLETED, "failed": JobStatus.FAILED, "cancelled": JobStatus.CANCELLED}
EVENTS_SUFFIX = "/events"
EVENTS_READ_TIMEOUT_SECONDS = 60.0
"""Longer than the server's heartbeat (15 s by default): a silent stream this long is dead, reconnect."""
MAX_EMPTY_STREAMS = 3
"""Streams in a row that end without a new event before the client polls instead."""


class JobFields:
    """A job's last known state; subclasses add the calls that refresh and act on it."""

    _snapshot: JobSnapshot
    _location: str

    @property
    def snapshot(self) -> JobSnapshot:
        """The resource as the API last answered it."""
        return self._snapshot

    @property
    def id(self) -> str:
        """The job id (32 hex digits)."""
        return self._snapshot.id

    @property
    def kind(self) -> str:
        """The job's kind."""
        return self._snapshot.kind

    @property
    def status(self) -> JobStatus:
        """PENDING, RUNNING, COMPLETED, FAILED or CANCELLED, as last seen."""
        return self._snapshot.status

    @property
    def progress(self) -> Progress:
        """Chunks done of the total, as last seen."""
        return self._snapshot.progress

    @property
    def phase(self) -> str:
        """What the job is doing (the server's phase where it reports one)."""
        return self._snapshot.phase

    @property
    def summary(self) -> dict[str, Any] | None:
        """The kind's small result summary once COMPLETED (the full document: `result()`)."""
        return self._snapshot.summary

    @property
    def error(self) -> JobError | None:
        """Why the job FAILED."""
        return self._snapshot.error

    @property
    def location(self) -> str:
        """The URL this job is polled at (the API's Location, followed as given)."""
        return self._location

    @property
    def finished(self) -> bool:
        """Whether the job has ended."""
        return self._snapshot.status.finished

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status.value} {self.progress.completed}/{self.progress.total}>"


ProgressCallback = Callable[[JobSnapshot], None]


def events_url(location: str) -> str:
    """The job's SSE stream (GET /api/jobs/{id}/events) next to its Location."""
    base, _, query = location.partition("?")
    return base.rstrip("/") + EVENTS_SUFFIX + (f"?{query}" if query else "")


def apply_event(snapshot: JobSnapshot, event: str, data: str) -> tuple[JobSnapshot, bool]:
    """The snapshot after one server-sent event, and whether the event was the terminal one."""
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        return snapshot, False
    if not isinstance(payload, dict):
        return snapshot, False
    job = payload.get("job")
    resource: dict[str, Any] = job if isinstance(job, dict) else payload
    if event in TERMINAL_EVENTS:
        if "id" in resource and "status" in resource:
            return JobSnapshot.from_json(resource), True
        return dataclasses.replace(snapshot, status=TERMINAL_EVENTS[event]), True
    if "id" in resource and "status" in resource and "progress" in resource:
        return JobSnapshot.from_json(resource), False
    if event == "progress":
        nested = resource.get("progress")
        progress: dict[str, Any] = nested if isinstance(nested, dict) else resource
        merged = {**dataclasses.asdict(snapshot.progress), **progress}
        return dataclasses.replace(snapshot, progress=Progress.from_json(merged)), False
    if event == "status" and resource.get("status") in JobStatus.__members__:
        return dataclasses.replace(snapshot, status=JobStatus(resource["status"])), False
    return snapshot, False
