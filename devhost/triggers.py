"""Queue triggers (with the host's poison-queue behaviour) and timer triggers (NCRONTAB)."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.config import HostConfig
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionInvoker

log = logging.getLogger("devhost.triggers")
POISON_SUFFIX = "-poison"
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


def poison_queue_name(queue: str) -> str | None:
    """The queue a trigger moves poison messages to, or None when it has none.

    As `QueueListenerFactory.CreatePoisonQueueReference` (Microsoft.Azure.WebJobs.Extensions.Storage.Queues):
    no poison queue for a queue that is itself a poison queue (name ends in "-poison") or when the name
    with "-poison" added would not be a valid queue name (3-63 characters).
    """
    if queue.endswith(POISON_SUFFIX):
        return None
    name = queue + POISON_SUFFIX
    return name if len(name) <= 63 and _QUEUE_NAME.match(name) else None


class QueueListener:
    """Polls one queue as the WebJobs `QueueListener` and `QueueProcessor` do.

    Batches and backoff; each message is received hidden for 10 minutes and that visibility is renewed at
    half-time while the function runs (`CreateUpdateMessageVisibilityTimer`); a failed message is released
    with `visibilityTimeout` or, after `maxDequeueCount` failures, moved to the poison queue
    (`CompleteProcessingMessageAsync`); a message that is not valid base64 goes to the poison queue without
    an invocation (the extension's `MessageDecodingFailed` handler). A queue with no poison queue leaves a
    failed message invisible instead, so it comes back after the 10 minutes, for ever.
    """

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
        self.visibility = int(max(1, config.queue_listener_visibility))
        self.queue: QueueClient = queues.get_queue_client(spec.queue_name)
        poison = poison_queue_name(spec.queue_name)
        self.poison: QueueClient | None = queues.get_queue_client(poison) if poison else None
        self.running = False
        self.inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling."""
        self.running = True
        self._task = asyncio.create_task(self._poll())

    async def stop(self, grace: float) -> None:
        """Stop polling and give messages in flight up to `grace` seconds to finish."""
        self.running = False
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=grace)

    async def _poll(self) -> None:
        for queue in (self.queue, self.poison):
            if queue is None:
                continue
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
                        messages_per_page=count, max_messages=count, visibility_timeout=self.visibility
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

    def _decode(self, text: str) -> bytes | None:
        if self.config.queue_message_encoding == "base64":
            try:
                return base64.b64decode(text.encode("ascii"), validate=True)
            except (ValueError, UnicodeEncodeError):
                return None
        return text.encode("utf-8")

    async def _process(self, message: Any) -> None:
        raw = str(message.content)
        dequeue_count = int(message.dequeue_count or 1)
        receipt = _Receipt(message.id, message.pop_receipt)
        body = self._decode(raw)
        if body is None:
            log.warning("Message decoding has failed! Check MessageEncoding settings. MessageId=%s.", message.id)
            await self._to_poison(receipt, raw)
            return
        if dequeue_count > self.config.queue_max_dequeue_count:
            # BeginProcessingMessageAsync: never invoked again; without a poison queue it just stays.
            await self._to_poison(receipt, raw)
            return
        payload: dict[str, Any] = {
            "id": message.id,
            "body": body,
            "dequeue_count": dequeue_count,
            "expiration_time": message.expires_on,
            "insertion_time": message.inserted_on,
            "time_next_visible": message.next_visible_on,
            "pop_receipt": message.pop_receipt,
        }
        if self.spec.client_param:
            payload["client"] = self.client_binding()
        renewer = asyncio.create_task(self._renew(receipt))
        try:
            await self.invoker.invoke(
                self.spec, "queue", payload, detail=f"queue={self.spec.queue_name}, DequeueCount={dequeue_count}"
            )
        except Exception as exc:  # any failure counts against the dequeue count, as in the host
            log.warning("'%s' failed on message %s (dequeue %d): %s", self.spec.name, message.id, dequeue_count, exc)
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self._failed(receipt, raw, dequeue_count)
            return
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        try:
            await self.queue.delete_message(receipt.message_id, pop_receipt=receipt.pop_receipt)
        except AzureError as exc:
            log.warning("could not delete message %s: %s", message.id, exc)

    async def _renew(self, receipt: _Receipt) -> None:
        """Keep the message hidden while its function runs: renew at half the visibility, as the host does."""
        while True:
            await asyncio.sleep(self.visibility / 2)
            try:
                updated = await self.queue.update_message(
                    receipt.message_id, pop_receipt=receipt.pop_receipt, visibility_timeout=self.visibility
                )
                receipt.pop_receipt = updated.pop_receipt
            except AzureError as exc:
                log.warning("could not renew the visibility of message %s: %s", receipt.message_id, exc)

    async def _failed(self, receipt: _Receipt, raw: str, dequeue_count: int) -> None:
        if self.poison is None:
            # "For queues without a corresponding poison queue, leave the message invisible when processing
            # fails to prevent a fast infinite loop" (QueueProcessor.CompleteProcessingMessageAsync).
            return
        if dequeue_count >= self.config.queue_max_dequeue_count:
            await self._to_poison(receipt, raw)
            return
        try:
            await self.queue.update_message(
                receipt.message_id,
                pop_receipt=receipt.pop_receipt,
                visibility_timeout=int(self.config.queue_visibility_timeout),
            )
        except AzureError as error:
            log.warning("could not release message %s: %s", receipt.message_id, error)

    async def _to_poison(self, receipt: _Receipt, raw: str) -> None:
        if self.poison is None:
            return  # HandlePoisonMessageAsync does nothing without a poison queue: the message stays
        log.warning(
            "Message %s has reached MaxDequeueCount of %d; moving it to queue '%s'.",
            receipt.message_id,
            self.config.queue_max_dequeue_count,
            self.poison.queue_name,
        )
        try:
            await self.poison.create_queue()
        except ResourceExistsError:
            pass
        await self.poison.send_message(raw)
        await self.queue.delete_message(receipt.message_id, pop_receipt=receipt.pop_receipt)


@dataclass
class _Receipt:
    """A message being processed and its latest pop receipt (each visibility update issues a new one)."""

    message_id: str
    pop_receipt: str | None


class TimerRunner:
    """Fires one timer function on its NCRONTAB schedule or TimeSpan interval."""

    def __init__(self, spec: FunctionSpec, invoker: FunctionInvoker, client_binding: Any) -> None:
        self.spec = spec
        self.invoker = invoker
        self.client_binding = client_binding
        self._task: asyncio.Task[None] | None = None
        self.last: datetime | None = None

    def start(self) -> None:
        """Start the schedule."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the schedule (an invocation in flight is cancelled with it)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _next(self, after: datetime) -> datetime:
        if self.spec.schedule is not None:
            return self.spec.schedule.next_after(after)
        return after + timedelta(seconds=self.spec.schedule_interval or 60)

    async def _fire(self, past_due: bool) -> None:
        now = datetime.now(UTC)
        payload: dict[str, Any] = {
            "past_due": past_due,
            "schedule_status": {
                "Last": (self.last or now).isoformat(),
                "Next": self._next(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            "schedule": {"AdjustForDST": True},
        }
        if self.spec.client_param:
            payload["client"] = self.client_binding()
        try:
            await self.invoker.invoke(self.spec, "timer", payload, detail="timer")
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
