"""Checkpoints: an instance's state, and how an episode's outcome is made durable.

Order, as DurableTask.AzureStorage does it: the outgoing messages first, then the new history rows, then
the instance row; a final status only once the history that proves it is stored. The parent of a
sub-orchestration hears of its end after that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from devhost.durable.history import Event, EventType, OrchestrationStatus, event, parse_time, type_of, utcnow
from devhost.durable.replay import Outgoing
from devhost.durable.store import QueuedMessage, TaskHubStore

log = logging.getLogger("devhost.durable")

FINISHED = {"Completed", "Failed", "Terminated", "Canceled"}
ACTIVE = {"Running", "Pending", "ContinuedAsNew", "Suspended"}
CACHE_LIMIT = 2000  # instances whose state and replay cost are kept in memory between episodes


@dataclass
class InstanceState:
    """What devhost knows of one instance between episodes: its current execution's history and row."""

    instance_id: str
    execution_id: str | None = None
    name: str | None = None
    history: list[Event] = field(default_factory=list)
    persisted: int = 0
    status: str = "Pending"
    created: datetime | None = None
    custom_status: str | None = None
    generation: int = 0  # the Instances row's: a start that restarts an instance counts one more

    @property
    def started(self) -> Event | None:
        """The ExecutionStarted event of this execution, if the history has it."""
        for ev in self.history:
            if type_of(ev) == EventType.ExecutionStarted:
                return ev
        return None

    def scheduled_ids(self) -> set[int]:
        """Ids of scheduled activities and sub-orchestrations."""
        kinds = (EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated)
        return {int(e["EventId"]) for e in self.history if type_of(e) in kinds}

    def timer_ids(self) -> set[int]:
        """Ids of created timers."""
        return {int(e["EventId"]) for e in self.history if type_of(e) == EventType.TimerCreated}

    def completed_ids(self) -> set[int]:
        """Ids of activities and sub-orchestrations that completed or failed."""
        kinds = (
            EventType.TaskCompleted,
            EventType.TaskFailed,
            EventType.SubOrchestrationInstanceCompleted,
            EventType.SubOrchestrationInstanceFailed,
        )
        return {int(e["TaskScheduledId"]) for e in self.history if type_of(e) in kinds}

    def fired_ids(self) -> set[int]:
        """Ids of timers that fired."""
        return {int(e["TimerId"]) for e in self.history if type_of(e) == EventType.TimerFired}


class ActivitySink(Protocol):
    """The activity dispatcher, as the checkpoint sees it: slots for work items sent with a lease."""

    def reserve(self) -> bool:
        """Promise a slot to a work item about to be sent with a lease."""
        ...

    def deliver(self, message: QueuedMessage | None) -> None:
        """Hand over the leased work item (None: the send failed or the host is stopping)."""
        ...

    def wake(self) -> None:
        """New work items are in the queue."""
        ...


class Router(Protocol):
    """Where a checkpoint sends what it produced: orchestration messages, timers and child starts."""

    @property
    def running(self) -> bool:
        """False once the host stops taking work."""
        ...

    async def enqueue(self, instance_id: str, execution_id: str | None, ev: Event) -> None:
        """Send an orchestration message (and process it here at once)."""
        ...

    def wake(self, partition: int, at: datetime | None = None) -> None:
        """Poll a control-queue partition now, or when a timer message becomes visible."""
        ...

    async def start_instance(
        self,
        name: str,
        instance_id: str,
        input_text: str,
        parent: dict[str, Any] | None = None,
        allow_running: bool = False,
    ) -> str:
        """Start an orchestration (a sub-orchestration when parent is given)."""
        ...


def episode_time(state: InstanceState) -> datetime:
    """Episode time never goes backwards, even if the clock does."""
    now = utcnow()
    if state.history:
        last = parse_time(str(state.history[-1]["Timestamp"]))
        if last >= now:
            return last + timedelta(microseconds=1)
    return now


class Checkpointer:
    """Loads instance state (cached between episodes) and writes episodes' outcomes in the DTFx order."""

    def __init__(self, store: TaskHubStore, router: Router, *, work_item_lease: int, verbose: bool = False) -> None:
        self.store = store
        self.work_item_lease = work_item_lease  # seconds a work item sent for in-process execution stays hidden
        self.router = router
        self.verbose = verbose
        self.cache: dict[str, InstanceState] = {}
        self.episode_seconds: dict[str, float] = {}  # last replay cost per instance, for coalescing
        self.activity_sink: ActivitySink | None = None

    # --- state -----------------------------------------------------------------------------------
    async def load(self, instance_id: str) -> InstanceState:
        """The instance's state: from the cache, else from its history and row."""
        cached = self.cache.get(instance_id)
        if cached is not None:
            return cached
        history = await self.store.read_history(instance_id)
        row = await self.store.read_instance(instance_id)
        state = InstanceState(instance_id, history.execution_id, None, history.events, len(history.events))
        if row is not None:
            state.name = row.get("Name")
            state.status = str(row.get("RuntimeStatus", "Pending"))
            state.created = row.get("CreatedTime")
            state.custom_status = row.get("CustomStatus")
            state.generation = int(row.get("Generation") or 0)
            if row.get("ExecutionId") != history.execution_id and state.status in ("Pending", "ContinuedAsNew"):
                # A new execution was started but has no history yet.
                state.history, state.persisted = [], 0
                state.execution_id = row.get("ExecutionId")
            elif not history.events:
                state.execution_id = row.get("ExecutionId")  # the execution its start message must name
        await self._finish_interrupted(state)
        return state

    async def _finish_interrupted(self, state: InstanceState) -> None:
        """Complete a final checkpoint a crash cut short between the history and the instance row.

        The history already ends the execution, so the messages that led there are redelivered as known
        duplicates and no episode would ever write the row: write it (and the parent's notice) now.
        """
        if state.status in FINISHED or state.status == "ContinuedAsNew":
            return
        completed = next((e for e in state.history if type_of(e) == EventType.ExecutionCompleted), None)
        if completed is None:
            return
        status = OrchestrationStatus(int(completed["OrchestrationStatus"]))
        result = completed.get("Result")
        state.status = status.name
        now = utcnow()
        fields = {"RuntimeStatus": status.name, "Output": result if result is not None else "null"}
        await self.store.write_instance(state.instance_id, {**fields, "CompletedTime": now, "LastUpdatedTime": now})
        await self._notify_parent(state, status, result)
        log.warning("orchestration %s: finished the %s checkpoint a crash interrupted", state.instance_id, status.name)

    def seed(self, state: InstanceState) -> None:
        """Cache the state of an instance this host has just started, as `load` would read it back."""
        self._remember(state)

    def forget(self, instance_id: str) -> None:
        """Drop the cached state: the next episode reads it from storage."""
        self.cache.pop(instance_id, None)

    def _remember(self, state: InstanceState) -> None:
        if state.status in FINISHED:
            self.cache.pop(state.instance_id, None)
            return
        if len(self.cache) > CACHE_LIMIT:
            self.cache.pop(next(iter(self.cache)))
        self.cache[state.instance_id] = state

    # --- outcomes ----------------------------------------------------------------------------------
    async def running(self, state: InstanceState, outgoing: list[Outgoing], started_at: float) -> None:
        """End an episode that leaves the instance running."""
        state.history.append(event(EventType.OrchestratorCompleted, episode_time(state)))
        state.status = "Running"
        await self.write(state, outgoing)
        self.log_episode(state, "Running", started_at, len(outgoing))

    async def finish(
        self,
        state: InstanceState,
        status: OrchestrationStatus,
        result: str | None,
        outgoing: list[Outgoing],
        next_id: int,
        started_at: float,
    ) -> None:
        """Record ExecutionCompleted with a final status, then tell the parent, if any."""
        now = episode_time(state)
        state.history.append(
            event(
                EventType.ExecutionCompleted,
                now,
                next_id,
                OrchestrationStatus=int(status),
                Result=result,
                FailureDetails=None,
            )
        )
        state.history.append(event(EventType.OrchestratorCompleted, now))
        state.status = status.name
        await self.write(state, outgoing, output=result, completed=True)
        await self._notify_parent(state, status, result)
        self.log_episode(state, status.name, started_at, len(outgoing))

    async def continue_as_new(
        self, state: InstanceState, new_input: str | None, outgoing: list[Outgoing], next_id: int, started_at: float
    ) -> None:
        """Close this execution as ContinuedAsNew and start the next one with the new input."""
        now = episode_time(state)
        input_text = json.dumps(new_input if new_input is not None else None)
        state.history.append(
            event(
                EventType.ContinueAsNew,
                now,
                next_id,
                OrchestrationStatus=int(OrchestrationStatus.ContinuedAsNew),
                Result=input_text,
                FailureDetails=None,
            )
        )
        state.history.append(event(EventType.OrchestratorCompleted, now))
        state.status = "ContinuedAsNew"
        started = state.started or {}
        await self.write(state, outgoing)
        execution_id = uuid.uuid4().hex
        start = event(
            EventType.ExecutionStarted,
            now,
            OrchestrationInstance={"InstanceId": state.instance_id, "ExecutionId": execution_id},
            ParentInstance=started.get("ParentInstance"),
            Name=state.name,
            Version="",
            Input=input_text,
            Tags=None,
        )
        await self.store.write_instance(
            state.instance_id, {"ExecutionId": execution_id, "Input": input_text, "RuntimeStatus": "ContinuedAsNew"}
        )
        self.forget(state.instance_id)
        await self.router.enqueue(state.instance_id, execution_id, start)
        self.log_episode(state, "ContinuedAsNew", started_at, len(outgoing))

    async def simple_episode(self, state: InstanceState, events: list[Event], status: str) -> None:
        """An episode without replay (suspend): the events between OrchestratorStarted and Completed."""
        now = episode_time(state)
        state.history += [
            event(EventType.OrchestratorStarted, now),
            *events,
            event(EventType.OrchestratorCompleted, now),
        ]
        state.status = status
        await self.write(state, [])

    # --- writes ------------------------------------------------------------------------------------
    async def write(
        self, state: InstanceState, outgoing: list[Outgoing], output: str | None = None, completed: bool = False
    ) -> None:
        """Messages first, then history, then the instance row (the DurableTask.AzureStorage order)."""
        queued = await asyncio.gather(*(self._send(state, item) for item in outgoing))
        if any(queued) and self.activity_sink is not None:
            self.activity_sink.wake()  # work items without a slot wait in the queue: poll for them
        assert state.execution_id is not None
        history = self.store.append_history(
            state.instance_id, state.execution_id, state.persisted, state.history[state.persisted :], len(state.history)
        )
        now = utcnow()
        started = state.started or {}
        fields: dict[str, Any] = {
            "Name": state.name,
            "Version": "",
            "RuntimeStatus": state.status,
            "LastUpdatedTime": now,
            "ExecutionId": state.execution_id,
            "CustomStatus": state.custom_status or "null",
            "Input": started.get("Input"),
        }
        if completed:
            fields["CompletedTime"] = now
            fields["Output"] = output if output is not None else "null"
            # A final status is published only once the history that proves it is stored.
            await history
            await self.store.write_instance(state.instance_id, fields)
        else:
            await asyncio.gather(history, self.store.write_instance(state.instance_id, fields))
        state.persisted = len(state.history)
        self._remember(state)

    async def _send(self, state: InstanceState, item: Outgoing) -> bool:
        """Send one outgoing item; True for a work item left in the queue for the poller."""
        if item.kind == "activity":
            sink = self.activity_sink
            if sink is not None and sink.reserve():
                leased = None
                try:
                    leased = await self.store.send_workitem(
                        state.instance_id, state.execution_id, item.event, lease=self.work_item_lease
                    )
                finally:
                    sink.deliver(leased if self.router.running else None)
                # Leased but not run here (the host is stopping): it comes back when the lease lapses.
                return False
            await self.store.send_workitem(state.instance_id, state.execution_id, item.event)
            return True
        elif item.kind == "timer":
            assert item.fire_at is not None
            fired = event(
                EventType.TimerFired, item.fire_at, TimerId=item.event["EventId"], FireAt=item.event["FireAt"]
            )
            partition, _ = await self.store.send_control(state.instance_id, state.execution_id, fired, item.fire_at)
            self.router.wake(partition, item.fire_at)
        elif item.kind == "start_child":
            assert item.child_instance_id is not None
            await self.router.start_instance(
                str(item.child_name),
                item.child_instance_id,
                item.event.get("Input") or "null",
                parent={
                    "Name": state.name,
                    "Version": "",
                    "OrchestrationInstance": {"InstanceId": state.instance_id, "ExecutionId": state.execution_id},
                    "TaskScheduleId": item.event["EventId"],
                },
                allow_running=True,
            )
        return False

    async def _notify_parent(self, state: InstanceState, status: OrchestrationStatus, result: str | None) -> None:
        parent = (state.started or {}).get("ParentInstance")
        if not parent:
            return
        now = utcnow()
        task_id = int(parent["TaskScheduleId"])
        if status == OrchestrationStatus.Completed:
            notice = event(EventType.SubOrchestrationInstanceCompleted, now, TaskScheduledId=task_id, Result=result)
        else:
            notice = event(
                EventType.SubOrchestrationInstanceFailed,
                now,
                TaskScheduledId=task_id,
                Reason=result,
                Details=f"Message: {result}",
                FailureDetails=None,
            )
        target = parent["OrchestrationInstance"]
        await self.router.enqueue(target["InstanceId"], target.get("ExecutionId"), notice)

    def log_episode(self, state: InstanceState, outcome: str, started_at: float, scheduled: int) -> None:
        """Remember the replay's cost (for coalescing) and log finished instances (every episode if verbose)."""
        duration = (time.perf_counter() - started_at) * 1000
        if outcome in FINISHED:
            self.episode_seconds.pop(state.instance_id, None)
        else:
            if len(self.episode_seconds) > CACHE_LIMIT:
                self.episode_seconds.pop(next(iter(self.episode_seconds)))
            self.episode_seconds[state.instance_id] = duration / 1000
        if self.verbose or outcome in FINISHED or outcome == "ContinuedAsNew":
            log.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms, HistoryEvents=%d, NewTasks=%d)",
                state.name,
                outcome,
                state.instance_id,
                duration,
                len(state.history),
                scheduled,
            )
