"""The orchestration dispatcher: control-queue messages in, SDK replay, decisions and checkpoints out."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from devhost.durable.history import (
    MESSAGE_TYPES,
    Event,
    EventType,
    OrchestrationStatus,
    compact_json,
    event,
    parse_time,
    type_of,
    utcnow,
)
from devhost.durable.replay import ActionReplayer, Outgoing, ReplayError
from devhost.durable.store import QueuedMessage, TaskHubStore

log = logging.getLogger("devhost.durable")

FINISHED = {"Completed", "Failed", "Terminated", "Canceled"}
ACTIVE = {"Running", "Pending", "ContinuedAsNew", "Suspended"}
CUSTOM_STATUS_LIMIT = 16 * 1024  # bytes of UTF-16, as the extension checks
MESSAGE_VISIBILITY = 15  # seconds a received control message stays hidden; redelivered quickly after a crash
WORK_ITEM_LEASE = 15
OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"


# Completion events and the field naming the decision they complete.
_COMPLETION_KEYS = {
    EventType.TaskCompleted: "TaskScheduledId",
    EventType.TaskFailed: "TaskScheduledId",
    EventType.SubOrchestrationInstanceCompleted: "TaskScheduledId",
    EventType.SubOrchestrationInstanceFailed: "TaskScheduledId",
    EventType.TimerFired: "TimerId",
}


class InstanceNotFound(Exception):
    pass


class InstanceFinished(Exception):
    pass


class InstanceExists(Exception):
    pass


class UnknownOrchestrator(Exception):
    pass


@dataclass
class InstanceState:
    instance_id: str
    execution_id: str | None = None
    name: str | None = None
    history: list[Event] = field(default_factory=list)
    persisted: int = 0
    status: str = "Pending"
    created: datetime | None = None
    custom_status: str | None = None

    @property
    def started(self) -> Event | None:
        for ev in self.history:
            if type_of(ev) == EventType.ExecutionStarted:
                return ev
        return None

    def scheduled_ids(self) -> set[int]:
        kinds = (EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated)
        return {int(e["EventId"]) for e in self.history if type_of(e) in kinds}

    def timer_ids(self) -> set[int]:
        return {int(e["EventId"]) for e in self.history if type_of(e) == EventType.TimerCreated}

    def completed_ids(self) -> set[int]:
        kinds = (
            EventType.TaskCompleted,
            EventType.TaskFailed,
            EventType.SubOrchestrationInstanceCompleted,
            EventType.SubOrchestrationInstanceFailed,
        )
        return {int(e["TaskScheduledId"]) for e in self.history if type_of(e) in kinds}

    def fired_ids(self) -> set[int]:
        return {int(e["TimerId"]) for e in self.history if type_of(e) == EventType.TimerFired}


@dataclass
class Session:
    pending: list[QueuedMessage] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


Invoker = Callable[[str, str], Any]  # (orchestrator name, context JSON) -> awaitable of the SDK's answer


class ActivitySink(Protocol):
    def reserve(self) -> bool: ...
    def deliver(self, message: QueuedMessage | None) -> None: ...
    def wake(self) -> None: ...


class OrchestrationEngine:
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
    ) -> None:
        self.store = store
        self.orchestrators = orchestrators
        self.activity_names = activity_names
        self.batch_size = max(1, min(32, batch_size))
        self.max_polling_interval = max(0.05, max_polling_interval)
        self.verbose = verbose
        self.semaphore = asyncio.Semaphore(max(1, max_concurrent))
        self.sessions: dict[str, Session] = {}
        self.inflight: dict[str, QueuedMessage] = {}
        self.cache: dict[str, InstanceState] = {}
        self.wake_events = [asyncio.Event() for _ in store.control_queues]
        self.next_timer: list[float] = [float("inf")] * len(store.control_queues)
        self.running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.activity_sink: ActivitySink | None = None
        self.episode_seconds: dict[str, float] = {}  # last replay cost per instance, for coalescing

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        self._tasks = [asyncio.create_task(self._poll(i)) for i in range(len(self.store.control_queues))]

    async def stop(self, grace: float) -> None:
        """Stop taking messages, then let running episodes finish their checkpoint."""
        self.running = False
        for wake in self.wake_events:
            wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = [s.task for s in self.sessions.values() if s.task]
        if running:
            await asyncio.wait(running, timeout=grace)

    async def enqueue(self, instance_id: str, execution_id: str | None, ev: Event) -> None:
        """Send an orchestration message and, holding its lease, process it here at once."""
        _, leased = await self.store.send_control(instance_id, execution_id, ev, lease=MESSAGE_VISIBILITY)
        if leased is not None and self.running:
            self._dispatch([leased])

    def accept_completion(self, work_item: QueuedMessage, completion: Event) -> bool:
        """Take an activity's completion straight from the dispatcher.

        The work item itself stands for the completion until the episode that records it is checkpointed:
        only then is the work item deleted. A crash before that redelivers the work item and the activity
        runs again (at least once, as in Azure); a duplicate completion is recognised and dropped.
        """
        if not self.running:
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
        self._dispatch([carrier])
        return True

    def _in_background(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake(self, partition: int, at: datetime | None = None) -> None:
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
        interval = 0.05
        while self.running:
            try:
                messages = await self.store.receive(queue, self.batch_size, MESSAGE_VISIBILITY)
            except AzureError as exc:
                log.warning("control queue %s: %s", queue.queue_name, exc)
                await asyncio.sleep(1.0)
                continue
            if messages:
                self._dispatch(messages)
                interval = 0.05
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

    def _dispatch(self, messages: list[QueuedMessage]) -> None:
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
                        self.cache.pop(instance_id, None)
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
        state = self.cache.get(instance_id)
        cost = self.episode_seconds.get(instance_id, 0.0)
        if state is None or cost < 0.02:
            return
        outstanding = len(state.scheduled_ids() - state.completed_ids())
        if outstanding > len(session.pending) * 2:
            await asyncio.sleep(min(cost, 0.25))

    # --- state -----------------------------------------------------------------------------------
    async def _load(self, instance_id: str) -> InstanceState:
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
            if row.get("ExecutionId") != history.execution_id and state.status in ("Pending", "ContinuedAsNew"):
                # A new execution was started but has no history yet.
                state.history, state.persisted = [], 0
                state.execution_id = row.get("ExecutionId")
        return state

    def _remember(self, state: InstanceState) -> None:
        if state.status in FINISHED:
            self.cache.pop(state.instance_id, None)
            return
        if len(self.cache) > 2000:
            self.cache.pop(next(iter(self.cache)))
        self.cache[state.instance_id] = state

    # --- one episode -------------------------------------------------------------------------------
    async def _process(self, instance_id: str, messages: list[QueuedMessage]) -> None:
        state = await self._load(instance_id)
        consumed: list[QueuedMessage] = []
        deferred: list[QueuedMessage] = []
        new_events: list[Event] = []
        terminate: Event | None = None
        suspend: Event | None = None
        resume: Event | None = None
        # ExecutionStarted first: a redelivered start and its completions may arrive in one batch.
        ordered = sorted(messages, key=lambda m: 0 if type_of(m.event) == EventType.ExecutionStarted else 1)
        scheduled, timers = state.scheduled_ids(), state.timer_ids()
        completed, fired = state.completed_ids(), state.fired_ids()
        for message in ordered:
            ev, kind = message.event, type_of(message.event)
            if kind == EventType.ExecutionStarted:
                execution_id = (ev.get("OrchestrationInstance") or {}).get("ExecutionId")
                if state.history and execution_id == state.execution_id:
                    consumed.append(message)  # duplicate delivery of a start we already ran
                    continue
                if state.history and state.status in ("Running", "Suspended") and execution_id != state.execution_id:
                    consumed.append(message)  # a stale start of an older execution
                    continue
                state = InstanceState(instance_id, execution_id, ev.get("Name"), [], 0, "Pending", state.created)
                scheduled, timers, completed, fired = set(), set(), set(), set()
                new_events.append(ev)
                consumed.append(message)
            elif not state.history and not new_events:
                # Nothing to deliver to yet: out of order, or a zombie for a purged instance.
                (consumed if message.dequeue_count > 5 else deferred).append(message)
            elif state.status in FINISHED:
                consumed.append(message)
            elif kind == EventType.ExecutionTerminated:
                terminate = terminate or ev
                consumed.append(message)
            elif kind == EventType.ExecutionSuspended:
                suspend = ev
                consumed.append(message)
            elif kind == EventType.ExecutionResumed:
                resume = ev
                consumed.append(message)
            elif (state.status == "Suspended" and resume is None) or suspend is not None:
                deferred.append(message)  # delivered after resume, as DTFx buffers them
            elif kind in _COMPLETION_KEYS:
                # A completion counts once, and only for a decision the history already holds.
                task_id = int(ev[_COMPLETION_KEYS[kind]])
                done, known = (fired, timers) if kind == EventType.TimerFired else (completed, scheduled)
                if task_id in done:
                    consumed.append(message)  # duplicate (at-least-once delivery)
                elif task_id not in known:
                    (consumed if message.dequeue_count > 5 else deferred).append(message)
                else:
                    done.add(task_id)
                    new_events.append(ev)
                    consumed.append(message)
            else:
                new_events.append(ev)
                consumed.append(message)

        if terminate is not None:
            await self._terminate(state, terminate)
        elif suspend is not None and state.status not in FINISHED:
            # Nothing else is delivered while suspended: those messages come back after the resume.
            held = [m for m in consumed if any(m.event is e for e in new_events)]
            deferred += held
            consumed = [m for m in consumed if m not in held]
            if state.status != "Suspended":
                await self._simple_episode(state, [suspend], "Suspended")
        elif new_events or resume is not None:
            if resume is not None:
                new_events.append(resume)
            if state.status != "Suspended" or resume is not None:
                await self._episode(state, new_events)
        if consumed:
            # Off the critical path: a message redelivered before its delete lands is a known duplicate.
            self._in_background(asyncio.gather(*(self.store.delete(m) for m in consumed)))
        for message in deferred:
            await _quietly(self.store.abandon(message, min(2**message.dequeue_count, 30)))

    def _context(self, state: InstanceState, history: list[Event], prior: int) -> str:
        started = next((e for e in history if type_of(e) == EventType.ExecutionStarted), {})
        played = []
        for index, ev in enumerate(history):
            copy = dict(ev)
            copy["IsPlayed"] = index < prior and type_of(ev) in MESSAGE_TYPES
            played.append(copy)
        raw_input = started.get("Input")
        parent = started.get("ParentInstance") or None
        return json.dumps(
            {
                "history": played,
                "input": json.loads(raw_input) if raw_input else None,
                "instanceId": state.instance_id,
                "isReplaying": prior > 0,
                "parentInstanceId": (parent or {}).get("OrchestrationInstance", {}).get("InstanceId")
                if parent
                else None,
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
                "longRunningTimerIntervalDuration": "3.00:00:00",
                "maximumShortTimerDuration": "6.00:00:00",
                "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
            }
        )

    async def _episode(self, state: InstanceState, new_events: list[Event]) -> None:
        started_at = time.perf_counter()
        now = _monotonic_now(state)
        prior = len(state.history)
        episode = [event(EventType.OrchestratorStarted, now), *new_events]
        history = state.history + episode
        name = state.name or (state.started or {}).get("Name") or ""
        state.name = name
        outcome: dict[str, Any] = {}
        error: str | None = None
        invoke = self.orchestrators.get(name)
        if invoke is None:
            error_result = (
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                "Additional info: no orchestrator of that name is registered."
            )
            state.history = history
            await self._finish(state, OrchestrationStatus.Failed, error_result, [], 0, [], started_at, failed=True)
            return
        try:
            answer = await invoke(name, self._context(state, history, prior))
            outcome = json.loads(answer)
        except Exception as exc:  # the SDK reports orchestrator failures as exceptions
            text = str(exc)
            if OUT_OF_PROC_MARKER in text:
                outcome = json.loads(text.split(OUT_OF_PROC_MARKER, 1)[1])
                error = str(outcome.get("error") or text.split(OUT_OF_PROC_MARKER, 1)[0])
            else:
                error = f"{type(exc).__name__}: {text}"
        actions = outcome.get("actions") or [[]]
        schema = outcome.get("schemaVersion")
        replayer = ActionReplayer(
            history,
            instance_id=state.instance_id,
            execution_id=state.execution_id or "",
            orchestrator_name=name,
            now=now,
            activity_names=self.activity_names,
            orchestrator_names=set(self.orchestrators),
        )
        decisions: list[Event] = []
        outgoing: list[Outgoing] = []
        next_id = 0
        continue_as_new: str | None = None
        has_continue = False
        try:
            if outcome and schema not in (1, 2):
                raise ReplayError(f"unsupported replay schema {schema!r}; devhost speaks V2/V3 like the host")
            flat = actions[0] if actions else []
            result = replayer.replay(flat)
            decisions, outgoing, next_id = result.decisions, result.outgoing, result.next_id
            continue_as_new, has_continue = result.continue_as_new, result.has_continue_as_new
        except ReplayError as exc:
            error = str(exc)
            decisions, outgoing = [], []
            next_id = replayer.next_id
        custom = outcome.get("customStatus")
        if custom is not None:
            state.custom_status = json.dumps(custom, separators=(",", ":"))
            size = len(state.custom_status.encode("utf-16-le"))
            if size > CUSTOM_STATUS_LIMIT and error is None:
                error = (
                    f"The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. "
                    f"The current payload size is {size / 1024:.1f} KB."
                )
        state.history = history + decisions
        if error is not None:
            await self._finish(
                state,
                OrchestrationStatus.Failed,
                f"Orchestrator function '{name}' failed: {error}",
                [],
                next_id,
                [],
                started_at,
                failed=True,
            )
        elif has_continue:
            await self._continue_as_new(state, continue_as_new, outgoing, next_id, started_at)
        elif outcome.get("isDone"):
            output = outcome.get("output")
            result_text = json.dumps(output, separators=(",", ":")) if output is not None else None
            await self._finish(state, OrchestrationStatus.Completed, result_text, outgoing, next_id, [], started_at)
        else:
            state.history.append(event(EventType.OrchestratorCompleted, now))
            state.status = "Running"
            await self._checkpoint(state, outgoing)
            self._log_episode(state, "Running", started_at, len(outgoing))

    async def _finish(
        self,
        state: InstanceState,
        status: OrchestrationStatus,
        result: str | None,
        outgoing: list[Outgoing],
        next_id: int,
        extra: list[Event],
        started_at: float,
        failed: bool = False,
    ) -> None:
        now = _monotonic_now(state)
        state.history += extra
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
        await self._checkpoint(state, outgoing, output=result, completed=True)
        await self._notify_parent(state, status, result)
        self._log_episode(state, status.name, started_at, len(outgoing))

    async def _continue_as_new(
        self, state: InstanceState, new_input: str | None, outgoing: list[Outgoing], next_id: int, started_at: float
    ) -> None:
        now = _monotonic_now(state)
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
        await self._checkpoint(state, outgoing)
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
        self.cache.pop(state.instance_id, None)
        await self.enqueue(state.instance_id, execution_id, start)
        self._log_episode(state, "ContinuedAsNew", started_at, len(outgoing))

    async def _simple_episode(self, state: InstanceState, events: list[Event], status: str) -> None:
        now = _monotonic_now(state)
        state.history += [
            event(EventType.OrchestratorStarted, now),
            *events,
            event(EventType.OrchestratorCompleted, now),
        ]
        state.status = status
        await self._checkpoint(state, [])

    async def _terminate(self, state: InstanceState, terminated: Event) -> None:
        if state.status in FINISHED:
            return
        now = _monotonic_now(state)
        reason = terminated.get("Input")
        state.history += [event(EventType.OrchestratorStarted, now), terminated]
        await self._finish(
            state, OrchestrationStatus.Terminated, reason, [], len(state.scheduled_ids()), [], time.perf_counter()
        )

    # --- checkpoint ------------------------------------------------------------------------------
    async def _checkpoint(
        self, state: InstanceState, outgoing: list[Outgoing], output: str | None = None, completed: bool = False
    ) -> None:
        """Messages first, then history, then the instance row (the DurableTask.AzureStorage order)."""
        await asyncio.gather(*(self._send(state, item) for item in outgoing))
        if any(item.kind == "activity" for item in outgoing) and self.activity_sink is not None:
            self.activity_sink.wake()
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

    async def _send(self, state: InstanceState, item: Outgoing) -> None:
        if item.kind == "activity":
            sink = self.activity_sink
            if sink is not None and sink.reserve():
                try:
                    leased = await self.store.send_workitem(
                        state.instance_id, state.execution_id, item.event, lease=WORK_ITEM_LEASE
                    )
                finally:
                    sink.deliver(leased if self.running else None)
            else:
                await self.store.send_workitem(state.instance_id, state.execution_id, item.event)
        elif item.kind == "timer":
            assert item.fire_at is not None
            fired = event(
                EventType.TimerFired, item.fire_at, TimerId=item.event["EventId"], FireAt=item.event["FireAt"]
            )
            partition, _ = await self.store.send_control(state.instance_id, state.execution_id, fired, item.fire_at)
            self.wake(partition, item.fire_at)
        elif item.kind == "start_child":
            assert item.child_instance_id is not None
            await self.start_instance(
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
        await self.enqueue(target["InstanceId"], target.get("ExecutionId"), notice)

    def _log_episode(self, state: InstanceState, outcome: str, started_at: float, scheduled: int) -> None:
        duration = (time.perf_counter() - started_at) * 1000
        if outcome in FINISHED:
            self.episode_seconds.pop(state.instance_id, None)
        else:
            if len(self.episode_seconds) > 2000:
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

    # --- client operations -------------------------------------------------------------------------
    async def start_instance(
        self,
        name: str,
        instance_id: str,
        input_text: str,
        parent: dict[str, Any] | None = None,
        allow_running: bool = False,
    ) -> str:
        if name not in self.orchestrators:
            raise UnknownOrchestrator(name)
        existing = await self.store.read_instance(instance_id)
        if existing is not None and existing.get("RuntimeStatus") in ACTIVE and not allow_running:
            raise InstanceExists(str(existing.get("RuntimeStatus")))
        execution_id = uuid.uuid4().hex
        now = utcnow()
        start = event(
            EventType.ExecutionStarted,
            now,
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
            ParentInstance=parent,
            Name=name,
            Version="",
            Input=input_text,
            Tags=None,
            ScheduledStartTime=None,
        )
        self.cache.pop(instance_id, None)
        # The row and the message are independent writes (a crash between them leaves the same state in
        # either order), so they go out together: one round trip less before the client's 202. The
        # message is handed to a session only once the row is written, so no checkpoint races the row.
        _, (_, leased) = await asyncio.gather(
            self.store.write_instance(
                instance_id,
                {
                    "Name": name,
                    "Version": "",
                    "Input": input_text,
                    "CustomStatus": "null",
                    "RuntimeStatus": "Pending",
                    "CreatedTime": now,
                    "LastUpdatedTime": now,
                    "ExecutionId": execution_id,
                    "Generation": 0,
                },
                merge=False,
            ),
            self.store.send_control(instance_id, execution_id, start, lease=MESSAGE_VISIBILITY),
        )
        if leased is not None and self.running:
            self._dispatch([leased])
        return execution_id

    async def _require(self, instance_id: str) -> dict[str, Any]:
        row = await self.store.read_instance(instance_id)
        if row is None:
            raise InstanceNotFound(instance_id)
        return row

    async def _send_to(self, instance_id: str, ev: Event, finished_ok: bool = False) -> None:
        row = await self._require(instance_id)
        if row.get("RuntimeStatus") in FINISHED and not finished_ok:
            raise InstanceFinished(str(row.get("RuntimeStatus")))
        await self.enqueue(instance_id, row.get("ExecutionId"), ev)

    async def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        await self._send_to(instance_id, event(EventType.EventRaised, utcnow(), Name=name, Input=input_text))

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        await self._send_to(instance_id, event(EventType.ExecutionTerminated, utcnow(), Input=reason))

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        await self._send_to(instance_id, event(EventType.ExecutionSuspended, utcnow(), Reason=reason))

    async def resume(self, instance_id: str, reason: str | None) -> None:
        await self._send_to(instance_id, event(EventType.ExecutionResumed, utcnow(), Reason=reason))

    async def purge(self, instance_id: str) -> bool:
        self.cache.pop(instance_id, None)
        return await self.store.purge(instance_id)

    async def history_of(self, instance_id: str) -> list[Event]:
        return (await self.store.read_history(instance_id)).events


def _monotonic_now(state: InstanceState) -> datetime:
    """Episode time never goes backwards, even if the clock does."""
    now = utcnow()
    if state.history:
        last = parse_time(str(state.history[-1]["Timestamp"]))
        if last >= now:
            return last + timedelta(microseconds=1)
    return now


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except AzureError as exc:
        log.debug("ignored storage error: %s", exc)


def compact(text: str | None) -> str | None:
    return compact_json(text)
