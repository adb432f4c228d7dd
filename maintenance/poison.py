"""Poison queues nobody listens to: drained by the orphan sweep so nothing piles up unseen.

The host moves a queue message it failed `maxDequeueCount` times to `<queue>-poison` and forgets it.
`jobs-inbox-poison` has a trigger of its own (intake), because a refused submission is what its
users wait for. The two outboxes of the app's own making rarely poison (only while storage or the
Durable client fails for minutes), so a ten-minute sweep serves them at no idle cost, where a trigger
would poll each queue all day:

- `webhook-events-poison`: a job event whose delivery orchestration could not be started. It becomes
  a dead letter with `source: webhook` and the event, so `POST /api/dead-letters/{id}/replay` delivers
  it like any undelivered event; a message that is not an event is recorded as a poison message.
- `jobs-admitted-poison`: an admission notice. The job it names rechecks on its own timer
  (ADMISSION_RECHECK_SECONDS), so the notice is logged and dropped.

Every message is recorded before it is deleted, under an id derived from the message id, so a sweep
that dies in between records it once when the message comes back. A message is read as stored and decoded
here, not by the queue client: one that is not base64 of UTF-8 text (anyone with access to the account can
put one there) must be recorded like any other, not fail every sweep with the messages behind it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from intake.messages import POISON_ATTEMPTS
from intake.webhook_events import read_event
from shared.clock import iso, utc_now
from shared.contracts import DeadLetterRecord
from shared.settings import Settings
from shared.telemetry import log_event
from storage.clients import queue_service
from storage.dead_letters import record_dead_letter
from storage.names import ADMISSIONS_QUEUE, INBOX_POISON_QUEUE, WEBHOOK_EVENTS_QUEUE

POISON_SUFFIX = "-poison"
WEBHOOK_EVENTS_POISON_QUEUE = WEBHOOK_EVENTS_QUEUE + POISON_SUFFIX
ADMISSIONS_POISON_QUEUE = ADMISSIONS_QUEUE + POISON_SUFFIX
BATCH = 32  # messages per GetMessages (the service's maximum)
MAX_PER_SWEEP = 1024
"""Messages taken from one poison queue per sweep; the rest wait ten minutes (a sweep must end well within its
timer's period)."""
INVISIBLE_SECONDS = 120  # long enough to record a message; a sweep that dies lets it come back after this


def message_text(message: QueueMessage) -> str:
    """The message's text: base64 of UTF-8 as the host writes it (host.json `messageEncoding`), else as stored."""
    stored = str(message.content)
    try:
        return base64.b64decode(stored, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, text that is not ASCII, bytes that are not UTF-8: all ValueErrors
        return stored


def _webhook_dead_letter(message: QueueMessage) -> DeadLetterRecord:
    text = message_text(message)
    record: DeadLetterRecord = {
        "id": f"webhook-poison-{message.id}",
        "source": "poison",
        "job_id": None,
        "kind": None,
        "input_ref": None,
        "input_content_type": None,
        "options": None,
        "error_type": "poison_message",
        "reason": f"the webhook delivery could not be started after {POISON_ATTEMPTS} attempts",
        "attempts": POISON_ATTEMPTS,
        "raw_message": text,
        "created_at": iso(utc_now()),
    }
    try:
        event = read_event(text.encode("utf-8"))
    except ValueError:
        record["reason"] = "a webhook-events message that is not a job event"
        return record
    record["source"] = "webhook"
    record["job_id"] = event["job_id"]
    record["kind"] = event["kind"]
    record["raw_message"] = None
    record["webhook"] = event
    return record


def _drain(settings: Settings, queue_name: str, handle: Callable[[QueueMessage], None]) -> int:
    queue: QueueClient = queue_service(settings).get_queue_client(queue_name)  # decoded by message_text
    handled = 0
    with queue:
        while handled < MAX_PER_SWEEP:
            try:
                messages = list(
                    queue.receive_messages(
                        messages_per_page=BATCH, visibility_timeout=INVISIBLE_SECONDS, max_messages=BATCH
                    )
                )
            except ResourceNotFoundError:
                return handled  # the host creates a poison queue with its first message: none yet
            if not messages:
                return handled
            for message in messages:
                handle(message)
                queue.delete_message(message)
                handled += 1
    return handled


def report_unread_intake_poison(settings: Settings) -> int:
    """How many messages wait in `jobs-inbox-poison` at sweep time, logged as `intake.poison_unread` if any.

    Its trigger records a readable message within seconds, so one still there is one no trigger can read:
    not base64 (host.json `messageEncoding`), which the host moves there at once and then cannot decode
    there either (Azure/azure-sdk-for-net, WebJobs Storage Queues `MessageDecodingFailed` handler:
    `HandlePoisonMessageAsync`, and a poison queue has no poison queue of its own), or one that waits for
    storage to come back. The sweep cannot take it: the trigger's listener holds it invisible and takes it
    again within seconds of its reappearing. So it is reported, for an operator (docs/operations.md).
    """
    queue = queue_service(settings).get_queue_client(INBOX_POISON_QUEUE)
    with queue:
        try:
            waiting = int(queue.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0  # created by the host with its first poison message
    if waiting:
        log_event("intake.poison_unread", logging.WARNING, messages=waiting)
    return waiting


def drain_poison_queues(settings: Settings) -> dict[str, int]:
    """Record or drop what waits in the outboxes' poison queues; how many messages each held."""

    def webhook(message: QueueMessage) -> None:
        record = _webhook_dead_letter(message)
        record_dead_letter(settings, record)
        log_event("webhook.poison", logging.WARNING, record_id=record["id"], job_id=record["job_id"])

    def notice(message: QueueMessage) -> None:
        log_event("admission.notice_poisoned", logging.WARNING, job_id=message_text(message)[:64])

    return {
        WEBHOOK_EVENTS_POISON_QUEUE: _drain(settings, WEBHOOK_EVENTS_POISON_QUEUE, webhook),
        ADMISSIONS_POISON_QUEUE: _drain(settings, ADMISSIONS_POISON_QUEUE, notice),
    }
