"""A job's observed state as an ordered feed of events (for SSE) and as a wait for change (for long-poll).

Nothing is kept in the process: the event id of a state is derived from the job's durable state alone,
from the sequence number the orchestrator writes into its custom status on every visible change
(orchestrators/job.py `progress`). So any app instance computes the same id for the same state, a
client that reconnects to another instance with `Last-Event-ID` resumes exactly after what it saw, and
the long-poll ETag is the same number.

The version of a state, and so the id of the event that reports it:

    PENDING                       0
    RUNNING with sequence s       s + 1
    finished                      FINISHED_VERSION (COMPLETED, FAILED, CANCELLED: the last event of a job)

It grows with every state a client can observe (the sequence only grows, and a job goes PENDING →
RUNNING → finished). A finished job has one version whatever it is read from: its Durable status, or
its row alone once that holds the outcome (jobs.query reads a finished job from the row and the row
knows no sequence). A watcher polls (one status read per interval, no history reads) and so sees the
latest state at each read; states that came and went between two reads are summed up by the next one
(progress counts only grow), which is what "no state change lost" can mean for a polled source.
Watchers of the same job in one process share a read younger than half an interval (SharedReads),
so a job watched by many clients costs about two reads per interval per process, not one per watcher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, cast

from azure.data.tables.aio import TableClient

from jobs import durable
from jobs.errors import NotFound
from jobs.query import JobView, load_job, state_from_record
from shared.contracts import FINISHED_STATUSES, JobStatus
from shared.settings import Settings
from shared.status import JobState, job_state
from storage import jobs as job_store

EventName = Literal["status", "progress", "completed", "failed", "cancelled"]
TERMINAL_EVENTS: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
FINISHED_VERSION = 1_000_000_000
"""The version of every finished job: above any sequence a job reaches (one per visible progress change)."""
MAX_WAIT_SECONDS = 60
"""Longest long-poll wait: below every gateway timeout on the way (docs/timeouts.md)."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
Refresh = Callable[[JobView], Awaitable[JobView]]


def state_version(state: JobState) -> int:
    """The version of a job state: the id of the event that reports it (see the module docstring)."""
    if state.status is JobStatus.PENDING:
        return 0
    if state.status is JobStatus.RUNNING:
        return state.seq + 1
    return FINISHED_VERSION


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's feed: its name, its id (the state's version) and the job as it is then."""

    name: EventName
    id: int
    view: JobView

    @property
    def terminal(self) -> bool:
        """The job's last event: the stream ends after it."""
        return self.name in TERMINAL_EVENTS


@dataclass(frozen=True)
class Heartbeat:
    """Nothing changed for a heartbeat interval: a comment keeps gateways from cutting the stream."""


@dataclass(frozen=True)
class FeedTiming:
    """How often a feed reads the job's state, when it sends heartbeats, and when it ends on its own."""

    poll_seconds: float
    heartbeat_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedTiming:
        """SSE_POLL_SECONDS, SSE_HEARTBEAT_SECONDS, SSE_MAX_STREAM_SECONDS."""
        return cls(settings.sse_poll_seconds, settings.sse_heartbeat_seconds, settings.sse_max_stream_seconds)


def next_event(view: JobView, last_seen: int | None) -> JobEvent | None:
    """The event that tells a client who last saw event `last_seen` (None: nothing yet) about `view`.

    None when the client has seen this state already. A client that saw nothing, or only PENDING, gets a
    `status` event; one that saw the job running gets `progress`; a finished job gives its terminal event.
    """
    version = state_version(view.state)
    if last_seen is not None and version <= last_seen:
        return None
    status = view.state.status
    name: EventName
    if status in FINISHED_STATUSES:
        name = "completed" if status is JobStatus.COMPLETED else "failed" if status is JobStatus.FAILED else "cancelled"
    elif last_seen is None or last_seen == 0 or status is JobStatus.PENDING:
        name = "status"
    else:
        name = "progress"
    return JobEvent(name, version, view)


def nothing_left(view: JobView, last_seen: int | None) -> bool:
    """The client has seen the job's terminal event already: there is nothing to stream (HTTP 204)."""
    return view.state.status in FINISHED_STATUSES and last_seen is not None and state_version(view.state) <= last_seen


async def job_feed(
    view: JobView,
    last_seen: int | None,
    timing: FeedTiming,
    refresh: Refresh,
    finish: Refresh,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[JobEvent | Heartbeat]:
    """The events of a job after `last_seen`, heartbeats while it is quiet, until its terminal event or max_seconds.

    `view` is the job as just read; `refresh` reads its state again (one status read), `finish` reads the
    finished job's resource as GET /api/jobs/{id} gives it (row caught up).
    """
    started = clock()
    end_at = started + timing.max_seconds
    quiet_since = started
    next_poll = started + timing.poll_seconds
    while True:
        event = next_event(view, last_seen)
        if event is None and nothing_left(view, last_seen):
            return  # ended, and the client holds its terminal event (its Last-Event-ID was the end's already)
        if event is not None:
            if event.terminal:
                event = replace(event, view=await finish(view))
            yield event
            if event.terminal:
                return
            last_seen, quiet_since = event.id, clock()
        now = clock()
        if now >= end_at:
            return  # before any gateway cuts it; the client resumes with Last-Event-ID
        if now - quiet_since >= timing.heartbeat_seconds:
            yield Heartbeat()
            quiet_since = now
        wake = min(next_poll, quiet_since + timing.heartbeat_seconds, end_at)
        if wake > now:
            await sleep(wake - now)
        if clock() >= next_poll:
            view = await refresh(view)
            next_poll = clock() + timing.poll_seconds


async def wait_for_change(
    view: JobView,
    seen: Collection[int],
    wait_seconds: float,
    poll_seconds: float,
    refresh: Refresh,
    finish: Refresh,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> JobView:
    """Long-poll: the job once its version is not one of `seen`, or as it is after `wait_seconds`.

    A finished job answers at once (it will not change again); so does a client that saw nothing.
    """
    deadline = clock() + wait_seconds
    refreshed = False
    while state_version(view.state) in seen and view.state.status not in FINISHED_STATUSES:
        left = deadline - clock()
        if left <= 0:
            break
        await sleep(min(poll_seconds, left))
        view = await refresh(view)
        refreshed = True
    # A refresh read the status only: answer with the job as GET reads it (row and status, row caught up).
    return await finish(view) if refreshed else view


# --- the reads, against Durable and the job store ----------------------------------------------------------


T = TypeVar("T")


class SharedReads:
    """Reads shared by the watchers of one job in this process: many streams, one read per interval.

    A read younger than `max_age`, or one still under way, is reused; nothing else is kept, and nothing a
    client sees depends on it (event ids come from the durable state), so a process that never shared a
    read answers the same.
    """

    PRUNE_ABOVE = 1024

    def __init__(self, clock: Clock = time.monotonic) -> None:
        """An empty cache on `clock`."""
        self.clock = clock
        self.reads: dict[tuple[str, str], tuple[float, asyncio.Task[Any]]] = {}
        self.calls = 0  # reads made

    async def read(self, key: tuple[str, str], max_age: float, read: Callable[[], Awaitable[T]]) -> T:
        """What `read()` answers, as read at most `max_age` seconds ago (or being read), or read now."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        cached = self.reads.get(key)
        if cached is not None and cached[1].get_loop() is loop:
            at, pending = cached
            if not pending.done() or (now - at < max_age and not pending.cancelled() and pending.exception() is None):
                return cast(T, await asyncio.shield(pending))
        self.calls += 1
        # A task of its own: a watcher that goes away (cancelled) does not cancel the read the others await.
        task: asyncio.Task[T] = loop.create_task(_awaited(read))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # never "never retrieved"
        self.reads[key] = (now, task)
        if len(self.reads) > self.PRUNE_ABOVE:
            for old in [old for old, (at, done) in self.reads.items() if done.done() and now - at >= max_age]:
                del self.reads[old]
        return await asyncio.shield(task)

    async def status(self, client: Any, job_id: str, max_age: float) -> durable.Instance | None:
        """The job's Durable status, shared."""
        return await self.read(("status", job_id), max_age, lambda: durable.status(client, job_id))


async def _awaited(read: Callable[[], Awaitable[T]]) -> T:
    return await read()


SHARED_READS = SharedReads()
"""This process's shared reads (an app instance runs one or more worker processes)."""


def status_refresh(client: Any, jobs: TableClient, share_for: float = 0.0) -> Refresh:
    """A refresh that costs one Durable status read, or none when another watcher of the job in this
    process read it less than `share_for` seconds ago (the job's row is read only while it has no instance)."""

    async def refresh(view: JobView) -> JobView:
        job_id = view.record["job_id"]
        if share_for > 0:
            instance = await SHARED_READS.status(client, job_id, share_for)
        else:
            instance = await durable.status(client, job_id)
        if instance is None:
            record = await job_store.get_job(jobs, job_id)
            if record is None:
                raise NotFound("no such job")
            return JobView(record, state_from_record(record), record["updated_at"])
        state = job_state(instance.runtime_status, instance.output, instance.custom_status)
        updated = max(instance.last_updated or view.record["updated_at"], view.record["updated_at"])
        return JobView(view.record, state, updated)

    return refresh


async def watched_job(client: Any, jobs: TableClient, job_id: str, share_for: float) -> JobView:
    """The job as GET /api/jobs/{id} reads it, for a new watcher: shared with the other watchers of the job
    in this process that connected less than `share_for` seconds ago (NotFound for an unknown job)."""
    return await SHARED_READS.read(("job", job_id), share_for, lambda: load_job(client, jobs, job_id))


def resource_refresh(client: Any, jobs: TableClient, share_for: float = 0.0) -> Refresh:
    """A refresh that reads the job as GET /api/jobs/{id} does (row and status; a lagging row caught up),
    shared by the watchers of the job in this process for `share_for` seconds (all see its end at once)."""

    async def refresh(view: JobView) -> JobView:
        job_id = view.record["job_id"]
        if share_for > 0:
            return await watched_job(client, jobs, job_id, share_for)
        return await load_job(client, jobs, job_id)

    return refresh
