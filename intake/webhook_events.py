"""The `webhook-events` queue (the outbox of job events): each message starts that event's delivery.

The job orchestration announces an event as its last step (activities.webhooks.announce_job_event);
this trigger starts the delivery orchestration under an id derived from the event's webhook-id, so a
message delivered twice (queues are at least once) still makes one delivery. A terminal event waits
here (at most TERMINAL_WAIT_SECONDS) until the job's own instance has ended, so a receiver that reads
the job on hearing of its end finds it finished.
"""

from __future__ import annotations

import json
import logging

import azure.durable_functions as df
import azure.functions as func

from jobs import durable
from shared.contracts import WEBHOOK_DELIVERY_ORCHESTRATOR, WebhookDeliveryInput, WebhookEvent
from shared.settings import get_settings
from shared.telemetry import log_event
from storage.names import WEBHOOK_EVENTS_QUEUE
from webhooks.events import delivery_instance_id, delivery_policy

blueprint = df.Blueprint()

TERMINAL_WAIT_SECONDS = 30.0
_EVENT_FIELDS = ("webhook_id", "job_id", "kind", "type", "url", "payload")


def read_event(body: bytes) -> WebhookEvent:
    """The event a message carries; ValueError if it is not one (the host then retries and poisons it)."""
    data = json.loads(body)
    if not isinstance(data, dict) or any(not data.get(key) for key in _EVENT_FIELDS):
        raise ValueError("not a webhook event")
    event: WebhookEvent = {key: data[key] for key in _EVENT_FIELDS}  # type: ignore[assignment]
    if isinstance(data.get("traceparent"), str):
        event["traceparent"] = data["traceparent"]  # the job's trace, so the delivery joins it
    return event


@blueprint.queue_trigger(arg_name="msg", queue_name=WEBHOOK_EVENTS_QUEUE, connection="AzureWebJobsStorage")
@blueprint.durable_client_input(client_name="client")
async def start_webhook_delivery(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Start the event's delivery orchestration (once per webhook-id)."""
    event = read_event(msg.get_body())
    if event["type"] != "job.progress" and not await durable.wait_until_finished(
        client, event["job_id"], TERMINAL_WAIT_SECONDS
    ):
        log_event("webhook.job_not_finished", level=logging.WARNING, job_id=event["job_id"])
    delivery: WebhookDeliveryInput = {"event": event, "retry": delivery_policy(get_settings())}
    instance_id = delivery_instance_id(event["webhook_id"])
    started = await durable.start_named_unless_exists(client, WEBHOOK_DELIVERY_ORCHESTRATOR, instance_id, delivery)
    log_event("webhook.delivery_started", job_id=event["job_id"], webhook_id=event["webhook_id"], started=started)
