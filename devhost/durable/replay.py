"""Replay the SDK's actions against the history, as the extension's OutOfProcOrchestrationShim does.

The Python SDK answers every episode with the cumulative list of actions (schema V3: one list, compound
actions for task_all/task_any). The host walks that list in order, invoking each action on a DurableTask
context (which gives it the next sequence id) and awaiting it; it stops at the first action that is not
complete yet. Whatever is invoked for the first time becomes a new decision (TaskScheduled, TimerCreated,
SubOrchestrationInstanceCreated) and an outgoing message. Ids already in the history must match in type
and name, or the orchestration is non-deterministic.

It also tracks DurableTask.Core's open tasks (`TaskOrchestrationContext.openTasks`): every activity,
sub-orchestration and timer the replay invoked that has no result yet, except timers the SDK cancelled
(`isCanceled`, which the shim turns into a cancelled CancellationToken: `CreateTimer` then removes the
timer from openTasks). An external event is not an open task: the extension keeps those waits in its own
`pendingExternalEvents`, outside DTFx.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from devhost.durable.history import Event, EventType, dotnet_time, event, parse_time, type_of


class ActionType:
    """The SDK's action type numbers (AsyncActionType in the shim)."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


class TaskState(Enum):
    """Where a replayed action stands."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class ReplayError(Exception):
    """The orchestration cannot go on (non-determinism, unknown function, unsupported action)."""


@dataclass
class Outgoing:
    """A message the checkpoint must send."""

    kind: str  # "activity" | "timer" | "start_child"
    event: Event
    fire_at: datetime | None = None
    child_instance_id: str | None = None
    child_name: str | None = None


@dataclass
class ReplayResult:
    """What a replay produced: new decisions, messages to send, continue-as-new, open tasks."""

    decisions: list[Event] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    continue_as_new: str | None = None  # JSON text of the new input
    has_continue_as_new: bool = False
    next_id: int = 0
    # Ids of tasks still open (see the module docstring); DTFx completes an orchestration only without any.
    open_tasks: set[int] = field(default_factory=set)
    # The walk stopped at a top-level action that is still pending: the shim is still awaiting it.
    blocked: bool = False


class ActionReplayer:
    """Replays one episode's actions against the history (see the module docstring)."""

    def __init__(
        self,
        history: list[Event],
        *,
        instance_id: str,
        execution_id: str,
        orchestrator_name: str,
        now: datetime,
        activity_names: set[str],
        orchestrator_names: set[str],
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.orchestrator_name = orchestrator_name
        self.now = now
        self.activity_names = activity_names
        self.orchestrator_names = orchestrator_names
        self.decisions: dict[int, Event] = {}
        self.results: dict[int, Event] = {}
        self.timer_results: dict[int, Event] = {}
        self.events_by_name: dict[str, list[Event]] = defaultdict(list)
        self.consumed: dict[str, int] = defaultdict(int)
        for ev in history:
            kind = type_of(ev)
            if kind in (
                EventType.TaskScheduled,
                EventType.TimerCreated,
                EventType.SubOrchestrationInstanceCreated,
                EventType.EventSent,
            ):
                self.decisions[int(ev["EventId"])] = ev
            elif kind in (
                EventType.TaskCompleted,
                EventType.TaskFailed,
                EventType.SubOrchestrationInstanceCompleted,
                EventType.SubOrchestrationInstanceFailed,
            ):
                self.results.setdefault(int(ev["TaskScheduledId"]), ev)
            elif kind == EventType.TimerFired:
                self.timer_results.setdefault(int(ev["TimerId"]), ev)
            elif kind == EventType.EventRaised:
                self.events_by_name[str(ev.get("Name"))].append(ev)
        self.result = ReplayResult()
        self.next_id = 0

    # --- entry point -------------------------------------------------------------------------
    def replay(self, actions: list[Any]) -> ReplayResult:
        """Walk the SDK's actions in order, as ProcessAsyncActionsV2 awaits each, up to the first pending one."""
        for action in actions:
            if self.invoke(action) is TaskState.PENDING:
                self.result.blocked = True
                break
        self.result.next_id = self.next_id
        return self.result

    def invoke(self, action: dict[str, Any]) -> TaskState:
        """Replay one action (compound ones with their children) and say where it stands."""
        kind = int(action.get("actionType", -1))
        if kind == ActionType.CALL_ACTIVITY:
            return self._activity(action)
        if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
            return self._with_retry(action, self._activity)
        if kind == ActionType.CALL_SUB_ORCHESTRATOR:
            return self._sub_orchestration(action)
        if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
            return self._with_retry(action, self._sub_orchestration)
        if kind == ActionType.CREATE_TIMER:
            return self._timer(action)
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            return self._external_event(action)
        if kind == ActionType.CONTINUE_AS_NEW:
            self.result.has_continue_as_new = True
            self.result.continue_as_new = action.get("input")
            return TaskState.DONE
        if kind == ActionType.WHEN_ALL:
            states = [self.invoke(child) for child in action.get("compoundActions", [])]
            # .NET Task.WhenAll completes only when every child has completed, failed or not.
            if any(s is TaskState.PENDING for s in states):
                return TaskState.PENDING
            return TaskState.FAILED if any(s is TaskState.FAILED for s in states) else TaskState.DONE
        if kind == ActionType.WHEN_ANY:
            states = [self.invoke(child) for child in action.get("compoundActions", [])]
            return TaskState.PENDING if all(s is TaskState.PENDING for s in states) else TaskState.DONE
        if kind in (ActionType.CALL_ENTITY, ActionType.SIGNAL_ENTITY, ActionType.CALL_HTTP):
            raise ReplayError(f"action type {kind} (entities / call_http) is not supported by devhost")
        raise ReplayError(f"unknown action type {kind}")

    # --- primitives --------------------------------------------------------------------------
    def _take_id(self) -> int:
        current = self.next_id
        self.next_id += 1
        return current

    def _existing(self, task_id: int, expected: EventType, name: str | None) -> Event | None:
        found = self.decisions.get(task_id)
        if found is None:
            return None
        if type_of(found) != expected or (name is not None and found.get("Name") != name):
            raise ReplayError(
                "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
                f"a {type_of(found).name} with sequence ID {task_id} and name '{found.get('Name', '')}', but the "
                f"current replay execution scheduled a {expected.name} named '{name or ''}' there. Was a change "
                "made to the orchestrator code after this instance had already started running?"
            )
        return found

    def _activity(self, action: dict[str, Any]) -> TaskState:
        name = str(action.get("functionName"))
        task_id = self._take_id()
        if self._existing(task_id, EventType.TaskScheduled, name) is None:
            if name not in self.activity_names:
                raise ReplayError(
                    f"The function '{name}' doesn't exist, is disabled, or is not an activity function. "
                    f"Additional info: the app has {len(self.activity_names)} activity functions."
                )
            decision = event(
                EventType.TaskScheduled,
                self.now,
                task_id,
                Name=name,
                Version="",
                Input=json.dumps([action.get("input")]),
                ParentTraceContext=None,
                Tags=None,
            )
            self._add(decision, Outgoing("activity", decision))
        return self._track(task_id, self._outcome(self.results.get(task_id), EventType.TaskCompleted))

    def _sub_orchestration(self, action: dict[str, Any]) -> TaskState:
        name = str(action.get("functionName"))
        task_id = self._take_id()
        if self._existing(task_id, EventType.SubOrchestrationInstanceCreated, name) is None:
            if name not in self.orchestrator_names:
                raise ReplayError(
                    f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                    f"Additional info: the app has {len(self.orchestrator_names)} orchestrator functions."
                )
            child_id = action.get("instanceId") or f"{self.execution_id}:{task_id}"
            decision = event(
                EventType.SubOrchestrationInstanceCreated,
                self.now,
                task_id,
                Name=name,
                Version="",
                InstanceId=child_id,
                Input=json.dumps(action.get("input")),
                ClientSpanId=None,
                Tags=None,
            )
            self._add(decision, Outgoing("start_child", decision, child_instance_id=child_id, child_name=name))
        return self._track(
            task_id, self._outcome(self.results.get(task_id), EventType.SubOrchestrationInstanceCompleted)
        )

    def _timer(self, action: dict[str, Any], fire_at: datetime | None = None) -> TaskState:
        task_id = self._take_id()
        if self._existing(task_id, EventType.TimerCreated, None) is None:
            when = fire_at if fire_at is not None else parse_time(str(action["fireAt"]))
            decision = event(EventType.TimerCreated, self.now, task_id, FireAt=dotnet_time(when))
            self._add(decision, Outgoing("timer", decision, fire_at=when))
        if task_id in self.timer_results:
            return TaskState.DONE
        if action.get("isCanceled"):
            return TaskState.DONE  # cancelled: done for the shim, and no longer an open task
        return self._track(task_id, TaskState.PENDING)

    def _retry_timer(self, fire_at: datetime) -> TaskState:
        return self._timer({"isCanceled": False}, fire_at=fire_at)

    def _external_event(self, action: dict[str, Any]) -> TaskState:
        name = str(action.get("externalEventName"))
        if self.consumed[name] < len(self.events_by_name[name]):
            self.consumed[name] += 1
            return TaskState.DONE
        return TaskState.PENDING

    def _with_retry(self, action: dict[str, Any], call: Callable[[dict[str, Any]], TaskState]) -> TaskState:
        """DurableTask.Core's RetryInterceptor, including the extra timer after the last failure."""
        options = action.get("retryOptions") or {}
        attempts = int(options.get("maxNumberOfAttempts", 1))
        first = float(options.get("firstRetryIntervalInMilliseconds", 1000)) / 1000.0
        coefficient = float(options.get("backoffCoefficient", 1.0))
        cap = options.get("maxRetryIntervalInMilliseconds")
        for attempt in range(max(1, attempts)):
            state = call(action)
            if state is not TaskState.FAILED:
                return state
            if attempt == attempts - 1:
                # "Dummy timer for back-compat", firing at once; only after it does the SDK see the failure.
                timer = self._retry_timer(self.now)
                return TaskState.FAILED if timer is TaskState.DONE else TaskState.PENDING
            delay = first * coefficient**attempt
            if cap is not None:
                delay = min(delay, float(cap) / 1000.0)
            if self._retry_timer(self.now + timedelta(seconds=delay)) is TaskState.PENDING:
                return TaskState.PENDING
        return TaskState.FAILED

    def _track(self, task_id: int, state: TaskState) -> TaskState:
        if state is TaskState.PENDING:
            self.result.open_tasks.add(task_id)
        return state

    def _add(self, decision: Event, outgoing: Outgoing) -> None:
        self.decisions[int(decision["EventId"])] = decision
        self.result.decisions.append(decision)
        self.result.outgoing.append(outgoing)

    @staticmethod
    def _outcome(completion: Event | None, success: EventType) -> TaskState:
        if completion is None:
            return TaskState.PENDING
        return TaskState.DONE if type_of(completion) == success else TaskState.FAILED
