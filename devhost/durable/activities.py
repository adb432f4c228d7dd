"""The activity dispatcher: work items in, worker-process calls, TaskCompleted/TaskFailed out."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from devhost.durable.history import EventType, compact_json, event, utcnow
from devhost.durable.polling import stop_polls
from devhost.durable.store import QueuedMessage, TaskHubStore
from devhost.durable.timings import DurableTimings
from devhost.sanitizer import sanitize
from devhost.workers import ActivityFailure, WorkerCrashed, WorkerPool

if TYPE_CHECKING:
    from devhost.durable.engine import OrchestrationEngine

log = logging.getLogger("devhost.activities")


class ActivityDispatcher:
    """Runs activity work items in the worker processes and reports their completions."""

    def __init__(
        self,
        store: TaskHubStore,
        pool: WorkerPool,
        engine: OrchestrationEngine,
        *,
        max_concurrent: int,
        max_polling_interval: float,
        function_timeout: float | None,
        timings: DurableTimings | None = None,
    ) -> None:
        # A running activity's work item stays hidden for this long, renewed while it runs (DTFx's
        # WorkItemQueueVisibilityTimeout): after a crash it comes back within that time.
        self.timings = timings or DurableTimings.load()
        self.store = store
        self.pool = pool
        self.engine = engine
        self.max_concurrent = max(1, max_concurrent)
        self.max_polling_interval = max(0.05, max_polling_interval)
        self.function_timeout = function_timeout
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.reserved = 0  # slots promised to work items being sent with a lease
        self.wake_event = asyncio.Event()
        # Whether work items may be waiting in the queue for a free slot: one was sent without a lease, or
        # the last receive was full. Only then does a finished activity poll at once; otherwise the queue is
        # polled on the backoff alone, as DTFx's work-item dispatcher does (every completion used to poll
        # an empty queue, about two receives per job).
        self.backlog = True
        self._backlog_marks = 0
        self.running = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New work items are in the queue: poll now."""
        self.backlog = True
        self._backlog_marks += 1
        self.wake_event.set()

    def reserve(self) -> bool:
        """Promise a slot to a work item the engine is about to send with a lease."""
        if self.running and len(self.inflight) + self.reserved < self.max_concurrent:
            self.reserved += 1
            return True
        return False

    def deliver(self, message: QueuedMessage | None) -> None:
        """Run a work item sent with a reserved slot (None: the send failed; free the slot)."""
        self.reserved -= 1
        if message is not None and message.message_id not in self.inflight:
            self.inflight[message.message_id] = asyncio.create_task(self._execute(message))

    def start(self) -> None:
        """Start polling the work-item queue."""
        self.running = True
        self._task = asyncio.create_task(self._poll())

    async def stop(self, grace: float) -> None:
        """Stop polling and let running activities finish within `grace` seconds (a poll still waiting on
        storage is cancelled: devhost.durable.polling)."""
        deadline = time.monotonic() + grace
        self.running = False
        self.wake_event.set()
        if self._task:
            await stop_polls([self._task], grace)
        if self.inflight:
            await asyncio.wait(list(self.inflight.values()), timeout=max(0.0, deadline - time.monotonic()))

    async def _poll(self) -> None:
        interval = 0.05
        while self.running:
            free = self.max_concurrent - len(self.inflight) - self.reserved
            if free <= 0:
                await self._sleep(1.0)
                continue
            wanted, marks = min(32, free), self._backlog_marks
            try:
                messages = await self.store.receive(self.store.workitems, wanted, self.timings.work_item_visibility)
            except AzureError as exc:
                log.warning("work-item queue: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if len(messages) < wanted and marks == self._backlog_marks:
                self.backlog = False  # the queue had no more than this (nothing was sent since we asked)
            elif len(messages) == wanted:
                self.backlog = True
            for message in messages:
                if message.message_id in self.inflight:
                    continue
                self.inflight[message.message_id] = asyncio.create_task(self._execute(message))
            if messages:
                interval = 0.05
                continue
            interval = min(interval * 2, self.max_polling_interval)
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.wake_event.wait(), seconds)
        except TimeoutError:
            pass
        self.wake_event.clear()

    async def _execute(self, message: QueuedMessage) -> None:
        try:
            await self._run(message)
        except Exception:
            log.exception("activity work item %s failed in the host; it will be redelivered", message.message_id)
            try:
                await self.store.abandon(message, 2)
            except AzureError:
                pass
        finally:
            self.inflight.pop(message.message_id, None)
            if self.backlog or not self.running:
                self.wake_event.set()  # a slot is free for a work item known to be waiting

    async def _renew(self, message: QueuedMessage) -> None:
        while True:
            await asyncio.sleep(self.timings.work_item_renew_interval)
            try:
                await self.store.renew(message, self.timings.work_item_visibility)
            except AzureError as exc:
                log.warning("could not renew work item %s: %s", message.message_id, exc)

    async def _run(self, message: QueuedMessage) -> None:
        scheduled = message.event
        if scheduled.get("EventType") != EventType.TaskScheduled:
            await self.store.delete(message)
            return
        name = str(scheduled.get("Name"))
        inputs = json.loads(scheduled.get("Input") or "[null]")
        input_text = inputs[0] if inputs else None
        started = time.perf_counter()
        log.info(
            "Executing 'Functions.%s' (Reason='(null)', Id=%s:%s)", name, message.instance_id, scheduled["EventId"]
        )
        renewer = asyncio.create_task(self._renew(message))
        try:
            result = await self.pool.call(name, input_text, self.function_timeout)
            completion = event(
                EventType.TaskCompleted, utcnow(), TaskScheduledId=scheduled["EventId"], Result=compact_json(result)
            )
            outcome = "Succeeded"
        except ActivityFailure as failure:
            completion = _failed(scheduled["EventId"], name, failure.type_name, failure.message, failure.stack)
            outcome = "Failed"
        except TimeoutError:
            timeout = self.function_timeout or 0
            text = f"Timeout value of {_timespan(timeout)} was exceeded by function: Functions.{name}"
            completion = _timed_out(scheduled["EventId"], name, text)
            outcome = "Failed"
        except WorkerCrashed:
            # The host aborts the work item instead of failing the task: it is redelivered.
            await self.store.abandon(message, 1)
            log.warning("Executed 'Functions.%s' (Aborted, Id=%s): worker exited", name, message.instance_id)
            return
        finally:
            renewer.cancel()
        if not self.engine.accept_completion(message, completion):
            await self.engine.enqueue(message.instance_id, message.execution_id, completion)
            await self.store.delete(message)
        duration = (time.perf_counter() - started) * 1000
        log.info(
            "Executed 'Functions.%s' (%s, Id=%s:%s, Duration=%dms)",
            name,
            outcome,
            message.instance_id,
            scheduled["EventId"],
            duration,
        )


def _failed(task_id: int, name: str, type_name: str, message: str, stack: str) -> dict[str, object]:
    # The host's shape: Reason is the friendly message, Details the serialized RpcException, whose
    # constructor runs the worker's message through the host's Sanitizer.
    remote = sanitize(f"{type_name}: {message}")
    details = {
        "$type": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException, Microsoft.Azure.WebJobs.Script",
        "Message": f"Result: Failure\nException: {remote}\nStack: {stack}",
        "RemoteMessage": remote,
        "RemoteTypeName": type_name,
    }
    return event(
        EventType.TaskFailed,
        utcnow(),
        TaskScheduledId=task_id,
        Reason=f"Activity function '{name}' failed: {remote}",
        Details=json.dumps(details, separators=(",", ":")),
        FailureDetails=None,
    )


def _timed_out(task_id: int, name: str, text: str) -> dict[str, object]:
    # TaskActivityShim reports the host's own FunctionTimeoutException: its message, no type prefix.
    details = {
        "$type": "Microsoft.Azure.WebJobs.Host.FunctionTimeoutException, Microsoft.Azure.WebJobs.Host",
        "ClassName": "Microsoft.Azure.WebJobs.Host.FunctionTimeoutException",
        "Message": text,
    }
    return event(
        EventType.TaskFailed,
        utcnow(),
        TaskScheduledId=task_id,
        Reason=f"Activity function '{name}' failed: {text}",
        Details=json.dumps(details, separators=(",", ":")),
        FailureDetails=None,
    )


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
