"""Queue triggers (with the host's poison-queue behaviour) and timer triggers (NCRONTAB)."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.config import HostConfig
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionInvoker

log = logging.getLogger("devhost.triggers")
PROCESSING_VISIBILITY = 600  # seconds a message stays hidden while its function runs


class QueueListener:
    """Polls one queue like the WebJobs queue listener: batches, backoff, visibility, poison queue."""

    def __init__(
        self,
        spec: FunctionSpec,
        queues: QueueServiceClient,
        config: HostConfig,
        invoker: FunctionInvoker,
        client_binding: Any,
    ) -> None:
        assert spec.queue_name
        self.spec = spec
        self.config = config
        self.invoker = invoker
        self.client_binding = client_binding
        self.queue: QueueClient = queues.get_queue_client(spec.queue_name)
        self.poison: QueueClient = queues.get_queue_client(f"{spec.queue_name}-poison")
        self.running = False
        self.inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.running = True
        self._task = asyncio.create_task(self._poll())

    async def stop(self, grace: float) -> None:
        self.running = False
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=grace)

    async def _poll(self) -> None:
        for queue in (self.queue, self.poison):
            try:
                await queue.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                log.warning("queue %s: %s", queue.queue_name, exc)
        interval = 0.1
        limit = self.config.queue_batch_size + self.config.queue_new_batch_threshold
        while self.running:
            room = limit - len(self.inflight)
            if room <= 0 or len(self.inflight) > self.config.queue_new_batch_threshold:
                await asyncio.sleep(0.05)
                continue
            try:
                count = min(self.config.queue_batch_size, room)
                messages = [
                    m
                    async for m in self.queue.receive_messages(
                        messages_per_page=count, max_messages=count, visibility_timeout=PROCESSING_VISIBILITY
                    )
                ]
            except AzureError as exc:
                log.warning("queue %s: %s", self.queue.queue_name, exc)
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
            if messages:
                interval = 0.1
                continue
            await asyncio.sleep(interval)
            interval = min(interval * 2, self.config.queue_max_polling_interval)

    def _decode(self, text: str) -> bytes:
        if self.config.queue_message_encoding == "base64":
            return base64.b64decode(text.encode("ascii"), validate=True)
        return text.encode("utf-8")

    async def _process(self, message: Any) -> None:
        raw = str(message.content)
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self.config.queue_max_dequeue_count:
            await self._to_poison(message, raw)
            return
        try:
            body = self._decode(raw)
            queue_message = QueueMessage(  # type: ignore[no-untyped-call]
                id=message.id,
                body=body,
                dequeue_count=dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            kwargs: dict[str, Any] = {self.spec.trigger_param: queue_message}
            if self.spec.client_param:
                kwargs[self.spec.client_param] = self.client_binding()
            await self.invoker.invoke(
                self.spec, kwargs, detail=f"queue={self.spec.queue_name}, DequeueCount={dequeue_count}"
            )
        except Exception as exc:  # any failure counts against the dequeue count, as in the host
            log.warning("'%s' failed on message %s (dequeue %d): %s", self.spec.name, message.id, dequeue_count, exc)
            if dequeue_count >= self.config.queue_max_dequeue_count:
                await self._to_poison(message, raw)
            else:
                try:
                    await self.queue.update_message(
                        message, visibility_timeout=int(self.config.queue_visibility_timeout)
                    )
                except AzureError as error:
                    log.warning("could not release message %s: %s", message.id, error)
            return
        try:
            await self.queue.delete_message(message)
        except AzureError as exc:
            log.warning("could not delete message %s: %s", message.id, exc)

    async def _to_poison(self, message: Any, raw: str) -> None:
        log.warning(
            "Message %s has reached MaxDequeueCount of %d; moving it to queue '%s'.",
            message.id,
            self.config.queue_max_dequeue_count,
            self.poison.queue_name,
        )
        await self.poison.send_message(raw)
        await self.queue.delete_message(message)


class TimerRunner:
    def __init__(self, spec: FunctionSpec, invoker: FunctionInvoker, client_binding: Any) -> None:
        self.spec = spec
        self.invoker = invoker
        self.client_binding = client_binding
        self._task: asyncio.Task[None] | None = None
        self.last: datetime | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _next(self, after: datetime) -> datetime:
        if self.spec.schedule is not None:
            return self.spec.schedule.next_after(after)
        from datetime import timedelta

        return after + timedelta(seconds=self.spec.schedule_interval or 60)

    async def _fire(self, past_due: bool) -> None:
        now = datetime.now(UTC)
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": (self.last or now).isoformat(),
                "Next": self._next(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        kwargs: dict[str, Any] = {self.spec.trigger_param: request}
        if self.spec.client_param:
            kwargs[self.spec.client_param] = self.client_binding()
        try:
            await self.invoker.invoke(self.spec, kwargs, detail="timer")
        except Exception:
            log.exception("timer function '%s' failed", self.spec.name)
        self.last = now

    async def _run(self) -> None:
        if self.spec.trigger.get("runOnStartup"):
            await self._fire(False)
        while True:
            now = datetime.now(UTC)
            due = self._next(now)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self._fire(False)
