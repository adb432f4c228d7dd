"""Every answer the API gives is one `/api/openapi.json` describes.

External clients are generated from the OpenAPI document and validate what they get against it, so a status
the document does not list, a media type it does not name, a body its schema refuses (or a member it does not
name) or a header that breaks its declared schema is a broken contract even when our own tests, written against
docs/api.md, pass. The requests below walk every operation through its ordinary answers and its refusals; each
answer is checked against the operation the document gives for the request's method and path.
"""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devhost.testing.harness import DevHost
from tests.api.documented import Contract
from tests.api.probes import eventually
from tests.api.test_contract import simulate, submit

# One answer of each operation at most this long is read whole; longer streams are cut (their events are
# checked against the document by tests/api/test_job_events.py).
STREAM_READ_SECONDS = 2.0


@pytest.fixture(scope="module")
def contract(devhost: DevHost) -> Contract:
    return Contract(devhost.client.get("/api/openapi.json").json())


def checked(contract: Contract, response: httpx.Response) -> httpx.Response:
    contract.check(response)
    return response


def streamed(client: httpx.Client, contract: Contract, path: str, **headers: str) -> int:
    """Open a stream, read it for a while, check its answer; its status."""
    with client.stream("GET", path, headers=headers, timeout=STREAM_READ_SECONDS + 5) as response:
        body = b""
        started = time.monotonic()
        for part in response.iter_bytes():
            body += part
            if time.monotonic() - started > STREAM_READ_SECONDS:
                break
        contract.check(response, body)
        return response.status_code


def finished_task(client: httpx.Client, url: str) -> httpx.Response:
    def ready() -> httpx.Response | None:
        answer = client.get(url)
        return answer if answer.json().get("status") in ("SUCCESS", "FAILURE", "REVOKED") else None

    answer: httpx.Response = eventually(ready, timeout=60, interval=0.2)
    return answer


def jobs_in_every_state(devhost: DevHost, contract: Contract) -> Iterator[tuple[str, httpx.Response]]:
    """(what, answer) for the job routes: submits, polls, results and cancels across the job's states."""
    client = devhost.client
    running = checked(contract, submit(client, {**simulate(chunks=2, chunk_seconds=3), "deadline_seconds": 3600}))
    yield "submit", running
    assert "deadline_at" in running.json()
    location = running.headers["location"]
    yield "poll while running", checked(contract, client.get(location))
    yield "result before completion", checked(contract, client.get(location + "/result"))
    yield (
        "long-poll",
        checked(
            contract,
            client.get(location, params={"wait": 1}, headers={"If-None-Match": running.headers.get("etag", "")}),
        ),
    )
    yield "cancel", checked(contract, client.delete(location))
    yield "poll after cancel", checked(contract, devhost.wait_for_job(location))
    yield "result of a cancelled job", checked(contract, client.get(location + "/result"))

    done = submit(client, {"kind": "vector-normalize", "input": {"vector_data": [[3, 4], [0, 0]]}})
    completed = devhost.wait_for_job(done.headers["location"])
    yield "poll of a completed job", checked(contract, completed)
    yield "result", checked(contract, client.get(done.headers["location"] + "/result"))
    ndjson = client.get(done.headers["location"] + "/result", params={"format": "ndjson"})
    yield "ndjson result", checked(contract, ndjson)
    yield "cancel of a finished job", checked(contract, client.delete(done.headers["location"]))

    failing = submit(client, simulate(chunks=1, permanent_failure=True))
    yield "poll of a failed job", checked(contract, devhost.wait_for_job(failing.headers["location"]))

    csv = b"region,amount,qty\nnorth,1.5,2\nsouth,2.25,3\nnorth,3,1\n"
    raw = client.post(
        "/api/jobs",
        params={"kind": "csv-report", "group_by": "region", "metrics": "amount,qty", "deadline_seconds": "600"},
        content=csv,
        headers={"Content-Type": "text/csv"},
    )
    yield "raw submit", checked(contract, raw)
    devhost.wait_for_job(raw.headers["location"])
    yield "csv result", checked(contract, client.get(raw.headers["location"] + "/result", params={"format": "csv"}))
    unrendered = client.get(raw.headers["location"] + "/result", params={"format": "ndjson"})
    yield "format the kind does not render", checked(contract, unrendered)
    traced = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    yield "submit in the caller's trace", checked(contract, submit(client, simulate(), **traced))
    keyed = {"Idempotency-Key": f"conformance-{time.time_ns()}"}
    yield "keyed submit", checked(contract, submit(client, simulate(), **keyed))
    yield "keyed submit again", checked(contract, submit(client, simulate(), **keyed))
    yield "keyed submit, other request", checked(contract, submit(client, simulate(chunks=2), **keyed))
    yield "listing", checked(contract, client.get("/api/jobs", params={"limit": 2}))
    yield "listing by status", checked(contract, client.get("/api/jobs", params={"status": "COMPLETED"}))


GZIPPED_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}

# (method, path, request arguments, the status docs/api.md gives the request)
REFUSALS: list[tuple[str, str, dict[str, Any], int]] = [
    ("POST", "/api/jobs", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/api/jobs", {"json": {"kind": "no-such-kind"}}, 422),
    ("POST", "/api/jobs", {"json": {**simulate(), "deadline_seconds": 0}}, 422),
    ("POST", "/api/jobs", {"json": {**simulate(), "priority": "urgent"}}, 422),
    ("POST", "/api/jobs", {"json": {**simulate(), "callback": {"url": "http://127.0.0.1/hook"}}}, 422),
    ("POST", "/api/jobs", {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "/api/jobs", {"content": gzip.compress(b"{}"), "headers": {**GZIPPED_JSON}}, 415),
    ("POST", "/api/jobs", {"json": simulate(), "headers": {"Idempotency-Key": ""}}, 400),
    (
        "POST",
        "/api/jobs",
        {
            "content": b"",
            "params": {"kind": "csv-report", "group_by": "a", "metrics": "b"},
            "headers": {"Content-Type": "text/csv"},
        },
        422,
    ),
    ("POST", "/api/jobs", {"content": b"{}" + b" " * 1_100_000, "headers": {"Content-Type": "application/json"}}, 413),
    (
        "POST",
        "/api/jobs",
        {
            "content": iter([b"a,b\n", b"1,2\n"]),  # no Content-Length: chunked
            "params": {"kind": "csv-report", "group_by": "a", "metrics": "b"},
            "headers": {"Content-Type": "text/csv"},
        },
        411,
    ),
    ("GET", "/api/jobs", {"params": {"status": "DONE"}}, 422),
    ("GET", "/api/jobs", {"params": {"continuation": "bogus"}}, 422),
    ("GET", "/api/jobs/not-an-id", {}, 404),
    ("GET", f"/api/jobs/{'0' * 32}", {}, 404),
    ("GET", f"/api/jobs/{'0' * 32}", {"params": {"wait": 61}}, 400),
    ("DELETE", f"/api/jobs/{'0' * 32}", {}, 404),
    ("GET", f"/api/jobs/{'0' * 32}/result", {}, 404),
    ("GET", f"/api/jobs/{'0' * 32}/events", {}, 404),
    ("GET", f"/api/jobs/{'0' * 32}/events", {"headers": {"Last-Event-ID": "x"}}, 400),
    ("POST", "/api/jobs/batch", {"json": {"items": []}}, 422),
    ("POST", "/api/jobs/batch", {"content": b"[", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/api/jobs/batch", {"content": b"x", "headers": {"Content-Type": "text/csv"}}, 415),
    ("POST", "/api/uploads", {"json": {"content_type": "image/png"}}, 422),
    ("POST", "/api/uploads", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/api/uploads", {"content": gzip.compress(b"{}"), "headers": {**GZIPPED_JSON}}, 415),
    ("POST", "/api/jobs/batch", {"content": gzip.compress(b"{}"), "headers": {**GZIPPED_JSON}}, 415),
    ("POST", "/api/tasks", {"content": gzip.compress(b"{}"), "headers": {**GZIPPED_JSON}}, 415),
    ("GET", "/api/dead-letters", {"params": {"continuation": "bogus"}}, 422),
    ("GET", "/api/dead-letters/no-such-record", {}, 404),
    ("POST", "/api/dead-letters/no-such-record/replay", {}, 404),
    ("POST", "/api/tasks", {"json": {"vector_data": "nope"}}, 422),
    ("POST", "/api/tasks", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    ("GET", f"/api/tasks/{'0' * 32}", {}, 404),
    ("GET", "/api/stats", {"params": {"hours": 0}}, 422),
]


def test_every_answer_of_the_job_routes_is_documented(devhost: DevHost, contract: Contract) -> None:
    seen = {what: response.status_code for what, response in jobs_in_every_state(devhost, contract)}
    # The walk reached the answers it is meant to check, or it checked less than it claims.
    assert seen["submit"] == seen["raw submit"] == seen["keyed submit again"] == 202
    assert seen["poll while running"] == 202 and seen["result before completion"] == 409
    assert seen["poll of a completed job"] == seen["poll of a failed job"] == seen["poll after cancel"] == 200
    assert seen["keyed submit, other request"] == 409 and seen["cancel"] == 202
    assert seen["result"] == seen["ndjson result"] == seen["csv result"] == 200
    assert seen["format the kind does not render"] == 422
    assert not contract.broken, "\n".join(contract.broken)


@pytest.mark.parametrize(
    ("method", "path", "request_args", "status"), REFUSALS, ids=[f"{m} {p} {s}" for m, p, _, s in REFUSALS]
)
def test_every_refusal_is_a_documented_problem(
    devhost: DevHost, contract: Contract, method: str, path: str, request_args: dict[str, Any], status: int
) -> None:
    response = checked(contract, devhost.client.request(method, path, **request_args))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert not contract.broken, "\n".join(contract.broken)


def test_the_other_routes_answer_as_documented(devhost: DevHost, contract: Contract) -> None:
    client = devhost.client
    for path, params in (
        ("/api/health", {}),
        ("/api/stats", {"hours": 1, "bucket_minutes": 5}),
        ("/api/dead-letters", {"limit": 5}),
        ("/api/ui", {}),
        ("/api/docs", {}),
        ("/api/openapi.json", {}),
    ):
        assert checked(contract, client.get(path, params=params)).status_code == 200, path
    upload = checked(contract, client.post("/api/uploads", json={"content_type": "text/csv"}))
    assert upload.status_code == 201
    batch = checked(contract, client.post("/api/jobs/batch", json={"items": [simulate(), {"kind": "nope"}]}))
    assert batch.status_code == 200 and [item["status"] for item in batch.json()["items"]] == [202, 422]

    task = checked(contract, client.post("/api/tasks", json={"vector_data": [0.1, 0.2], "metadata": {"a": 1}}))
    assert task.status_code == 202
    task_url = task.headers["location"]
    assert checked(contract, finished_task(client, task_url)).status_code == 200
    assert streamed(client, contract, task_url + "/stream") == 200

    job = submit(client, simulate(chunks=2, chunk_seconds=0.2)).headers["location"]
    assert streamed(client, contract, job.removeprefix(devhost.base_url) + "/events") == 200
    devhost.wait_for_job(job)
    last = client.get(job).headers["etag"][3:-1]
    assert streamed(client, contract, job.removeprefix(devhost.base_url) + "/events", **{"Last-Event-ID": last}) == 204

    failed = submit(client, simulate(chunks=1, permanent_failure=True)).headers["location"]
    devhost.wait_for_job(failed)
    letters = checked(contract, client.get("/api/dead-letters", params={"limit": 50})).json()["items"]
    record = next(item for item in letters if item["job_id"] == failed.rsplit("/", 1)[1])
    assert checked(contract, client.get(record["links"]["self"])).status_code == 200
    replay = checked(contract, client.post(record["links"]["replay"]))
    assert replay.status_code == 202
    assert not contract.broken, "\n".join(contract.broken)


def test_backpressure_and_a_waiting_job_answer_as_documented(devhost_factory: Any) -> None:
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "1", "MAX_PENDING_JOBS": "1"})
    contract = Contract(host.client.get("/api/openapi.json").json())
    failed = host.wait_for_job(submit(host.client, simulate(permanent_failure=True)).headers["location"]).json()
    assert failed["status"] == "FAILED", failed
    letters = host.client.get("/api/dead-letters", params={"limit": 10}).json()["items"]
    letter = next(item for item in letters if item["job_id"] == failed["id"])
    running = checked(contract, submit(host.client, simulate(chunks=1, chunk_seconds=5)))
    waiting = checked(contract, submit(host.client, simulate()))
    refused = checked(contract, submit(host.client, simulate()))
    place = checked(contract, host.client.get(waiting.headers["location"]))
    batch = checked(contract, host.client.post("/api/jobs/batch", json={"items": [simulate()]}))
    tasks = checked(contract, host.client.post("/api/tasks", json={"vector_data": [1.0]}))
    replay = checked(contract, host.client.post(letter["links"]["replay"]))
    assert running.status_code == waiting.status_code == 202
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert place.status_code == 202 and place.json()["queue"]["position"] == 1
    assert batch.status_code == 200 and batch.json()["items"][0]["status"] == 429
    assert tasks.status_code == replay.status_code == 429
    for location in (running.headers["location"], waiting.headers["location"]):
        host.client.delete(location)
    assert not contract.broken, "\n".join(contract.broken)


def test_a_submission_the_document_allows_is_accepted_and_one_it_refuses_is_422(
    devhost: DevHost, contract: Contract
) -> None:
    """The request side: a client that builds submissions from JobRequest gets what the schema promised."""
    upload = devhost.client.post("/api/uploads", json={"content_type": "text/csv"}).json()
    stored = httpx.put(
        upload["upload_url"], content=b"g,v\nx,1\n", headers={**upload["headers"], "Content-Type": "text/csv"}
    )
    assert stored.status_code == 201, stored.text
    vectors = {"vector_data": [[3, 4]]}
    cases: list[tuple[dict[str, Any], int]] = [
        ({"kind": "vector-normalize", "input": vectors}, 202),
        ({"kind": "vector-normalize"}, 422),  # no input at all
        ({"kind": "vector-normalize", "input": {"vector_data": []}}, 422),  # no vector
        ({"kind": "vector-normalize", "input": {"vector_data": [[]]}}, 422),  # a vector of nothing
        ({"kind": "vector-normalize", "input": vectors, "input_ref": upload["input_ref"]}, 422),  # both
        ({"kind": "csv-report", "options": {"group_by": "g"}, "input_ref": upload["input_ref"]}, 202),
        ({"kind": "csv-report", "options": {"group_by": "g"}}, 422),  # no input_ref
        ({"kind": "csv-report", "input_ref": upload["input_ref"]}, 422),  # no group_by
        ({"kind": "simulate", "options": {"chunks": 1}}, 202),
        ({"kind": "simulate", "options": {"chunks": 1}, "surprise": 1}, 422),
    ]
    request = contract.json_body("POST", "/api/jobs")
    for body, status in cases:
        errors = [error.message for error in request.iter_errors(body)]
        assert bool(errors) == (status == 422), (body, errors)
        answer = checked(contract, submit(devhost.client, body))
        assert answer.status_code == status, (body, answer.text)
    # The same requests as batch items, each also with its own idempotency key, which the item schema adds.
    batch = contract.json_body("POST", "/api/jobs/batch")
    keyed = [
        ({**body, "idempotency_key": f"item-{time.time_ns()}-{n}"}, status) for n, (body, status) in enumerate(cases)
    ]
    for body, status in keyed:
        errors = [error.message for error in batch.iter_errors({"items": [body]})]
        assert bool(errors) == (status == 422), (body, errors)
    answer = checked(contract, devhost.client.post("/api/jobs/batch", json={"items": [body for body, _ in keyed]}))
    assert [item["status"] for item in answer.json()["items"]] == [status for _, status in keyed], answer.text
    # The reference design's task body.
    task = contract.json_body("POST", "/api/tasks")
    reference = {"vector_data": [0.1, 0.2], "metadata": {"a": 1}, "duration": 5, "task_type": "vector_processing"}
    for body, status in (
        (reference, 202),
        ({"vector_data": [[3, 4], [1, 0]]}, 202),
        ({**reference, "priority": "high"}, 422),
        ({"metadata": {}}, 422),
        ({"vector_data": []}, 422),
    ):
        errors = [error.message for error in task.iter_errors(body)]
        assert bool(errors) == (status == 422), (body, errors)
        answer = checked(contract, devhost.client.post("/api/tasks", json=body))
        assert answer.status_code == status, (body, answer.text)
    assert not contract.broken, "\n".join(contract.broken)
