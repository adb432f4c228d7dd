"""The tracing and telemetry helpers in one process, read back with the OpenTelemetry SDK's in-memory
exporter and metric reader: trace context parsing, replay-safe span ids, the webhook delivery span and the
metrics the admission and webhooks branches record through shared.telemetry."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devhost.testing.azurite import ROOT
from shared import telemetry, tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    # The global providers can be set once per process: share them with whatever else runs here.
    memory = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[memory]))
    return memory


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    tracing.install_deterministic_ids(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_only_valid_w3c_traceparents_are_taken() -> None:
    assert tracing.parse_traceparent(PARENT) == (TRACE, "00f067aa0ba902b7", True)
    assert tracing.trace_id_of(PARENT.upper()) == TRACE
    for bad in (None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE}-{'0' * 16}-01", f"01-{TRACE}"):
        assert tracing.parse_traceparent(bad) is None, bad


def test_recorded_spans_get_the_derived_id_the_same_on_every_replay(spans: InMemorySpanExporter) -> None:
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    span_id = tracing.span_id_for("job1", "chunk-3", 2)
    assert span_id == tracing.span_id_for("job1", "chunk-3", 2) != tracing.span_id_for("job1", "chunk-3", 1)
    tracing.record_span(
        "step chunk-3", parent=PARENT, span_id=span_id, start=start, end=start + timedelta(seconds=2), error="boom"
    )
    (recorded,) = spans.get_finished_spans()
    assert recorded.context is not None and recorded.parent is not None
    assert recorded.context.span_id == span_id and f"{recorded.context.trace_id:032x}" == TRACE
    assert recorded.parent.span_id == int("00f067aa0ba902b7", 16)
    assert recorded.end_time is not None and recorded.start_time is not None
    assert recorded.end_time - recorded.start_time == 2_000_000_000
    assert recorded.status.status_code.name == "ERROR" and recorded.attributes == {"error.type": "boom"}
    # Other spans keep random ids.
    with tracing.span("other", parent=PARENT) as other:
        assert other.get_span_context().span_id != span_id
    # Without a valid parent nothing is recorded: a stray root would start a trace of its own.
    tracing.record_span("lost", parent=None, span_id=1, start=start, end=start)
    assert [span.name for span in spans.get_finished_spans()] == ["step chunk-3", "other"]


def test_the_webhook_delivery_span_joins_the_jobs_trace(
    spans: InMemorySpanExporter, reader: InMemoryMetricReader
) -> None:
    with tracing.webhook_delivery_span(
        PARENT, job_id="job1", event="job.completed", attempt=2, receiver_host="hooks.example"
    ):
        telemetry.record_webhook_delivery("failed", event="job.completed", status_code=503)
    (delivery,) = spans.get_finished_spans()
    assert delivery.kind is SpanKind.CLIENT and delivery.context is not None
    assert f"{delivery.context.trace_id:032x}" == TRACE
    assert dict(delivery.attributes or {}) == {
        "job.id": "job1",
        "webhook.event": "job.completed",
        "webhook.attempt": 2,
        "server.address": "hooks.example",
    }
    telemetry.record_breaker_state("hooks.example", "open")
    (delivered,) = [p for p in points(reader, "longrun.webhook.deliveries") if p.attributes["outcome"] == "failed"]
    assert delivered.value >= 1 and delivered.attributes["http.response.status_code"] == 503
    (breaker,) = [
        p for p in points(reader, "longrun.webhook.breaker_state") if p.attributes["server.address"] == "hooks.example"
    ]
    assert breaker.value == 2


def test_queue_wait_is_a_histogram_by_kind(reader: InMemoryMetricReader) -> None:
    telemetry.record_queue_wait("csv-report", 2.5)
    telemetry.record_queue_wait("csv-report", -1)  # clock skew never records a negative wait
    (histogram,) = [p for p in points(reader, "longrun.job.queue_wait") if p.attributes == {"kind": "csv-report"}]
    assert histogram.count >= 2 and histogram.min == 0.0 and histogram.max >= 2.5


def test_events_are_attributes_and_move_their_metrics(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="longrun"):
        telemetry.log_event("job.failed", job_id="j9", kind="simulate", error_type="x y=z", duration_ms=1500, name="n")
    (record,) = [r for r in caplog.records if r.getMessage() == "longrun.job.failed"]
    assert record.__dict__["event"] == "job.failed" and record.__dict__["job_id"] == "j9"
    assert record.__dict__["error_type"] == "x_y_z"  # one short token
    assert record.__dict__["field_name"] == "n"  # a LogRecord attribute's name is not overwritten
    assert record.__dict__["duration_ms"] == 1500
    failed = [p for p in points(reader, "longrun.jobs.failed") if p.attributes.get("kind") == "simulate"]
    assert failed and failed[0].value >= 1
    durations = [p for p in points(reader, "longrun.job.duration") if p.attributes.get("status") == "FAILED"]
    assert durations and durations[0].max >= 1.5


def test_only_a_loopback_collector_is_used() -> None:
    from shared.observability import is_loopback

    assert (
        is_loopback("http://127.0.0.1:4318")
        and is_loopback("http://localhost:4318/")
        and is_loopback("http://[::1]:4318")
    )
    for remote in ("https://collector.example.com", "http://10.0.0.5:4318", "http://127.0.0.1.example.com", "nonsense"):
        assert not is_loopback(remote), remote


@pytest.mark.parametrize(
    ("endpoint", "mode", "sdk_tracing"),
    [("", "none", "None"), ("http://127.0.0.1:9", "otlp", "OpenTelemetrySpan")],
)
def test_storage_calls_are_traced_only_when_the_spans_go_somewhere(endpoint: str, mode: str, sdk_tracing: str) -> None:
    """Without an exporter azure-core's spans cost CPU per storage call and reach no one (a fresh process:
    the global providers can be set once)."""
    script = (
        "from shared import observability; print(observability.configure());"
        "from azure.core.settings import settings; t = settings.tracing_implementation();"
        "print(t.__name__ if t else None)"
    )
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [mode, sdk_tracing]
