"""The trace of a real job: one trace id from the client's request to the last activity, read back from
what every devhost worker process exported over OTLP (an OpenTelemetry SDK exporter in each process, a
loopback receiver in the test: devhost.telemetry.OtlpReceiver).

The spans of the orchestration are emitted by the orchestrator only outside replay, with ids derived from
the job, step and attempt (orchestrators/spans.py), so a step's activity can name its parent before that
parent exists. Application Insights joins them by id, as the receiver does here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devhost.telemetry import OtlpReceiver, ReceivedSpan, Telemetry, summarize
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
MARKER = "zebrapayload7f3c"  # in the job's input: must never appear in telemetry
IDEMPOTENCY_KEY = "telemetry-test-key-9d2e"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver().start()
    try:
        yield otlp
    finally:
        otlp.stop()


@pytest.fixture(scope="module")
def traced_host(azurite: Azurite, receiver: OtlpReceiver) -> Iterator[DevHost]:
    from tests.conftest import DEFAULT_TEST_ENV

    env = {
        **DEFAULT_TEST_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "CHUNKS_PER_SUB_ORCHESTRATION": "2",  # a job of 3 chunks runs in chunk batch sub-orchestrations
    }
    host = DevHost(azurite.connection_string, env=env).start()
    try:
        yield host
    finally:
        host.stop(timeout=20)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("telemetry did not arrive")
        time.sleep(0.2)


def run_job(host: DevHost, **request: Any) -> dict[str, Any]:
    response = host.client.post("/api/jobs", **request)
    assert response.status_code == 202, response.text
    final = host.wait_for_job(response.headers["location"], timeout=90)
    assert final.status_code == 200, final.text
    return dict(final.json())


def job_trace(telemetry: Telemetry, trace_id: str, job_id: str) -> list[ReceivedSpan]:
    """The trace once the job span, the status read and every step's activity span arrived."""

    def complete() -> list[ReceivedSpan] | None:
        spans = telemetry.trace(trace_id)
        names = [span.name for span in spans]
        steps = [span for span in spans if span.name.startswith("step ")]
        activities = [span for span in spans if span.name.startswith("activity ")]
        ready = "job" in names and "job status read" in names and len(activities) >= len(steps) > 0
        return spans if ready else None

    spans: list[ReceivedSpan] = wait_for(complete)
    assert all(span.trace_id == trace_id for span in spans)
    assert {span.attributes.get("job.id") for span in spans if "job.id" in span.attributes} == {job_id}
    return spans


def exported_documents(telemetry: Telemetry) -> list[dict[str, Any]]:
    """Everything exported so far that carries values: span attributes and resources, log records, metric points."""
    with telemetry.lock:
        documents: list[dict[str, Any]] = [span.attributes for span in telemetry.spans]
        documents += [span.resource for span in telemetry.spans]
        documents += [{"body": log.body, **log.attributes} for log in telemetry.logs]
        documents += [point.attributes for point in telemetry.points]
    return documents


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def test_a_job_is_one_trace_from_the_clients_request_to_its_last_activity(
    traced_host: DevHost, receiver: OtlpReceiver
) -> None:
    data = f"region,amount\n{MARKER},1\nsouth,2\n{MARKER},3\n".encode()
    job = run_job(
        traced_host,
        content=data,
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount"},
        headers={"Content-Type": "text/csv", "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
    )
    assert job["status"] == "COMPLETED", job
    assert job["trace_id"] == CLIENT_TRACE  # support jumps from the job to its trace

    spans = job_trace(receiver.telemetry, CLIENT_TRACE, job["id"])
    ids = by_id(spans)
    # The orchestrator replays its history in every episode; each span is still emitted once.
    assert len(ids) == len(spans), sorted(span.name for span in spans)
    names = [span.name for span in spans]
    submit = next(span for span in spans if span.name == "job submit")
    assert submit.parent_span_id == CLIENT_SPAN  # the client's span is the parent of the submit
    job_span = next(span for span in spans if span.name == "job")
    assert job_span.parent_span_id == submit.span_id
    assert job_span.attributes["job.status"] == "COMPLETED" and job_span.attributes["job.kind"] == "csv-report"
    # A one-chunk job runs whole in its first step (orchestrators/whole_job.py).
    assert "step prepare" in names and "activity prepare_or_run_job" in names, names
    for span in spans:
        if span.name.startswith("step "):
            assert span.parent_span_id == job_span.span_id, span
            assert job_span.start_ns <= span.start_ns and span.end_ns <= job_span.end_ns + 1_000_000
        if span.name.startswith("activity "):
            parent = ids[span.parent_span_id]
            assert parent.name.startswith("step "), (span, parent)
            assert parent.attributes["activity"] == span.attributes["activity"]
    read = next(span for span in spans if span.name == "job status read")
    assert read.parent_span_id == submit.span_id

    # azure-core's OpenTelemetry tracing: the storage calls of an activity are its children (dependencies).
    def under_activity(span: ReceivedSpan) -> bool:
        while span.parent_span_id in ids:
            span = ids[span.parent_span_id]
            if span.name.startswith("activity "):
                return True
        return False

    storage_calls = [span for span in spans if span.kind == 3 and under_activity(span)]  # 3: CLIENT
    # (A first attempt of a tiny job asks for no blob: its calls are the job row's, read and written.)
    callers = {ids[span.parent_span_id].name for span in storage_calls}
    assert {"TableClient.get_entity", "TableClient.update_entity"} <= callers, (callers, names)
    print(summarize(job_span, spans))


def test_a_large_raw_body_is_staged_inside_the_submit_span(traced_host: DevHost, receiver: OtlpReceiver) -> None:
    """A raw body over 4 MiB goes to its blob while it arrives (jobs.streamed_input): most of such a submit's
    time. The staging is a child span of the submit, and each block's storage call is a child of it. (The job
    itself is cancelled: with the test settings' small chunks it would run a thousand of them.)"""
    trace = "5ce1a9d0b6f04c2e8a7d3f1b2c4e6a80"
    rows = "".join(f"r{index % 7},{index % 100},{index % 3}\n" for index in range(700_000))
    data = ("region,amount,qty\n" + rows).encode()
    assert len(data) > 4 * 1024 * 1024
    response = traced_host.client.post(
        "/api/jobs",
        content=data,
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount,qty"},
        headers={"Content-Type": "text/csv", "traceparent": f"00-{trace}-{CLIENT_SPAN}-01"},
    )
    assert response.status_code == 202 and response.json()["trace_id"] == trace, response.text
    traced_host.client.delete(response.headers["location"])

    def staged_trace() -> list[ReceivedSpan] | None:
        spans = receiver.telemetry.trace(trace)
        names = [span.name for span in spans]
        return spans if "job submit" in names and "job input staged" in names else None

    spans: list[ReceivedSpan] = wait_for(staged_trace)
    ids = by_id(spans)
    submit = next(span for span in spans if span.name == "job submit")
    staged = next(span for span in spans if span.name == "job input staged")
    assert submit.parent_span_id == CLIENT_SPAN and staged.parent_span_id == submit.span_id
    assert submit.start_ns <= staged.start_ns and staged.end_ns <= submit.end_ns
    assert staged.attributes["job.input.bytes"] == len(data)
    assert staged.attributes["job.id"] == submit.attributes["job.id"] == response.json()["id"]
    stage_calls = [span for span in spans if span.name.endswith("stage_block")]
    assert len(stage_calls) == staged.attributes["job.input.blocks"] >= 2, [span.name for span in spans]
    assert all(span.parent_span_id == staged.span_id for span in stage_calls)
    # The HTTP request of each block: a CLIENT span under its SDK call.
    blocks = [
        span for span in spans if span.parent_span_id in ids and ids[span.parent_span_id].name.endswith("stage_block")
    ]
    assert len(blocks) == len(stage_calls) and all(span.kind == 3 for span in blocks), [s.name for s in blocks]


def test_retries_and_backoffs_are_spans_of_the_job(traced_host: DevHost, receiver: OtlpReceiver) -> None:
    job = run_job(traced_host, json={"kind": "simulate", "options": {"chunks": 2, "transient_failures": 1}})
    assert job["status"] == "COMPLETED", job
    trace_id = job["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id != CLIENT_TRACE  # no traceparent: a new trace
    spans = job_trace(receiver.telemetry, trace_id, job["id"])
    for index in (0, 1):
        attempts = {span.attributes["attempt"]: span for span in spans if span.name == f"step chunk-{index}"}
        assert set(attempts) == {1, 2}
        assert attempts[1].status_code == 2 and attempts[1].attributes["error.type"] == "step_failed"
        assert attempts[2].status_code != 2
        backoff = next(span for span in spans if span.name == f"backoff chunk-{index}")
        assert backoff.attributes["attempt"] == 1 and backoff.attributes["backoff.seconds"] > 0
        assert attempts[1].end_ns <= backoff.start_ns + 1_000_000 and backoff.end_ns <= attempts[2].start_ns + 1_000_000
    # Each attempt's activity ran under its own step span.
    failed_runs = [span for span in spans if span.name == "activity process_chunk" and span.status_code == 2]
    assert len(failed_runs) == 2
    # The retries are events and metrics too.
    retries = wait_for(
        lambda: [
            log
            for log in receiver.telemetry.logs
            if log.attributes.get("event") == "job.retry" and log.attributes.get("job_id") == job["id"]
        ]
    )
    assert {log.attributes["key"] for log in retries} == {"chunk-0", "chunk-1"}
    wait_for(lambda: any(point.metric == "longrun.retries" for point in receiver.telemetry.points))


def test_events_are_structured_log_records_in_the_jobs_trace(traced_host: DevHost, receiver: OtlpReceiver) -> None:
    job = run_job(traced_host, json={"kind": "simulate", "options": {"chunks": 2}})  # staged: chunk events
    events = wait_for(
        lambda: (
            {
                log.attributes["event"]: log
                for log in receiver.telemetry.logs
                if log.attributes.get("job_id") == job["id"] and "event" in log.attributes
            }.keys()
            >= {"job.submitted", "job.completed", "chunk.processed"}
            and {
                log.attributes["event"]: log
                for log in receiver.telemetry.logs
                if log.attributes.get("job_id") == job["id"]
            }
        )
    )
    submitted = events["job.submitted"]
    assert submitted.body == "longrun.job.submitted"  # no key=value text to parse
    assert submitted.attributes["kind"] == "simulate" and submitted.attributes["source"] == "http"
    assert submitted.trace_id == job["trace_id"]  # logged inside the submit span
    assert events["chunk.processed"].trace_id == job["trace_id"]  # logged inside the activity's span
    assert events["job.completed"].trace_id == job["trace_id"]  # the orchestrator's events join the trace too
    assert isinstance(events["job.completed"].attributes["duration_ms"], int)

    def metric_kinds(name: str) -> set[Any]:
        return {p.attributes.get("kind") for p in receiver.telemetry.points if p.metric == name}

    def every_metric_arrived() -> bool:
        names = ("longrun.jobs.submitted", "longrun.jobs.completed", "longrun.job.duration", "longrun.chunk.duration")
        return all("simulate" in metric_kinds(name) for name in names)

    wait_for(every_metric_arrived)


def test_nothing_secret_or_payload_sized_in_any_exported_attribute(
    traced_host: DevHost, receiver: OtlpReceiver, azurite: Azurite
) -> None:
    data = f"region,amount\n{MARKER},5\n".encode()
    run_job(
        traced_host,
        content=data,
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount"},
        headers={"Content-Type": "text/csv", "Idempotency-Key": IDEMPOTENCY_KEY},
    )
    upload = traced_host.client.post("/api/uploads", json={"content_type": "text/csv"})
    assert upload.status_code in (200, 201), upload.text
    sas = upload.json()["upload_url"].split("?", 1)[1]
    time.sleep(1.5)  # let every process flush its batch
    account_key = re.search(r"AccountKey=([^;]+)", azurite.connection_string)
    forbidden = [MARKER, IDEMPOTENCY_KEY, "AccountKey", "sig=", sas, data.decode()]
    if account_key:
        forbidden.append(account_key.group(1))
    documents = exported_documents(receiver.telemetry)
    assert len(documents) > 50
    for document in documents:
        for key, value in document.items():
            text = f"{key}={value}"
            for secret in forbidden:
                assert secret not in text, f"{secret[:12]}... leaked in {text[:200]}"
            assert len(text) <= 1000, f"payload-sized attribute: {text[:200]}"


def test_a_function_key_in_the_query_string_is_never_exported(traced_host: DevHost, receiver: OtlpReceiver) -> None:
    """`?code=<function key>` is how a client may send its key (docs/api.md). The host passes the query on to
    the worker's web server, so no span, log or metric may record it: FastAPI's own server telemetry
    (on by default once a tracer provider is set) would put it in `url.query`, and only redacts signatures."""
    key = "functionkeysecret0c4f9e"
    answer = traced_host.client.get("/api/jobs", params={"code": key, "limit": "1"})
    assert answer.status_code == 200, answer.text
    submitted = traced_host.client.post(
        "/api/jobs", params={"code": key}, json={"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 0}}
    )
    assert submitted.status_code == 202, submitted.text
    time.sleep(1.5)  # let every process flush its batch
    telemetry = receiver.telemetry
    with telemetry.lock:
        names = [{"name": span.name} for span in telemetry.spans]
    documents = exported_documents(telemetry) + names
    leaked = [document for document in documents if key in repr(document)]
    assert not leaked, leaked[:2]


def test_chunk_batch_sub_orchestrations_join_the_jobs_trace(traced_host: DevHost, receiver: OtlpReceiver) -> None:
    job = run_job(traced_host, json={"kind": "simulate", "options": {"chunks": 3}})
    assert job["status"] == "COMPLETED", job
    spans = job_trace(receiver.telemetry, job["trace_id"], job["id"])
    assert len(by_id(spans)) == len(spans)
    job_span = next(span for span in spans if span.name == "job")
    chunk_steps = {span.name: span for span in spans if span.name.startswith("step chunk-")}
    assert set(chunk_steps) == {"step chunk-0", "step chunk-1", "step chunk-2"}
    assert all(step.parent_span_id == job_span.span_id for step in chunk_steps.values())
