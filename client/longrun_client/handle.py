"""What the sync and async job handles share, without I/O: the snapshot's fields, a wait's clock, and reading
progress events."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx_sse import ServerSentEvent

from longrun_client import wire
from longrun_client._core import ClientSettings
from longrun_client.errors import WaitTimeout
from longrun_client.models import JobError, JobSnapshot, JobStatus, Progress

TERMINAL_EVENTS = {"completed": JobStatus.COMPLETED, "failed": JobStatus.FAILED, "cancelled": JobStatus.CANCELLED}
EVENTS_SUFFIX = "/events"
EVENTS_READ_TIMEOUT_SECONDS = 60.0
"""Longer than the server's heartbeat (15 s by default): a silent stream this long is dead, reconnect."""
MAX_EMPTY_STREAMS = 3
"""Streams in a row that end without a new event before the client polls instead."""
POLL_SECONDS = 1.0
"""How long to wait between polls when the server gives no Retry-After."""
CONNECT_TIMEOUT_SECONDS = 10.0

ProgressCallback = Callable[[JobSnapshot], None]


class JobFields:
    """A job's last known state; subclasses add the calls that refresh and act on it."""

    _client: ClientSettings[Any]
    _snapshot: JobSnapshot
    _location: str
    _retry_after: float | None

    def __init__(self, client: ClientSettings[Any], answer: wire.Accepted) -> None:
        self._client = client
        self._location = answer.location
        self._answered(answer)

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

    def _answered(self, answer: wire.Accepted) -> None:
        """Take a job answer's resource and its Retry-After (the Location stays the one first given)."""
        self._snapshot = JobSnapshot.from_json(answer.body)
        self._retry_after = answer.retry_after

    def _result_url(self, format: str | None) -> str:  # noqa: A002 - the API's parameter name
        url = self._snapshot.links.get("result") or self._location.rstrip("/") + "/result"
        return f"{url}?{httpx.QueryParams({'format': format})}" if format else url

    def _stream_request(self, clock: WaitClock, stream: EventResume) -> dict[str, Any]:
        """The next event stream's GET: resuming after the last event seen, never outlasting the wait."""
        return {
            "method": "GET",
            "url": events_url(self._location),
            "headers": stream.headers(),
            "timeout": clock.stream_timeout(self._snapshot),
        }

    def _stream_opened(self, response: httpx.Response) -> bool:
        """Whether the events URL answered with a stream to follow (else the wait polls)."""
        if response.status_code == 404:
            self._client.events = False  # a server without streams: this client polls from now on
        return response.status_code == 200 and "text/event-stream" in response.headers.get("content-type", "")

    def _on_event(self, clock: WaitClock, stream: EventResume, event: ServerSentEvent) -> bool:
        """Take one server-sent event into the snapshot; True when it was the terminal one."""
        stream.seen(event.id)
        before = self._snapshot
        self._snapshot, terminal = apply_event(self._snapshot, event.event, event.data)
        clock.changed(before, self._snapshot)
        return terminal


class WaitClock:
    """One wait() call: its deadline, the WaitTimeout it raises, and each new state told to `on_progress`."""

    def __init__(self, timeout: float | None, on_progress: ProgressCallback | None, snapshot: JobSnapshot) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._on_progress = on_progress
        if on_progress is not None:
            on_progress(snapshot)  # the state the wait starts from

    def changed(self, before: JobSnapshot, after: JobSnapshot) -> None:
        """Tell `on_progress` about a state that differs from the one before."""
        if self._on_progress is not None and after != before:
            self._on_progress(after)

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def timed_out(self, snapshot: JobSnapshot) -> WaitTimeout:
        """The error a wait past its deadline raises (the job runs on)."""
        return WaitTimeout(snapshot, self.timeout or 0.0)

    def raise_if_expired(self, snapshot: JobSnapshot) -> None:
        """After a read timed out: WaitTimeout if the wait's own deadline has passed (else the caller reconnects)."""
        if self.expired():
            raise self.timed_out(snapshot) from None

    def _remaining(self, snapshot: JobSnapshot) -> float | None:
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out(snapshot)
        return remaining

    def poll_delay(self, snapshot: JobSnapshot, retry_after: float | None) -> float:
        """Seconds to sleep before the next poll: the server's Retry-After, cut to the time left."""
        delay = retry_after if retry_after is not None else POLL_SECONDS
        remaining = self._remaining(snapshot)
        return delay if remaining is None else min(delay, remaining)

    def stream_timeout(self, snapshot: JobSnapshot) -> httpx.Timeout:
        """The timeouts of the next event stream: a read never outlasts the wait, nor a silent dead stream."""
        remaining = self._remaining(snapshot)
        read = EVENTS_READ_TIMEOUT_SECONDS if remaining is None else min(remaining, EVENTS_READ_TIMEOUT_SECONDS)
        return httpx.Timeout(CONNECT_TIMEOUT_SECONDS, read=read)


class EventResume:
    """Where a job's event stream resumes (Last-Event-ID), and when streams that keep ending empty mean: poll.

    Servers end streams before the platform's response limit; a stream that ends without a terminal event is
    opened again after the last event seen, unless MAX_EMPTY_STREAMS in a row brought nothing new.
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self._resumed_from: str | None = None
        self._empty_streams = 0

    def headers(self) -> dict[str, str]:
        """The headers of the next stream's request."""
        self._resumed_from = self.last_event_id
        return {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}

    def seen(self, event_id: str) -> None:
        """Note an event's id (events without one leave the resume point as it was)."""
        if event_id:
            self.last_event_id = event_id

    def worth_resuming(self) -> bool:
        """After a stream ended without a terminal event: whether to open another (else poll)."""
        self._empty_streams = 0 if self.last_event_id != self._resumed_from else self._empty_streams + 1
        return self._empty_streams < MAX_EMPTY_STREAMS


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
