"""Structured job events and the app's metrics, for Application Insights (and any OpenTelemetry backend).

`log_event` is the one entry point for events: one record on the `longrun` logger whose message is
`longrun.<event>` and whose fields are log attributes (customDimensions in Application Insights: the
workbook and alerts in infra/ read `customDimensions.event`, `customDimensions.job_id`, ... and never
parse text). When a span is current (a request, an activity), the record carries its trace and span id,
so a job's events sit in its trace. Some events also move a metric (`_EVENT_METRICS`), so the counters
and histograms cannot drift from the events. Values never carry payloads or secrets: ids, kinds, phases,
counts and durations only.

Branches that add their own measurements call `record_queue_wait` (admission), `record_webhook_delivery`
and `record_breaker_state` (webhooks).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

logger = logging.getLogger("longrun")

EVENT_ATTRIBUTE = "event"
"""The attribute that names the event (customDimensions.event)."""

_UNSAFE = re.compile(r"[\s=\"]")
# LogRecord's own attributes: a field named like one of them cannot travel in `extra`.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _value(value: Any) -> str | bool | int | float:
    if isinstance(value, bool | int | float):
        return value
    # One short token: ids, kinds and type names are short; anything long is not meant for telemetry.
    return _UNSAFE.sub("_", str(value))[:200]


def event_attributes(event: str, fields: dict[str, Any]) -> dict[str, str | bool | int | float]:
    """The attributes of one event: its name and its fields (None dropped, reserved names prefixed)."""
    attributes: dict[str, str | bool | int | float] = {EVENT_ATTRIBUTE: event}
    for key, value in fields.items():
        if value is None:
            continue
        attributes[f"field_{key}" if key in _RESERVED or key == EVENT_ATTRIBUTE else key] = _value(value)
    return attributes


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Write one structured event, e.g. log_event("job.completed", job_id=..., duration_ms=...)."""
    attributes = event_attributes(event, fields)
    logger.log(level, "longrun.%s", event, extra=attributes)
    _metrics().on_event(event, attributes)


# --- metrics ------------------------------------------------------------------------------------------


_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class _Metrics:
    """The app's instruments, created on first use (after shared.observability set the meter provider)."""

    def __init__(self) -> None:
        meter = metrics.get_meter("longrun")
        self.submitted = meter.create_counter("longrun.jobs.submitted", unit="{job}", description="Jobs accepted")
        self.completed = meter.create_counter("longrun.jobs.completed", unit="{job}", description="Jobs completed")
        self.failed = meter.create_counter("longrun.jobs.failed", unit="{job}", description="Jobs failed for good")
        self.cancelled = meter.create_counter("longrun.jobs.cancelled", unit="{job}", description="Jobs cancelled")
        self.job_duration = meter.create_histogram(
            "longrun.job.duration", unit="s", description="From the orchestration's start to its outcome"
        )
        self.queue_wait = meter.create_histogram(
            "longrun.job.queue_wait", unit="s", description="From submit until the job was admitted to run"
        )
        self.chunk_duration = meter.create_histogram("longrun.chunk.duration", unit="s", description="One chunk run")
        self.retries = meter.create_counter("longrun.retries", unit="{retry}", description="Step retries scheduled")
        self.dead_letters = meter.create_counter("longrun.dead_letters", unit="{record}", description="Dead letters")
        self.webhook_deliveries = meter.create_counter(
            "longrun.webhook.deliveries", unit="{delivery}", description="Webhook delivery attempts by outcome"
        )
        self._breakers: dict[str, int] = {}
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            "longrun.webhook.breaker_state",
            callbacks=[self._observe_breakers],
            unit="1",
            description="Circuit breaker per receiver host: 0 closed, 1 half-open, 2 open",
        )

    def _observe_breakers(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(state, {"server.address": host}) for host, state in self._breakers.items()]

    def set_breaker(self, host: str, state: int) -> None:
        with self._lock:
            self._breakers[host] = state

    def on_event(self, event: str, attributes: dict[str, Any]) -> None:
        kind = {"kind": str(attributes.get("kind", "unknown"))}
        seconds = float(attributes.get("duration_ms", 0)) / 1000
        if event == "job.submitted":
            self.submitted.add(1, {**kind, "source": str(attributes.get("source", "http"))})
        elif event == "job.completed":
            self.completed.add(1, kind)
            self.job_duration.record(seconds, {**kind, "status": "COMPLETED"})
        elif event == "job.failed":
            self.failed.add(1, {**kind, "error_type": str(attributes.get("error_type", "unknown"))})
            self.job_duration.record(seconds, {**kind, "status": "FAILED"})
        elif event == "job.cancelled":
            self.cancelled.add(1, kind)
            self.job_duration.record(seconds, {**kind, "status": "CANCELLED"})
        elif event in ("chunk.processed", "chunk.failed"):
            outcome = "ok" if event == "chunk.processed" else "failed"
            self.chunk_duration.record(seconds, {**kind, "outcome": outcome})
        elif event == "job.retry":
            self.retries.add(1, {**kind, "step": str(attributes.get("step", "unknown"))})
        elif event == "job.deadlettered":
            self.dead_letters.add(1, {**kind, "source": "job"})
        elif event == "intake.poison":
            self.dead_letters.add(1, {**kind, "source": "poison"})


_instruments: _Metrics | None = None
_instruments_lock = threading.Lock()


def _metrics() -> _Metrics:
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                _instruments = _Metrics()
    return _instruments


def record_queue_wait(kind: str, seconds: float) -> None:
    """How long a job waited between submit and admission (the admission branch calls this)."""
    _metrics().queue_wait.record(max(0.0, seconds), {"kind": kind})


def record_webhook_delivery(outcome: str, *, event: str, status_code: int | None = None) -> None:
    """One webhook delivery attempt: outcome is e.g. delivered, failed, rejected, breaker_open."""
    attributes: dict[str, str | int] = {"outcome": outcome, "webhook.event": event}
    if status_code is not None:
        attributes["http.response.status_code"] = status_code
    _metrics().webhook_deliveries.add(1, attributes)


def record_breaker_state(receiver_host: str, state: str) -> None:
    """A receiver's circuit breaker changed state: closed, half_open or open (host name only, never a URL)."""
    _metrics().set_breaker(receiver_host, _BREAKER_STATES.get(state, 2))
