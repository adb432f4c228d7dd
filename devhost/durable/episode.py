"""One orchestration episode: new messages onto the history, the SDK's replay, its actions to decisions.

`sort_messages` decides which of a batch of control-queue messages the episode consumes (duplicates and
stale starts are dropped, messages for a suspended instance or for decisions not yet in the history wait);
`EpisodeRunner` appends the new events, has the SDK replay the history in a worker, replays its actions as
the extension's shim does (`ActionReplayer`) and hands the outcome to the checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devhost.durable.checkpoint import FINISHED, Checkpointer, InstanceState, episode_time
from devhost.durable.history import (
    MESSAGE_TYPES,
    Event,
    EventType,
    OrchestrationStatus,
    event,
    parse_time,
    type_of,
    utcnow,
)
from devhost.durable.replay import ActionReplayer, Outgoing, ReplayError
from devhost.durable.store import QueuedMessage
from devhost.durable.timings import DurableTimings, dotnet_timespan
from devhost.sanitizer import sanitize
from devhost.workers import WorkerCrashed

CUSTOM_STATUS_LIMIT_KB = 16  # whole KiB of UTF-16, as MessagePayloadDataConverter.Serialize truncates them
OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"
REDELIVERIES_BEFORE_DROP = 5  # a message for nothing we know is dropped after this many deliveries
START_DELIVERIES_BEFORE_DROP = 10  # DedupeExecutionStartedMessagesAsync: `DequeueCount >= 10`

Invoker = Callable[[str, str], Any]  # (orchestrator name, context JSON) -> awaitable of the SDK's answer

# Completion events and the field naming the decision they complete.
_COMPLETION_KEYS = {
    EventType.TaskCompleted: "TaskScheduledId",
    EventType.TaskFailed: "TaskScheduledId",
    EventType.SubOrchestrationInstanceCompleted: "TaskScheduledId",
    EventType.SubOrchestrationInstanceFailed: "TaskScheduledId",
    EventType.TimerFired: "TimerId",
}


@dataclass
class Batch:
    """A batch of messages sorted for one episode."""

    state: InstanceState
    consumed: list[QueuedMessage] = field(default_factory=list)  # delete after the checkpoint
    deferred: list[QueuedMessage] = field(default_factory=list)  # release for a later episode
    new_events: list[Event] = field(default_factory=list)
    terminate: Event | None = None
    suspend: Event | None = None
    resume: Event | None = None


def redundant_start(state: InstanceState, message: QueuedMessage) -> bool:
    """Whether a start message that does not match the Instances row is dropped now (else it waits).

    As DTFx decides it: a start of the row's generation is redundant if the row was written before the
    message was sent (messages always go before their row, so this one's row lost to that one) or before the
    message came back after a first delivery; any start is dropped after START_DELIVERIES_BEFORE_DROP
    deliveries (its row never came: the client saw its start fail and retries with a new message). A start
    of the next generation waits for its row: it restarts a finished instance.
    """
    if message.dequeue_count >= START_DELIVERIES_BEFORE_DROP:
        return True
    if state.created is None or int(message.event.get("Generation") or 0) != state.generation:
        return False
    if state.status == "Pending" and state.created < parse_time(str(message.event["Timestamp"])):
        return True
    # IsScheduledAfterInstanceUpdate: "latestReinsertionTime > remoteInstance.CreatedTime" (this delivery).
    return message.dequeue_count > 1 and state.created < utcnow()


def sort_messages(state: InstanceState, messages: list[QueuedMessage]) -> Batch:
    """Decide what an episode does with each message (see the module docstring)."""
    batch = Batch(state)
    # ExecutionStarted first: a redelivered start and its completions may arrive in one batch.
    ordered = sorted(messages, key=lambda m: 0 if type_of(m.event) == EventType.ExecutionStarted else 1)
    scheduled, timers = state.scheduled_ids(), state.timer_ids()
    completed, fired = state.completed_ids(), state.fired_ids()
    consumed, deferred, new_events = batch.consumed, batch.deferred, batch.new_events
    for message in ordered:
        ev, kind = message.event, type_of(message.event)
        state = batch.state
        if kind == EventType.ExecutionStarted:
            execution_id = (ev.get("OrchestrationInstance") or {}).get("ExecutionId")
            if state.history and execution_id == state.execution_id:
                consumed.append(message)  # duplicate delivery of a start we already ran
                continue
            if state.history and state.status in ("Running", "Suspended") and execution_id != state.execution_id:
                consumed.append(message)  # a stale start of an older execution
                continue
            if not ev.get("ParentInstance") and execution_id != state.execution_id:
                # Not the execution the Instances row names: a concurrent start whose row write lost, or one
                # whose row is not written yet (or never will be: a crash between the message and the row).
                # OrchestrationSessionManager.DedupeExecutionStartedMessagesAsync (top-level starts only).
                (consumed if redundant_start(state, message) else deferred).append(message)
                continue
            batch.state = InstanceState(
                state.instance_id, execution_id, ev.get("Name"), [], 0, "Pending", state.created
            )
            batch.state.generation = state.generation  # the row's (a sub-orchestration's: whatever it holds)
            scheduled, timers, completed, fired = set(), set(), set(), set()
            new_events.append(ev)
            consumed.append(message)
        elif not state.history and not new_events:
            # Nothing to deliver to yet: out of order, or a zombie for a purged instance.
            (consumed if message.dequeue_count > REDELIVERIES_BEFORE_DROP else deferred).append(message)
        elif state.status in FINISHED:
            consumed.append(message)
        elif kind == EventType.ExecutionTerminated:
            batch.terminate = batch.terminate or ev
            consumed.append(message)
        elif kind == EventType.ExecutionSuspended:
            batch.suspend = ev
            consumed.append(message)
        elif kind == EventType.ExecutionResumed:
            batch.resume = ev
            consumed.append(message)
        elif (state.status == "Suspended" and batch.resume is None) or batch.suspend is not None:
            deferred.append(message)  # delivered after resume, as DTFx buffers them
        elif kind in _COMPLETION_KEYS:
            # A completion counts once, and only for a decision the history already holds.
            task_id = int(ev[_COMPLETION_KEYS[kind]])
            done, known = (fired, timers) if kind == EventType.TimerFired else (completed, scheduled)
            if task_id in done:
                consumed.append(message)  # duplicate (at-least-once delivery)
            elif task_id not in known:
                (consumed if message.dequeue_count > REDELIVERIES_BEFORE_DROP else deferred).append(message)
            else:
                done.add(task_id)
                new_events.append(ev)
                consumed.append(message)
        else:
            new_events.append(ev)
            consumed.append(message)
    if batch.terminate is None and batch.suspend is not None and batch.state.status not in FINISHED:
        # Nothing else is delivered while suspended: those messages come back after the resume.
        held = [m for m in consumed if any(m.event is e for e in new_events)]
        batch.deferred += held
        batch.consumed = [m for m in consumed if m not in held]
    return batch


class EpisodeRunner:
    """Runs the episode a sorted batch calls for, and checkpoints its outcome."""

    def __init__(
        self,
        checkpoints: Checkpointer,
        *,
        orchestrators: dict[str, Invoker],
        activity_names: set[str],
        timings: DurableTimings,
    ) -> None:
        self.checkpoints = checkpoints
        self.orchestrators = orchestrators
        self.activity_names = activity_names
        self.timings = timings

    async def run(self, batch: Batch) -> None:
        """Terminate, suspend, or replay with the new events (resume included)."""
        state = batch.state
        if batch.terminate is not None:
            if state.status not in FINISHED:
                # DTFx processes ExecutionTerminated in the episode's event order: the orchestrator replays
                # (a Pending instance runs its first episode) and its actions go out; then it is Terminated.
                await self.replay(state, [*batch.new_events, batch.terminate], terminated=batch.terminate)
        elif batch.suspend is not None and state.status not in FINISHED:
            if state.status != "Suspended":
                await self.checkpoints.simple_episode(state, [batch.suspend], "Suspended")
        elif batch.new_events or batch.resume is not None:
            new_events = list(batch.new_events)
            if batch.resume is not None:
                new_events.append(batch.resume)
            if state.status != "Suspended" or batch.resume is not None:
                await self.replay(state, new_events)

    def _context(self, state: InstanceState, history: list[Event], prior: int) -> str:
        """The orchestration trigger's payload, as the extension sends it to an out-of-proc worker."""
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
                # OrchestrationTriggerAttributeBindingProvider sends the provider's timer limits; the SDK
                # splits timers longer than the maximum into legs of the interval (LongTimerTask).
                "longRunningTimerIntervalDuration": dotnet_timespan(self.timings.long_timer_interval),
                "maximumShortTimerDuration": dotnet_timespan(self.timings.maximum_short_timer),
                "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
            }
        )

    async def replay(self, state: InstanceState, new_events: list[Event], terminated: Event | None = None) -> None:
        """One episode: history + new events -> the SDK -> actions -> decisions and messages -> checkpoint.

        With `terminated`, the episode ends the instance as Terminated whatever the orchestrator did.
        """
        started_at = time.perf_counter()
        now = episode_time(state)
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
            await self.checkpoints.finish(state, OrchestrationStatus.Failed, error_result, [], 0, started_at)
            return
        try:
            answer = await invoke(name, self._context(state, history, prior))
            outcome = json.loads(answer)
        except WorkerCrashed:
            # A FunctionsRuntimeError: TaskOrchestrationShim aborts the work item (SessionAbortedException),
            # so the messages come back and the episode runs again; the instance does not fail.
            raise
        except Exception as exc:  # the SDK reports orchestrator failures as exceptions
            # The host's RpcException sanitizes the worker's message, the SDK's state JSON included.
            text = sanitize(str(exc))
            error = f"{type(exc).__name__}: {text}"
            if OUT_OF_PROC_MARKER in text:
                try:
                    outcome = json.loads(text.split(OUT_OF_PROC_MARKER, 1)[1])
                    error = str(outcome.get("error") or text.split(OUT_OF_PROC_MARKER, 1)[0])
                except ValueError:  # a credential hidden across a JSON string's end
                    error = text.split(OUT_OF_PROC_MARKER, 1)[0]
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
        still_open = False
        try:
            if outcome and schema not in (1, 2):
                raise ReplayError(f"unsupported replay schema {schema!r}; devhost speaks V2/V3 like the host")
            flat = actions[0] if actions else []
            result = replayer.replay(flat)
            decisions, outgoing, next_id = result.decisions, result.outgoing, result.next_id
            continue_as_new, has_continue = result.continue_as_new, result.has_continue_as_new
            # DTFx TaskOrchestrationExecutor.ExecuteCore: `if (!this.context.HasOpenTasks)` guards both
            # CompleteOrchestration (output, continue-as-new) and FailOrchestration. With a task still
            # open, or the shim still awaiting an action, the instance stays Running whatever the SDK said.
            still_open = bool(result.open_tasks) or result.blocked
        except ReplayError as exc:
            # Non-determinism and invalid actions fail at once (NonDeterministicOrchestrationException).
            error = str(exc)
            decisions, outgoing = [], []
            next_id = replayer.next_id
        custom = outcome.get("customStatus")
        if custom is not None:
            state.custom_status = json.dumps(custom, separators=(",", ":"))
            size_kb = len(state.custom_status.encode("utf-16-le")) // 1024
            if size_kb > CUSTOM_STATUS_LIMIT_KB and error is None:
                # SetCustomStatus throws before the shim replays any action: no task is open.
                still_open = False
                decisions, outgoing = [], []
                error = (
                    f"The UTF-16 size of the JSON-serialized payload must not exceed {CUSTOM_STATUS_LIMIT_KB} KB. "
                    f"The current payload size is {size_kb:,} KB."
                )
        state.history = history + decisions
        if terminated is not None:
            if error is not None:  # whatever failed, the terminate wins; nothing the failure produced is sent
                state.history, outgoing = history, []
            await self.checkpoints.finish(
                state, OrchestrationStatus.Terminated, terminated.get("Input"), outgoing, next_id, started_at
            )
        elif still_open:
            await self.checkpoints.running(state, outgoing, started_at)
        elif error is not None:
            failure = f"Orchestrator function '{name}' failed: {error}"
            await self.checkpoints.finish(state, OrchestrationStatus.Failed, failure, [], next_id, started_at)
        elif has_continue:
            await self.checkpoints.continue_as_new(state, continue_as_new, outgoing, next_id, started_at)
        elif outcome.get("isDone"):
            output = outcome.get("output")
            result_text = json.dumps(output, separators=(",", ":")) if output is not None else None
            await self.checkpoints.finish(
                state, OrchestrationStatus.Completed, result_text, outgoing, next_id, started_at
            )
        else:
            await self.checkpoints.running(state, outgoing, started_at)
