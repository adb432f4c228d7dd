"""The orchestration engine: the dispatcher, episode, checkpoint and control parts wired together.

- `dispatcher`: control-queue polling, per-instance sessions, coalescing;
- `episode`: one replay episode (history -> SDK -> actions -> decisions and messages);
- `checkpoint`: instance state, history and row writes, sending messages, notifying a parent;
- `control`: the client operations (start, raise, terminate, suspend, resume, purge, history).
The host, the activity dispatcher and the management API talk to this facade only.
"""

from __future__ import annotations

from datetime import datetime

from devhost.durable.checkpoint import ACTIVE, FINISHED, ActivitySink, Checkpointer
from devhost.durable.control import (
    Control,
    InstanceExists,
    InstanceFinished,
    InstanceNotFound,
    UnknownOrchestrator,
)
from devhost.durable.dispatcher import Dispatcher
from devhost.durable.episode import EpisodeRunner, Invoker
from devhost.durable.history import Event
from devhost.durable.store import QueuedMessage, TaskHubStore
from devhost.durable.timings import DurableTimings

__all__ = [
    "ACTIVE",
    "FINISHED",
    "InstanceExists",
    "InstanceFinished",
    "InstanceNotFound",
    "OrchestrationEngine",
    "UnknownOrchestrator",
]


class OrchestrationEngine(Control):
    """Orchestrations of one task hub: the client operations (inherited from Control) and the dispatcher."""

    def __init__(
        self,
        store: TaskHubStore,
        *,
        orchestrators: dict[str, Invoker],
        activity_names: set[str],
        max_concurrent: int,
        batch_size: int,
        max_polling_interval: float,
        verbose: bool = False,
        timings: DurableTimings | None = None,
    ) -> None:
        self.timings = timings or DurableTimings.load()
        checkpoints = Checkpointer(store, self, work_item_lease=self.timings.work_item_visibility, verbose=verbose)
        episodes = EpisodeRunner(
            checkpoints, orchestrators=orchestrators, activity_names=activity_names, timings=self.timings
        )
        dispatcher = Dispatcher(
            store,
            checkpoints,
            episodes,
            max_concurrent=max_concurrent,
            batch_size=batch_size,
            max_polling_interval=max_polling_interval,
            timings=self.timings,
        )
        super().__init__(store, dispatcher, checkpoints, set(orchestrators))

    @property
    def running(self) -> bool:
        """False once the host stops taking work."""
        return self.dispatcher.running

    @property
    def activity_sink(self) -> ActivitySink | None:
        """The activity dispatcher that takes work items sent with a lease."""
        return self.checkpoints.activity_sink

    @activity_sink.setter
    def activity_sink(self, sink: ActivitySink | None) -> None:
        self.checkpoints.activity_sink = sink

    def start(self) -> None:
        """Start polling the control queues."""
        self.dispatcher.start()

    async def stop(self, grace: float) -> None:
        """Stop taking messages, then let running episodes finish their checkpoint."""
        await self.dispatcher.stop(grace)

    async def enqueue(self, instance_id: str, execution_id: str | None, ev: Event) -> None:
        """Send an orchestration message and process it here at once."""
        await self.dispatcher.enqueue(instance_id, execution_id, ev)

    def accept_completion(self, work_item: QueuedMessage, completion: Event) -> bool:
        """Hand an activity's completion to its orchestration in-process (see Dispatcher)."""
        return self.dispatcher.accept_completion(work_item, completion)

    def wake(self, partition: int, at: datetime | None = None) -> None:
        """Poll a partition now, or when a timer message becomes visible."""
        self.dispatcher.wake(partition, at)
