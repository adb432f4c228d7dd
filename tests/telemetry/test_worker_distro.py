"""The worker's web server with the Azure Monitor distro as the Python worker configures it in Azure.

With PYTHON_ENABLE_OPENTELEMETRY (infra sets it) the worker calls `configure_azure_monitor` at its init with
every instrumentation on, then imports the app, then builds the HTTP streams extension's web app
(azure-functions-python-worker 4.34: azure_functions_worker/dispatcher.py `_handle__worker_init_request`,
`initialize_azure_monitor`; http_v2.py `initialize_http_server`; later workers do the same on
PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY). The distro's FastAPI instrumentation then applies to that web app, and
its server span records `http.url`: a client's function key sent as `?code=` would reach Application
Insights. Run in a child process (the distro instruments the interpreter for good), with every exporter
pointed at a closed loopback port; spans are read from an in-memory exporter added to the distro's provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEY = "functionkey0a1b2c3d4e5f"
LOOPBACK_APP_INSIGHTS = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
)

WORKER = f"""
import importlib, json, os, sys
from azure.monitor.opentelemetry import configure_azure_monitor
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")  # as the worker does
configure_azure_monitor(connection_string=os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"], logger_name="longrun")
spans = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))

import function_app  # the worker indexes the app

from azurefunctions.extensions.base import ModuleTrackerMeta, RequestTrackerMeta
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

web = importlib.import_module(ModuleTrackerMeta.get_module()).WebApp()

async def catch_all(request):
    return PlainTextResponse("ok")

catch_all.__annotations__ = {{"request": RequestTrackerMeta.get_request_type()}}
web.route(catch_all)
with TestClient(web.get_app()) as client:
    answer = client.get("/api/jobs", params={{"code": "{KEY}", "limit": "1"}})
print(json.dumps({{"status": answer.status_code, "spans": [
    {{"name": span.name, **{{k: str(v) for k, v in (span.attributes or {{}}).items()}}}}
    for span in spans.get_finished_spans()
]}}))
"""


def test_the_distros_fastapi_instrumentation_does_not_record_the_function_key() -> None:
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": LOOPBACK_APP_INSIGHTS,
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "PYTHON_ENABLE_OPENTELEMETRY": "true",
    }
    run = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200, seen
    assert not [span for span in seen["spans"] if KEY in json.dumps(span)], seen["spans"]
