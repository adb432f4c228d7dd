"""Local telemetry: a loopback OTLP/HTTP receiver, and a readable summary of each job's trace.

The app's worker processes export OTLP (shared.observability) when OTEL_EXPORTER_OTLP_ENDPOINT is set.
When it is not and devhost runs with --verbose (or DEVHOST_TRACE_SUMMARY=true), devhost starts this
receiver on 127.0.0.1, points the workers at it and prints one summary per job once the job's span
arrives: its spans as a tree with their durations. Tests use the same receiver to read what the app
exported, across every worker process. Protobuf bodies only (the OTLP/HTTP exporter's default).
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

log = logging.getLogger("devhost.telemetry")

SUMMARY_GRACE_SECONDS = 2.0
"""How long after a job's span arrives the summary waits for the spans other workers still batch."""


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(values: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in values if isinstance(item, KeyValue)}


@dataclass
class ReceivedSpan:
    """One exported span, decoded."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        """The span's duration in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class ReceivedLog:
    """One exported log record, decoded."""

    body: Any
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    severity: str


@dataclass
class ReceivedPoint:
    """One data point of an exported metric."""

    metric: str
    attributes: dict[str, Any]
    value: float  # a sum or gauge value, or a histogram's count


@dataclass
class Telemetry:
    """Everything received so far (thread-safe appends; read a snapshot with the helpers)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    points: list[ReceivedPoint] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans of one trace, oldest first."""
        with self.lock:
            return sorted((s for s in self.spans if s.trace_id == trace_id), key=lambda s: s.start_ns)


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self, on_spans: Callable[[list[ReceivedSpan]], None] | None = None) -> None:
        """Call `on_spans` with each batch of spans received (on the server's thread)."""
        self.telemetry = Telemetry()
        self._on_spans = on_spans
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                try:
                    receiver._receive(self.path, body)
                except Exception as exc:  # a malformed export must not kill the receiver
                    log.warning("OTLP export to %s not understood: %s", self.path, type(exc).__name__)
                    self.send_response(400)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
                pass  # one line per export would drown the host's log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="otlp-receiver")

    @property
    def endpoint(self) -> str:
        """The receiver's base URL (the exporters append /v1/traces, /v1/logs, /v1/metrics)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OtlpReceiver:
        """Serve on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def _receive(self, path: str, body: bytes) -> None:
        if path.endswith("/v1/traces"):
            traces = ExportTraceServiceRequest.FromString(body)
            spans = [
                ReceivedSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    kind=span.kind,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=_attributes(span.attributes),
                    status_code=span.status.code,
                    resource=_attributes(resource_spans.resource.attributes),
                )
                for resource_spans in traces.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]
            with self.telemetry.lock:
                self.telemetry.spans.extend(spans)
            if self._on_spans is not None and spans:
                self._on_spans(spans)
        elif path.endswith("/v1/logs"):
            logs = ExportLogsServiceRequest.FromString(body)
            records = [
                ReceivedLog(
                    body=_value(record.body),
                    attributes=_attributes(record.attributes),
                    trace_id=record.trace_id.hex(),
                    span_id=record.span_id.hex(),
                    severity=record.severity_text,
                )
                for resource_logs in logs.resource_logs
                for scope_logs in resource_logs.scope_logs
                for record in scope_logs.log_records
            ]
            with self.telemetry.lock:
                self.telemetry.logs.extend(records)
        elif path.endswith("/v1/metrics"):
            request = ExportMetricsServiceRequest.FromString(body)
            points = []
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        points += _points(metric)
            with self.telemetry.lock:
                self.telemetry.points.extend(points)
        else:
            raise ValueError(f"unknown OTLP path {path}")


def _points(metric: Any) -> list[ReceivedPoint]:
    data = metric.WhichOneof("data")
    if data in ("sum", "gauge"):
        return [
            ReceivedPoint(metric.name, _attributes(p.attributes), p.as_double if p.HasField("as_double") else p.as_int)
            for p in getattr(metric, data).data_points
        ]
    if data == "histogram":
        return [ReceivedPoint(metric.name, _attributes(p.attributes), p.count) for p in metric.histogram.data_points]
    return []


# --- the console summary ------------------------------------------------------------------------------


class JobSummaries:
    """Print each job's trace as a tree once its `job` span has arrived (and stragglers had a moment)."""

    def __init__(self, receiver_telemetry: Telemetry, printer: Callable[[str], None] | None = None) -> None:
        """Read spans from `receiver_telemetry`; print with `printer` (the devhost log by default)."""
        self.telemetry = receiver_telemetry
        self.printer = printer or (lambda text: log.info("%s", text))

    def on_spans(self, spans: list[ReceivedSpan]) -> None:
        """Schedule a summary for every job span in the batch."""
        for span in spans:
            if span.name == "job":
                timer = threading.Timer(SUMMARY_GRACE_SECONDS, self._print, args=(span,))
                timer.daemon = True
                timer.start()

    def _print(self, job: ReceivedSpan) -> None:
        self.printer(summarize(job, self.telemetry.trace(job.trace_id)))


_APP_SPANS = ("step ", "activity ", "backoff ", "webhook ")


def _is_app_span(span: ReceivedSpan) -> bool:
    return span.name in ("job", "job submit") or span.name.startswith(_APP_SPANS)


def summarize(job: ReceivedSpan, spans: list[ReceivedSpan]) -> str:
    """A job's trace as indented lines: the app's spans with their durations; storage calls and status
    reads are folded into one line each, so a job reads in a screenful."""
    children: dict[str, list[ReceivedSpan]] = defaultdict(list)
    ids = {span.span_id for span in spans}
    roots = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in ids:
            children[span.parent_span_id].append(span)
        else:
            roots.append(span)
    status = job.attributes.get("job.status", "?")
    lines = [
        f"trace {job.trace_id}: job {job.attributes.get('job.id', '?')} ({job.attributes.get('job.kind', '?')}) "
        f"{status} in {job.duration_ms / 1000:.2f} s, {len(spans)} spans"
    ]

    def line(depth: int, label: str, milliseconds: float, error: bool = False) -> None:
        lines.append(f"  {'  ' * depth + label:<50} {milliseconds:9.1f} ms{' ERROR' if error else ''}")

    def storage_calls(span: ReceivedSpan) -> list[ReceivedSpan]:
        found = []
        for child in children[span.span_id]:
            if not _is_app_span(child) and child.name != "job status read":
                found.append(child)  # an azure-core operation; its HTTP call is its child
        return found

    def walk(span: ReceivedSpan, depth: int) -> None:
        attempt = span.attributes.get("attempt")
        label = f"{span.name} #{attempt}" if attempt is not None and span.name.startswith("step ") else span.name
        line(depth, label, span.duration_ms, span.status_code == 2)
        calls = storage_calls(span)
        if calls:
            failed = sum(call.status_code == 2 for call in calls)
            note = f"storage: {len(calls)} calls" + (f", {failed} answered 4xx/5xx" if failed else "")
            line(depth + 1, note, sum(call.duration_ms for call in calls))
        app_children = [child for child in children[span.span_id] if _is_app_span(child)]
        for child in sorted(app_children, key=lambda s: s.start_ns):
            walk(child, depth + 1)
        reads = [child for child in children[span.span_id] if child.name == "job status read"]
        if reads:
            line(depth + 1, f"job status read x{len(reads)}", sum(read.duration_ms for read in reads))

    for root in roots:
        if _is_app_span(root):
            walk(root, 0)
    return "\n".join(lines)
