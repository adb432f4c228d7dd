"""The webhook steps: announce a job's event (the outbox), deliver one attempt, dead-letter an event.

announce_job_event runs inside the job orchestration and only enqueues: the delivery itself runs in an
orchestration of its own (orchestrators.webhook), started from the `webhook-events` queue, so neither
a slow receiver nor an open breaker ever holds a job's terminal state back.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.storage.queue import TextBase64EncodePolicy

from activities.resources import ensure_local_resources
from shared.clock import iso, utc_now
from shared.contracts import (
    AnnounceInput,
    DeadLetterRecord,
    DeliverOutput,
    JobError,
    WebhookEvent,
)
from shared.settings import Settings, get_settings
from shared.telemetry import log_event, record_breaker_state, record_webhook_delivery
from shared.tracing import webhook_delivery_span
from storage import breakers, dead_letters
from storage.clients import queue_service
from storage.names import WEBHOOK_EVENTS_QUEUE
from webhooks import events, sender
from webhooks.guard import CallbackRefused, Resolver, check_destination, resolve_host

MAX_EVENT_CHARS = 40_000
"""A queue message holds 64 KiB once base64-encoded; an event larger than this drops the job's result summary."""


def announce_job_event(payload: AnnounceInput) -> str | None:
    """Put the job's event on the webhook-events queue if its callback subscribed to it; returns the webhook id."""
    start = payload["start"]
    callback = start.get("callback")
    event_name = payload["event"]
    if not callback or event_name not in callback["events"]:
        return None
    settings = get_settings()
    ensure_local_resources(settings)
    event = events.job_event(
        start,
        callback["url"],
        event_name,
        payload.get("outcome"),
        int(payload.get("completed", 0)),
        int(payload.get("total", 0)),
        utc_now(),
        settings.public_base_url,
    )
    event["traceparent"] = start.get("traceparent")
    text = json.dumps(event)
    if len(text) > MAX_EVENT_CHARS:
        event["payload"]["data"]["result"] = {"truncated": True}
        text = json.dumps(event)
    queue = queue_service(settings).get_queue_client(
        WEBHOOK_EVENTS_QUEUE, message_encode_policy=TextBase64EncodePolicy()
    )
    with queue:
        queue.send_message(text)
    log_event("webhook.announced", job_id=start["job_id"], webhook_id=event["webhook_id"], type=event["type"])
    return event["webhook_id"]


def _verdict(
    outcome: str, reason: str, status: int | None = None, retry_after: float | None = None, wait: float | None = None
) -> DeliverOutput:
    return {
        "outcome": outcome,  # type: ignore[typeddict-item]
        "status": status,
        "retry_after": retry_after,
        "wait_seconds": wait,
        "reason": reason,
    }


def _record(settings: Settings, key: str, *, success: bool) -> str:
    """Record the attempt in the breaker; a storage failure here must not turn an answered POST into a retry."""
    try:
        state = breakers.record(settings, key, success=success, now=utc_now())
    except Exception as exc:  # the breaker is advisory: the receiver's answer is what counts
        log_event("webhook.breaker_unrecorded", logging.WARNING, breaker=key, error=type(exc).__name__)
        return "unknown"
    record_breaker_state(key, state)
    return state


def basic_authorization(url: str) -> dict[str, str]:
    """An Authorization: Basic header from the URL's userinfo (the only place it is used; logs never show it)."""
    parts = urlsplit(url)
    if parts.username is None:
        return {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def deliver_webhook(event: WebhookEvent, attempt: int, resolve: Resolver = resolve_host) -> DeliverOutput:
    """One attempt: check the URL again (DNS may have changed), ask the host's breaker, POST signed, record.

    The attempt is a span in the job's trace and counts in the webhook delivery metric. Raises only when
    the app itself cannot deliver (no WEBHOOK_SECRET, storage away): the orchestration retries that like a
    failed attempt.
    """
    host = _receiver_host(event["url"])
    with webhook_delivery_span(
        event.get("traceparent"), job_id=event["job_id"], event=event["type"], attempt=attempt, receiver_host=host
    ) as current:
        verdict = _deliver(event, attempt, resolve)
        current.set_attribute("webhook.outcome", verdict["outcome"])
        if verdict["status"] is not None:
            current.set_attribute("http.response.status_code", verdict["status"])
    record_webhook_delivery(verdict["outcome"], event=event["type"], status_code=verdict["status"])
    return verdict


def _receiver_host(url: str) -> str:
    """The receiver's host name alone: what telemetry may carry (a URL's path or query can hold tokens)."""
    try:
        return urlsplit(url).hostname or "<none>"
    except ValueError:
        return "<invalid url>"


def _deliver(event: WebhookEvent, attempt: int, resolve: Resolver) -> DeliverOutput:
    settings = get_settings()
    fields: dict[str, Any] = {"job_id": event["job_id"], "webhook_id": event["webhook_id"], "attempt": attempt}
    try:
        destination = check_destination(event["url"], settings, resolve)
    except CallbackRefused as refused:
        log_event("webhook.refused", logging.WARNING, host=_receiver_host(event["url"]), reason=str(refused), **fields)
        return _verdict("refused", f"callback.url {refused}")
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret.startswith("whsec_"):
        # Unset, the provisioning placeholder, or a Key Vault reference the platform could not resolve.
        raise RuntimeError("WEBHOOK_SECRET is not a whsec_ secret: webhooks cannot be signed")
    ensure_local_resources(settings)
    gate = breakers.acquire(settings, destination.breaker_key, utc_now())
    if not gate.allowed:
        return _verdict(
            "breaker_open", f"the circuit breaker of {destination.breaker_key} is open", wait=gate.wait_seconds
        )
    body = events.body_of(event)
    headers = events.signed_headers(secret, event, body, utc_now())
    headers.update(basic_authorization(event["url"]))
    try:
        answer = sender.post(destination, body, headers)
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors too
        state = _record(settings, destination.breaker_key, success=False)
        log_event("webhook.attempt_failed", logging.WARNING, error=type(exc).__name__, breaker=state, **fields)
        return _verdict("retry", f"no answer from the receiver ({type(exc).__name__})")
    status = answer.status
    failed = status == 429 or status >= 500
    state = _record(settings, destination.breaker_key, success=not failed)
    log_event("webhook.attempt", status=status, breaker=state, probe=gate.probe or None, **fields)
    if 200 <= status < 300:
        return _verdict("delivered", f"the receiver answered {status}", status)
    if failed:
        return _verdict("retry", f"the receiver answered {status}", status, answer.retry_after)
    if 300 <= status < 400:
        return _verdict("rejected", f"the receiver answered {status}; redirects are not followed", status)
    return _verdict("rejected", f"the receiver answered {status}", status)


def dead_letter_webhook(record_id: str, event: WebhookEvent, error: JobError) -> str:
    """Record an event that could not be delivered (idempotent on record_id); returns the record id."""
    record: DeadLetterRecord = {
        "id": record_id,
        "source": "webhook",
        "job_id": event["job_id"],
        "kind": event["kind"],
        "input_ref": None,
        "input_content_type": None,
        "options": None,
        "error_type": error["type"],
        "reason": error["message"],
        "attempts": error["attempts"],
        "raw_message": None,
        "created_at": iso(utc_now()),
        "webhook": event,
    }
    dead_letters.record_dead_letter(get_settings(), record)
    log_event("webhook.deadlettered", logging.WARNING, job_id=event["job_id"], webhook_id=event["webhook_id"],
              error_type=error["type"], attempts=error["attempts"])  # fmt: skip
    return record_id
