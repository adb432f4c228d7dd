"""Queue intake (system to system): `jobs-inbox` takes the same request as POST /api/jobs.

A message is the JSON envelope of POST /api/jobs plus an `idempotency_key`; the same key through
either door names the same job. A message that cannot be submitted fails; after `maxDequeueCount`
tries the host moves it to `jobs-inbox-poison`, whose trigger records it as a dead letter (so
GET /api/dead-letters lists it with its raw text) and, by succeeding, removes it.

The poison trigger must never fail for good: a poison queue has no poison queue of its own, so a
message it keeps failing on comes back after every visibility timeout, forever. It fails only while
storage is unreachable (the message then waits for storage to return); anything else is logged.

Backpressure is no failure: when too many jobs wait for admission (QueueFull), the message goes back
on `jobs-inbox`, invisible for the Retry-After the API would answer, carrying the idempotency key it
was submitted under (its own, or the one its message id gave it), and the delivery succeeds. Its
dequeue count starts afresh, so however long the backlog lasts the message is never poisoned, and a
crash between the two steps leaves two messages with one key: one job.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.storage.queue import TextBase64EncodePolicy

from intake.messages import KEY_FIELD, POISON_ATTEMPTS, diagnose, read_inbox_message, reason
from jobs.errors import JobsError, QueueFull
from jobs.submit import request_from_body, submit_job
from shared.clock import iso, utc_now
from shared.contracts import DeadLetterRecord
from shared.settings import get_settings
from shared.telemetry import log_event
from storage.clients import StorageClients, storage_clients
from storage.dead_letters import record_dead_letter
from storage.names import INBOX_POISON_QUEUE, INBOX_QUEUE

blueprint = df.Blueprint()

STORAGE_CONNECTION = "AzureWebJobsStorage"
TRANSIENT = (ServiceRequestError, ServiceResponseError, TimeoutError, ConnectionError)
"""Failures that a later try can fix: the poison trigger lets the message come back for these only."""


@blueprint.queue_trigger(arg_name="msg", queue_name=INBOX_QUEUE, connection=STORAGE_CONNECTION)
@blueprint.durable_client_input(client_name="client")
async def intake_job(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Submit the job a message asks for; raise (so the host retries, then poisons) if it cannot."""
    settings = get_settings()
    message_id = msg.id or _body_id(msg.get_body())
    try:
        body, key = read_inbox_message(msg.get_body(), message_id)
        clients = await storage_clients(settings)
        request = await request_from_body(
            body, settings=settings, clients=clients, idempotency_key=key, source="queue", client=INBOX_QUEUE
        )
        submitted = await submit_job(client, clients, request)
    except QueueFull as full:
        await _put_back(clients, msg.get_body(), key, full.retry_after)
        log_event("intake.deferred", message_id=message_id, retry_after=full.retry_after)
        return
    except JobsError as error:
        log_event("intake.rejected", message_id=message_id, error=type(error).__name__,
                  dequeue_count=msg.dequeue_count)  # fmt: skip
        raise RuntimeError(reason(error)) from None
    log_event("intake.accepted", message_id=message_id, job_id=submitted.record["job_id"],
              created=submitted.created)  # fmt: skip


async def _put_back(clients: StorageClients, raw: bytes, key: str, delay_seconds: int) -> None:
    """Send the message again, invisible for `delay_seconds`, keyed as it was submitted."""
    document = json.loads(raw)
    document[KEY_FIELD] = key
    queue = clients.queues.get_queue_client(INBOX_QUEUE, message_encode_policy=TextBase64EncodePolicy())
    await queue.send_message(json.dumps(document), visibility_timeout=delay_seconds)


@blueprint.queue_trigger(arg_name="msg", queue_name=INBOX_POISON_QUEUE, connection=STORAGE_CONNECTION)
async def intake_poison(msg: func.QueueMessage) -> None:
    """Record a poison message as a dead letter; returning normally removes it from the poison queue."""
    raw_bytes = msg.get_body()
    message_id = msg.id or _body_id(raw_bytes)
    try:
        await _dead_letter(raw_bytes, message_id)
    except TRANSIENT:
        raise  # storage is away: the message comes back once it is visible again
    except Exception as exc:  # deterministic: failing again would loop forever, so log it and let it go
        logging.getLogger("longrun").exception("poison message %s could not be dead-lettered", message_id)
        log_event("intake.poison_dropped", level=logging.ERROR, message_id=message_id, error=type(exc).__name__)


async def _dead_letter(raw_bytes: bytes, message_id: str) -> None:
    settings = get_settings()
    clients = await storage_clients(settings)
    try:
        kind, why = await diagnose(raw_bytes, settings, clients)
    except TRANSIENT:
        raise
    except Exception as exc:  # a check that crashes must not keep the message from its dead letter
        kind, why = None, f"the message could not be diagnosed ({type(exc).__name__})"
    record: DeadLetterRecord = {
        "id": f"poison-{message_id}",
        "source": "poison",
        "job_id": None,
        "kind": kind,
        "input_ref": None,
        "input_content_type": None,
        "options": None,
        "error_type": "poison_message",
        "reason": why,
        "attempts": POISON_ATTEMPTS,
        "raw_message": raw_bytes.decode("utf-8", errors="replace"),
        "created_at": iso(utc_now()),
    }
    await asyncio.to_thread(record_dead_letter, settings, record)
    log_event("intake.poison", message_id=message_id, kind=kind)


def _body_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]
