"""Dead letters: reading them, and replaying a failed job as a new job with the same kind, options and input."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from jobs import durable
from jobs.errors import Conflict, NotFound
from jobs.requests import JobRequest, key_hash
from jobs.submit import Submitted, parse_options, resolve_kind, submit_job
from shared.contracts import (
    WEBHOOK_DELIVERY_ORCHESTRATOR,
    DeadLetterRecord,
    RetryPolicy,
    WebhookDeliveryInput,
    WebhookEvent,
)
from shared.settings import Settings
from shared.telemetry import log_event
from storage import dead_letters
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER
from webhooks.events import delivery_instance_id


async def list_dead_letters(clients: StorageClients, *, limit: int, after: str | None) -> dead_letters.DeadLetterPage:
    """Newest dead letters first; `after` is a previous page's continuation."""
    return await dead_letters.list_dead_letters(clients.dead_letters, limit=limit, after=after)


async def get_dead_letter(clients: StorageClients, record_id: str) -> DeadLetterRecord:
    """The dead letter; NotFound if there is none."""
    record = await dead_letters.get_dead_letter(clients.dead_letters, record_id)
    if record is None:
        raise NotFound("no such dead letter")
    return record


async def replay(
    client: Any, clients: StorageClients, settings: Settings, record_id: str, idempotency_key: str | None
) -> Submitted:
    """Submit the dead-lettered job again; Conflict if it cannot be replayed."""
    record = await get_dead_letter(clients, record_id)
    if record["source"] == "webhook":
        raise Conflict("a webhook dead letter is replayed by delivering its event again", slug="webhook-dead-letter")
    if record["source"] != "job" or not record["kind"]:
        raise Conflict("only a failed job can be replayed; a poison message must be fixed and sent again")
    kind = resolve_kind(record["kind"], settings)
    options = parse_options(kind, record["options"] or {})
    if kind.requires_input:
        if not record["input_ref"]:
            raise Conflict("this dead letter kept no input to replay")
        try:
            await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"]).get_blob_properties()
        except ResourceNotFoundError:
            raise Conflict("the job's input is no longer kept (retention)", slug="input-gone") from None
    request = JobRequest(
        kind=record["kind"],
        options=options,
        deadline_seconds=None,
        input_bytes=None,
        input_ref=record["input_ref"] if kind.requires_input else None,
        input_content_type=record["input_content_type"] if kind.requires_input else None,
        idempotency_key=idempotency_key,
        source="replay",
    )
    return await submit_job(client, clients, request)


@dataclass(frozen=True)
class WebhookReplay:
    """A webhook dead letter's event, being delivered again."""

    record: DeadLetterRecord
    event: WebhookEvent
    started: bool  # False: an earlier replay with the same Idempotency-Key is that delivery


async def replay_webhook(
    client: Any, clients: StorageClients, record_id: str, idempotency_key: str | None, retry: RetryPolicy
) -> WebhookReplay:
    """Deliver a webhook dead letter's event again: the same body and webhook-id, a new delivery orchestration."""
    record = await get_dead_letter(clients, record_id)
    event = record.get("webhook")
    if record["source"] != "webhook" or not event:
        raise Conflict("this dead letter is not an undelivered webhook")
    suffix = key_hash(idempotency_key)[:16] if idempotency_key is not None else uuid.uuid4().hex[:16]
    instance_id = f"{delivery_instance_id(event['webhook_id'])}-replay-{suffix}"
    delivery: WebhookDeliveryInput = {"event": event, "retry": retry}
    started = await durable.start_named_unless_exists(client, WEBHOOK_DELIVERY_ORCHESTRATOR, instance_id, delivery)
    log_event("webhook.replayed", job_id=event["job_id"], webhook_id=event["webhook_id"], started=started)
    return WebhookReplay(record, event, started)
