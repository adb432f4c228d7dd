"""Run an orchestrator in-process with the Durable SDK's own replay, over a history the test scripts.

As the SDK's own tests do (azure-functions-durable-python tests/test_utils/ContextBuilder.py and
tests/orchestrator/orchestrator_test_utils.py: history events as JSON, `Orchestrator(fn).handle(
DurableOrchestrationContext.from_json(...))`, assertions on the actions), but driven episode by episode:
after each episode the actions the SDK returned are walked the way the extension's
OutOfProcOrchestrationShim walks them (in order, one sequence id per scheduled task, stopping at the
first task not complete yet; a timer sent with isCanceled counts as complete), the new ones are
appended to the history as TaskScheduled / TimerCreated / SubOrchestrationInstanceCreated, and the
test answers them with TaskCompleted / TaskFailed / TimerFired / EventRaised events. The history is
what DurableTask would have written, so every episode is a true replay of the ones before.

Only devhost's event and action vocabulary is shared (devhost.durable.history and .replay); no host,
no storage: a whole job takes milliseconds, so every branch of an orchestration gets a test.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df

from devhost.durable.history import EventType, dotnet_time, parse_time
from devhost.durable.replay import ActionType

Event = dict[str, Any]
START = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
EPISODE_STEP = timedelta(milliseconds=50)
"""How far the clock moves between two episodes (a message's trip through the control queue)."""


@dataclass
class Task:
    """One task the orchestration scheduled: an activity, a sub-orchestration or a timer."""

    id: int
    kind: str  # "activity" | "sub" | "timer"
    name: str | None = None
    input: Any = None
    fire_at: datetime | None = None
    instance_id: str | None = None
    created_at: datetime | None = None  # the episode's time (the orchestrator's clock when it asked)
    done: bool = False
    cancelled: bool = False


@dataclass
class Failure:
    """A scripted failure of an activity: the exception type and message the worker would report."""

    message: str
    exception_type: str = "RuntimeError"


Respond = Callable[[Task], Any]
"""Answers an activity or sub-orchestration: its output, or a Failure."""


class Replay:
    """One orchestration instance, replayed by the SDK in-process over a scripted history."""

    def __init__(
        self,
        orchestrator: Callable[[Any], Generator[Any, Any, Any]],
        input_: Any,
        instance_id: str = "job-replay",
        now: datetime = START,
        maximum_short_timer: str = "6.00:00:00",
        long_timer_interval: str = "3.00:00:00",
    ) -> None:
        """An instance of `orchestrator` started with `input_` at `now` (not run until the first episode)."""
        self.orchestrator = orchestrator
        self.input = input_
        self.instance_id = instance_id
        self.now = now
        self.timer_settings = {
            "maximumShortTimerDuration": maximum_short_timer,
            "longRunningTimerIntervalDuration": long_timer_interval,
        }
        self.history: list[Event] = []
        self.tasks: dict[int, Task] = {}
        self.order: list[Task] = []  # every task in the order it was scheduled
        self.raised: defaultdict[str, int] = defaultdict(int)
        self.state: dict[str, Any] = {}
        self.error: str | None = None
        self.episodes = 0
        self._pending_started = [
            self._event(EventType.ExecutionStarted, Name="orchestrator", Version="", Input=json.dumps(input_))
        ]

    # --- running -------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Whether the SDK said the orchestration returned (or failed)."""
        return bool(self.state.get("isDone")) or self.error is not None

    @property
    def output(self) -> Any:
        """What the orchestrator returned."""
        return self.state.get("output")

    @property
    def custom_status(self) -> Any:
        """The custom status of the last episode."""
        return self.state.get("customStatus")

    def episode(self, *new_events: Event) -> list[Task]:
        """Deliver `new_events` in one episode; returns the tasks it scheduled."""
        assert not self.done, "the orchestration already finished"
        self.now += EPISODE_STEP
        played = len(self.history)
        self.history += [self._event(EventType.OrchestratorStarted), *self._pending_started, *new_events]
        self._pending_started = []
        context = {
            "history": [dict(event, IsPlayed=index < played) for index, event in enumerate(self.history)],
            "input": self.input,
            "instanceId": self.instance_id,
            "isReplaying": played > 0,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
            **self.timer_settings,
        }
        self.episodes += 1
        try:
            answer = df.Orchestrator(self.orchestrator).handle(
                df.DurableOrchestrationContext.from_json(json.dumps(context))
            )
            self.state = json.loads(answer)
        except Exception as exc:  # the SDK raises when the orchestrator raised; the state follows a marker
            text = str(exc)
            marker = "$OutOfProcData$:"
            self.state = json.loads(text.split(marker, 1)[1]) if marker in text else {}
            self.error = text.split(marker, 1)[0] if marker in text else text
        before = len(self.order)
        self._walk(self.state.get("actions") or [[]])
        if not self.done:
            self.history.append(self._event(EventType.OrchestratorCompleted))
        return self.order[before:]

    def open_tasks(self) -> list[Task]:
        """Tasks scheduled and neither answered nor cancelled: DTFx keeps the instance Running for these."""
        return [task for task in self.order if not task.done and not task.cancelled]

    def drive(self, respond: Respond, until: Callable[[Replay], bool] | None = None, limit: int = 500) -> Replay:
        """Answer every open activity/sub-orchestration with `respond`; fire timers when nothing else is open.

        Stops when the orchestration is done (or `until` holds after an episode). Timers fire in
        time order, moving the clock to their fireAt.
        """
        if self.episodes == 0:
            self.episode()
        while not self.done and not (until and until(self)):
            assert self.episodes < limit, "the orchestration never finished"
            open_tasks = self.open_tasks()
            work = [task for task in open_tasks if task.kind != "timer"]
            if work:
                self.episode(*[self.answer(task, respond(task)) for task in work])
                continue
            timers = sorted((task for task in open_tasks if task.fire_at), key=lambda task: task.fire_at or self.now)
            assert timers, f"the orchestration waits for something nobody will send: {self.state}"
            self.episode(self.fire(timers[0]))
        return self

    # --- events the test sends -----------------------------------------------------------------
    def answer(self, task: Task, result: Any) -> Event:
        """The completion (or failure, for a Failure) of an activity or sub-orchestration."""
        task.done = True
        if isinstance(result, Failure):
            what = "Activity" if task.kind == "activity" else "Orchestrator"
            failed = EventType.TaskFailed if task.kind == "activity" else EventType.SubOrchestrationInstanceFailed
            return self._event(
                failed,
                TaskScheduledId=task.id,
                Reason=f"{what} function '{task.name}' failed: {result.exception_type}: {result.message}",
                Details='{"$type": "System.Exception"}',
            )
        completed = EventType.TaskCompleted if task.kind == "activity" else EventType.SubOrchestrationInstanceCompleted
        return self._event(completed, TaskScheduledId=task.id, Result=json.dumps(result))

    def fire(self, timer: Task) -> Event:
        """The TimerFired of `timer`; the clock moves to its fireAt."""
        assert timer.fire_at is not None
        timer.done = True
        self.now = max(self.now, timer.fire_at)
        return self._event(EventType.TimerFired, TimerId=timer.id, FireAt=dotnet_time(timer.fire_at))

    def raise_event(self, name: str, payload: Any = None) -> Event:
        """An external event raised on the instance (as the client's raise_event does)."""
        return self._event(EventType.EventRaised, Name=name, Input=json.dumps(payload))

    # --- queries ---------------------------------------------------------------------------------
    def calls(self, name: str | None = None) -> list[Task]:
        """Activities scheduled so far (named `name`, if given), in order."""
        return [task for task in self.order if task.kind == "activity" and (name is None or task.name == name)]

    def activity_names(self) -> list[str]:
        """Names of the activities scheduled so far, in order."""
        return [str(task.name) for task in self.calls()]

    def timers(self) -> list[Task]:
        """Timers created so far, in order."""
        return [task for task in self.order if task.kind == "timer"]

    def sub_orchestrations(self) -> list[Task]:
        """Sub-orchestrations started so far, in order."""
        return [task for task in self.order if task.kind == "sub"]

    # --- the host's walk over the actions --------------------------------------------------------
    def _walk(self, actions: list[Any]) -> None:
        assert self.state.get("schemaVersion") in (None, 1, 2), self.state
        self._next_id = 0
        self._consumed: defaultdict[str, int] = defaultdict(int)
        for action in actions[0] if actions else []:
            if not self._invoke(action):
                break

    def _invoke(self, action: dict[str, Any]) -> bool:
        """Schedule `action` if new; True when it is complete (the host goes on to the next one)."""
        kind = int(action["actionType"])
        if kind == ActionType.WHEN_ALL:
            return all([self._invoke(child) for child in action.get("compoundActions", [])])  # noqa: C419 - invoke each
        if kind == ActionType.WHEN_ANY:
            return any([self._invoke(child) for child in action.get("compoundActions", [])])  # noqa: C419 - invoke each
        if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            name = str(action["externalEventName"])
            if self._consumed[name] < self.raised[name]:
                self._consumed[name] += 1
                return True
            return False
        task_id = self._next_id
        self._next_id += 1
        task = self.tasks.get(task_id)
        if task is None:
            task = self._schedule(task_id, kind, action)
        elif kind == ActionType.CREATE_TIMER and action.get("isCanceled"):
            task.cancelled = True
        expected = {ActionType.CALL_ACTIVITY: "activity", ActionType.CALL_SUB_ORCHESTRATOR: "sub"}.get(kind, "timer")
        assert task.kind == expected and task.name == action.get("functionName"), "non-deterministic replay"
        return task.done or task.cancelled

    def _schedule(self, task_id: int, kind: int, action: dict[str, Any]) -> Task:
        if kind == ActionType.CALL_ACTIVITY:
            task = Task(task_id, "activity", action["functionName"], _json(action.get("input")))
            self.history.append(self._event(EventType.TaskScheduled, task_id, Name=task.name, Version="", Input=None))
        elif kind == ActionType.CALL_SUB_ORCHESTRATOR:
            task = Task(
                task_id, "sub", action["functionName"], _json(action.get("input")), instance_id=action.get("instanceId")
            )
            self.history.append(
                self._event(
                    EventType.SubOrchestrationInstanceCreated, task_id, Name=task.name, InstanceId=task.instance_id
                )
            )
        elif kind == ActionType.CREATE_TIMER:
            fire_at = parse_time(str(action["fireAt"]))
            task = Task(task_id, "timer", fire_at=fire_at, cancelled=bool(action.get("isCanceled")))
            self.history.append(self._event(EventType.TimerCreated, task_id, FireAt=dotnet_time(fire_at)))
        else:
            raise AssertionError(f"action type {kind} is not scripted here")
        task.created_at = self.now
        self.tasks[task_id] = task
        self.order.append(task)
        return task

    def _event(self, event_type: EventType, event_id: int = -1, **fields: Any) -> Event:
        if event_type == EventType.EventRaised:
            self.raised[str(fields["Name"])] += 1
        return {"EventType": int(event_type), "EventId": event_id, "Timestamp": dotnet_time(self.now), **fields}


def _json(value: Any) -> Any:
    """Action inputs arrive as JSON text."""
    return json.loads(value) if isinstance(value, str) else value
