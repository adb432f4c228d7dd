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
    """The snapshot after one server-sent event, and whether the event was the terminal one.

    `status` and `progress` events carry `{id, status, phase, progress, updated_at}` and are merged into what
    the client knows; a terminal event (`completed`, `failed`, `cancelled`) carries the whole job resource.
    """
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        return snapshot, False
    if not isinstance(payload, dict):
        return snapshot, False
    if event in TERMINAL_EVENTS:
        if {"id", "kind", "status"} <= payload.keys():
            return JobSnapshot.from_json(payload), True
        return dataclasses.replace(snapshot, status=TERMINAL_EVENTS[event]), True
    if event not in ("status", "progress"):
        return snapshot, False
    changes: dict[str, Any] = {}
    if payload.get("status") in JobStatus.__members__:
        changes["status"] = JobStatus(payload["status"])
    nested = payload.get("progress")
    progress: dict[str, Any] = dict(nested) if isinstance(nested, dict) else {}
    if "phase" in payload:
        progress["phase"] = payload["phase"]
    if progress:
        changes["progress"] = Progress.from_json({**dataclasses.asdict(snapshot.progress), **progress})
    if isinstance(payload.get("updated_at"), str):
        changes["updated_at"] = payload["updated_at"]
    return dataclasses.replace(snapshot, **changes), False
