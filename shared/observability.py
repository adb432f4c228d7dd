"""Where the app's telemetry goes: configured once per worker process, when function_app.py is imported.

- In Azure (APPLICATIONINSIGHTS_CONNECTION_STRING set): the `azure-monitor-opentelemetry` distro exports
  traces, the `longrun` logger's events and metrics to Application Insights, with Microsoft Entra auth
  (APPLICATIONINSIGHTS_AUTHENTICATION_STRING). The worker configures the distro itself when
  PYTHON_ENABLE_OPENTELEMETRY is true (infra sets it, with PYTHON_AZURE_MONITOR_LOGGER_NAME=longrun);
  otherwise this module does. The host runs with host.json "telemetryMode": "OpenTelemetry", so host and
  worker telemetry correlate.
- Locally with OTEL_EXPORTER_OTLP_ENDPOINT (loopback only: nothing may leave the machine): OTLP/HTTP.
- Otherwise: an SDK tracer provider without exporters, so trace ids still exist (a job's `trace_id`) and
  the spans cost next to nothing.

Either way azure-core's OpenTelemetry tracing is on, so blob, queue and table calls are dependency spans.
"""

from __future__ import annotations

import logging
import os
import threading
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from shared.tracing import install_deterministic_ids

SERVICE_NAME = "longrun"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_configured = False
_lock = threading.Lock()
log = logging.getLogger("longrun.observability")


def is_loopback(endpoint: str) -> bool:
    """Whether an OTLP endpoint URL points at this machine."""
    try:
        host = urlsplit(endpoint).hostname
    except ValueError:
        return False
    return host in LOOPBACK_HOSTS


def configure() -> str:
    """Set up telemetry for this process once; returns which exporter is in use (azure-monitor, otlp, none)."""
    global _configured
    with _lock:
        if _configured:
            return "configured"
        _configured = True
        mode = _configure()
    if mode != "none":
        # With no exporter the SDK's spans would be made only to be dropped: about 0.6 ms of CPU per storage
        # call (a third of the call's own cost; docs/benchmarks.md, "Side by side").
        _enable_azure_sdk_tracing()
    provider = trace.get_tracer_provider()
    install_deterministic_ids(provider)
    return mode


def _configure() -> str:
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        _configure_azure_monitor()
        return "azure-monitor"
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if endpoint and not is_loopback(endpoint):
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is not a loopback address; telemetry is not exported")
        endpoint = ""
    if not endpoint:
        trace.set_tracer_provider(TracerProvider(resource=resource))
        return "none"
    _configure_otlp(resource, endpoint.rstrip("/"))
    return "otlp"


def _configure_otlp(resource: Resource, endpoint: str) -> None:
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")))
    set_logger_provider(logger_provider)
    _attach_event_handler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))


def _attach_event_handler(handler: logging.Handler) -> None:
    # Only the app's structured events (the `longrun` logger) are exported as log records.
    events = logging.getLogger("longrun")
    events.setLevel(logging.INFO)
    events.addHandler(handler)


def _configure_azure_monitor() -> None:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    events = logging.getLogger("longrun")
    events.setLevel(logging.INFO)
    if isinstance(trace.get_tracer_provider(), SdkTracerProvider):
        # The Python worker configured the distro at its init (PYTHON_ENABLE_OPENTELEMETRY=true, logger
        # PYTHON_AZURE_MONITOR_LOGGER_NAME=longrun: azure_functions_worker/dispatcher.py
        # initialize_azure_monitor) and told the host so, which then ships no second copy of the worker's
        # logs. A second configure_azure_monitor would export everything twice.
        return
    from azure.monitor.opentelemetry import configure_azure_monitor

    # The exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING itself (managed identity: the resource
    # refuses instrumentation keys alone).
    configure_azure_monitor(
        logger_name="longrun",  # the events only: the host already ships everything else the worker logs
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)}),
        enable_live_metrics=True,
        instrumentation_options={
            "azure_sdk": {"enabled": True},
            "django": {"enabled": False},
            "fastapi": {"enabled": False},
            "flask": {"enabled": False},
            "psycopg2": {"enabled": False},
        },
    )
    # Without the worker's OpenTelemetry capability the host also forwards the worker's log records (as
    # plain text, without the events' attributes): keep the events on the distro's path only.
    events.propagate = False


def _enable_azure_sdk_tracing() -> None:
    # azure-core reports every storage call as a span of the current trace (a dependency in App Insights).
    from azure.core.settings import settings

    settings.tracing_implementation = "opentelemetry"
