"""The webhook delivery orchestration: one event to one callback, until delivered or dead-lettered.

Started per event from the `webhook-events` queue (instance id `webhook-<webhook id>`), never as a
sub-orchestration: the Functions host keeps a parent Running while a child it scheduled is open, so a
job waiting for its deliveries (or a breaker's open period) would show RUNNING long after it ended.
The job's outcome is recorded before its event is announced; nothing here can change it.

Each attempt is the deliver_webhook activity. Retryable answers (5xx, 429, no answer) back off on
durable timers with the project's backoff (orchestrators.retry), at least as long as the receiver's
Retry-After; other 4xx, a redirect, or a URL that the guard now refuses (its DNS changed) end at once.
While the host's circuit breaker is open the delivery waits on a durable timer without calling and
without spending an attempt. After the last attempt the event becomes a dead letter that
POST /api/dead-letters/{id}/replay delivers again with the same webhook-id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrators.retry import backoff_seconds, policy_from
from orchestrators.steps import Orchestration, StepFailed, call_step, failed
from shared.contracts import (
    DEAD_LETTER_WEBHOOK,
    DELIVER_WEBHOOK,
    DeliverInput,
    DeliverOutput,
    JobError,
    WebhookDeadLetterInput,
    WebhookDeliveryInput,
    WebhookDeliveryOutput,
)
from shared.failures import classify_failure
from shared.telemetry import log_event

MAX_BREAKER_WAITS = 100
"""Open-breaker waits before a delivery gives up (about 100 open periods: the host is gone, not flaky)."""


def max_breaker_waits() -> int:
    """MAX_BREAKER_WAITS, read when used (tests lower it)."""
    return MAX_BREAKER_WAITS


def _dead_letter_input(context: Any, delivery: WebhookDeliveryInput, error: JobError) -> WebhookDeadLetterInput:
    return {"record_id": context.instance_id, "event": delivery["event"], "error": error}


def webhook_delivery_orchestration(context: Any) -> Orchestration:
    """Deliver one WebhookEvent; returns a WebhookDeliveryOutput."""
    delivery: WebhookDeliveryInput = context.get_input()
    event = delivery["event"]
    policy = policy_from(delivery.get("retry"))
    attempt, breaker_waits = 1, 0
    error: JobError
    while True:
        attempt_input: DeliverInput = {"event": event, "attempt": attempt}
        task = context.call_activity(DELIVER_WEBHOOK, attempt_input)
        try:
            yield task
        except Exception:  # noqa: S110 - a failed activity is read from the task below
            pass
        if failed(task):
            verdict: DeliverOutput = {
                "outcome": "retry",
                "status": None,
                "retry_after": None,
                "wait_seconds": None,
                "reason": classify_failure(task.result).message,
            }
        else:
            verdict = task.result
        outcome = verdict["outcome"]
        if outcome == "delivered":
            done: WebhookDeliveryOutput = {"status": "delivered", "attempts": attempt}
            return done
        if outcome == "breaker_open":
            breaker_waits += 1
            if breaker_waits > max_breaker_waits():
                error = {"type": "webhook_breaker_open", "message": verdict["reason"], "attempts": attempt - 1}
                break
            wait = float(verdict.get("wait_seconds") or 1.0)
            yield context.create_timer(context.current_utc_datetime + timedelta(seconds=wait))
            continue
        if outcome in ("rejected", "refused"):
            error_type = "webhook_rejected" if outcome == "rejected" else "webhook_refused"
            error = {"type": error_type, "message": verdict["reason"], "attempts": attempt}
            break
        if attempt >= policy["max_attempts"]:
            error = {"type": "webhook_retries_exhausted", "message": verdict["reason"], "attempts": attempt}
            break
        delay = max(backoff_seconds(policy, context.instance_id, "webhook", attempt), verdict.get("retry_after") or 0.0)
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
        attempt += 1
    try:
        yield from call_step(
            context, DEAD_LETTER_WEBHOOK, _dead_letter_input(context, delivery, error), policy, "webhook-dead-letter"
        )
    except StepFailed as failure:
        if not context.is_replaying:
            log_event("webhook.deadletter_failed", webhook_id=event["webhook_id"], error_type=failure.error["type"])
    output: WebhookDeliveryOutput = {"status": "dead_lettered", "attempts": error["attempts"], "reason": error["type"]}
    return output
