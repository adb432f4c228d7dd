"""The orchestration dispatcher: polls the control-queue partitions and runs one session per instance.

Messages for an instance are gathered into a session that runs its episodes one after another (as DTFx's
orchestration sessions do); a session's messages are deleted only after the checkpoint that consumed them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError

from devhost.durable.checkpoint import Checkpointer
from devhost.durable.episode import EpisodeRunner, sort_messages
from devhost.durable.history import Event, utcnow
from devhost.durable.leases import PartitionLeases, keep_leased
from devhost.durable.polling import stop_polls
from devhost.durable.store import QueuedMessage, TaskHubStore
from devhost.durable.timings import DurableTimings

log = logging.getLogger("devhost.durable")

MIN_POLL_INTERVAL = 0.05
MAX_COALESCE_SECONDS = 0.25
LEASE_RELEASE_SECONDS = 5.0
"""How long a stop tries to give its partition leases up (best effort: a lease not released expires)."""


@dataclass
class Session:
    """An instance's messages waiting for its next episode, and the task running its episodes."""

    pending: list[QueuedMessage] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class Dispatcher:
    """Control-queue polling, per-instance sessions and the concurrency limit on episodes."""

    def __init__(
        self,
        store: TaskHubStore,
        checkpoints: Checkpointer,
        episodes: EpisodeRunner,
        *,
        max_concurrent: int,
        batch_size: int,
        max_polling_interval: float,
        timings: DurableTimings,
    ) -> None:
        self.store = store
        # Seconds a received (or self-sent) control message stays hidden: after a crash, that long until
        # another host, or this one restarted, sees it again.
        self.visibility = timings.control_queue_visibility
        self.leases = PartitionLeases(store.blob_service, store.hub, len(store.control_queues), timings.partition_lease)
        self._stopping = asyncio.Event()
        self.checkpoints = checkpoints
        self.episodes = episodes
        self.batch_size = max(1, min(32, batch_size))
        self.max_polling_interval = max(MIN_POLL_INTERVAL, max_polling_interval)
        self.semaphore = asyncio.Semaphore(max(1, max_concurrent))
        self.sessions: dict[str, Session] = {}
        self.inflight: dict[str, QueuedMessage] = {}
        self.wake_events = [asyncio.Event() for _ in store.control_queues]
        self.next_timer: list[float] = [float("inf")] * len(store.control_queues)
        self.running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._lease_tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling every partition."""
        self.running = True
        partitions = range(len(self.store.control_queues))
        self._tasks = [asyncio.create_task(self._poll(i)) for i in partitions]
        if self.leases.duration:
            self._lease_tasks = [
                asyncio.create_task(keep_leased(self.leases, i, self._stopping, self.wake_events[i].set))
                for i in partitions
            ]

    async def stop(self, grace: float) -> None:
        """Stop taking messages, then let running episodes finish their checkpoint; within `grace` seconds and
        LEASE_RELEASE_SECONDS more, whatever storage does.

        Polls and lease renewals still waiting on storage are cancelled (devhost.durable.polling). A partition
        lease that cannot be released expires on its own.
        """
        deadline = time.monotonic() + grace
        self.running = False
        self._stopping.set()
        for wake in self.wake_events:
            wake.set()
        await stop_polls([*self._tasks, *self._lease_tasks], grace)
        running = [s.task for s in self.sessions.values() if s.task]
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        try:
            await asyncio.wait_for(self.leases.release_all(), LEASE_RELEASE_SECONDS)
        except TimeoutError:
            log.warning("partition leases not released in %.0f s: they expire on their own", LEASE_RELEASE_SECONDS)

    def self_lease(self, instance_id: str) -> int | None:
        """The lease to send an instance's message with, to process it here at once; None if another host
        owns (or may still own) its partition, which then receives the message from the queue."""
        if self.running and self.leases.owns(self.store.partition_of(instance_id)):
            return self.visibility
        return None

    async def enqueue(self, instance_id: str, execution_id: str | None, ev: Event) -> None:
        """Send an orchestration message and, holding its lease, process it here at once."""
        _, leased = await self.store.send_control(instance_id, execution_id, ev, lease=self.self_lease(instance_id))
        if leased is not None and self.running:
            self.dispatch([leased])

    def accept_completion(self, work_item: QueuedMessage, completion: Event) -> bool:
        """Take an activity's completion straight from the activity dispatcher.

        The work item itself stands for the completion until the episode that records it is checkpointed:
        only then is the work item deleted. A crash before that redelivers the work item and the activity
        runs again (at least once, as in Azure); a duplicate completion is recognised and dropped.
        """
        if self.self_lease(work_item.instance_id) is None:
            return False
        carrier = QueuedMessage(
            work_item.queue,
            work_item.message_id,
            work_item.pop_receipt,
            work_item.dequeue_count,
            work_item.instance_id,
            work_item.execution_id,
            completion,
        )
        self.dispatch([carrier])
        return True

    def _in_background(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake(self, partition: int, at: datetime | None = None) -> None:
        """Poll a partition now, or when a timer message sent to it becomes visible."""
        if at is None:
            self.wake_events[partition].set()
            return
        due = time.monotonic() + max(0.0, (at - utcnow()).total_seconds())
        if due < self.next_timer[partition]:
            self.next_timer[partition] = due
            self.wake_events[partition].set()

    # --- polling -------------------------------------------------------------------------------
    async def _poll(self, partition: int) -> None:
        queue = self.store.control_queues[partition]
        interval = MIN_POLL_INTERVAL
        while self.running:
            if not self.leases.owns(partition):
                wake = self.wake_events[partition]
                try:  # not ours (yet): the lease task wakes us once it has taken the partition
                    await asyncio.wait_for(wake.wait(), 1.0)
                except TimeoutError:
                    pass
                wake.clear()
                continue
            try:
                messages = await self.store.receive(queue, self.batch_size, self.visibility)
            except AzureError as exc:
                log.warning("control queue %s: %s", queue.queue_name, exc)
                await asyncio.sleep(1.0)
                continue
            if messages:
                self.dispatch(messages)
                interval = MIN_POLL_INTERVAL
                if len(messages) == self.batch_size:
                    continue
            else:
                interval = min(interval * 2, self.max_polling_interval)
            timeout = interval
            if self.next_timer[partition] != float("inf"):
                until_timer = self.next_timer[partition] - time.monotonic()
                if until_timer <= 0:
                    self.next_timer[partition] = float("inf")
                    timeout = 0.0
                else:
                    timeout = min(timeout, until_timer + 0.02)
            wake = self.wake_events[partition]
            if timeout > 0:
                try:
                    await asyncio.wait_for(wake.wait(), timeout)
                except TimeoutError:
                    pass
            wake.clear()

    def dispatch(self, messages: list[QueuedMessage]) -> None:
        """Add messages to their instances' sessions, starting a session where none runs."""
        for message in messages:
            known = self.inflight.get(message.message_id)
            if known is not None:
                # Redelivered while we still hold it (a slow episode): keep the newest receipt only.
                known.pop_receipt = message.pop_receipt
                continue
            self.inflight[message.message_id] = message
            session = self.sessions.setdefault(message.instance_id, Session())
            session.pending.append(message)
            if session.task is None:
                session.task = asyncio.create_task(self._run_session(message.instance_id))

    async def _run_session(self, instance_id: str) -> None:
        session = self.sessions[instance_id]
        try:
            while session.pending:
                await self._coalesce(instance_id, session)
                batch, session.pending = session.pending, []
                async with self.semaphore:
                    try:
                        await self._process(instance_id, batch)
                    except Exception:
                        log.exception("orchestration %s: episode failed; its messages will be redelivered", instance_id)
                        self.checkpoints.forget(instance_id)
                        for message in batch:
                            await _quietly(self.store.abandon(message, 2))
                for message in batch:
                    self.inflight.pop(message.message_id, None)
        finally:
            self.sessions.pop(instance_id, None)

    async def _coalesce(self, instance_id: str, session: Session) -> None:
        """With many tasks outstanding, gather completions for about as long as a replay costs.

        Every episode replays the whole history; a fan-out of a thousand tasks would otherwise replay
        it once per handful of completions. A sequence (one task outstanding) never waits.
        """
        state = self.checkpoints.cache.get(instance_id)
        cost = self.checkpoints.episode_seconds.get(instance_id, 0.0)
        if state is None or cost < 0.02:
            return
        outstanding = len(state.scheduled_ids() - state.completed_ids())
        if outstanding > len(session.pending) * 2:
            await asyncio.sleep(min(cost, MAX_COALESCE_SECONDS))

    async def _process(self, instance_id: str, messages: list[QueuedMessage]) -> None:
        """One episode for a batch of messages; consumed ones are deleted after its checkpoint."""
        batch = sort_messages(await self.checkpoints.load(instance_id), messages)
        await self.episodes.run(batch)
        if batch.consumed:
            # Off the critical path: a message redelivered before its delete lands is a known duplicate. A delete
            # that fails (its lease ran out during a storage stall: PopReceiptMismatch) leaves the message to its
            # next receiver, as DTFx does; nothing awaits these, so each failure is caught here.
            self._in_background(asyncio.gather(*(_quietly(self.store.delete(m)) for m in batch.consumed)))
        for message in batch.deferred:
            await _quietly(self.store.abandon(message, min(2**message.dequeue_count, 30)))


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except AzureError as exc:
        log.debug("ignored storage error: %s", exc)
