"""The reference design's routes (api/compat.py): its own end-to-end flow, replayed against longrun.

The flow is the reference's `scripts/verify_flow.py` (naveengarla/long-running-api-demo, described in
/work/shared/seeds/001 and 002): POST /tasks with `vector_data` and `metadata`, read `task_id` from the 202,
poll GET /tasks/{task_id} until `status` is SUCCESS (FAILURE ends it), then read `result`. Only the base URL
differs: longrun serves the routes under /api like every other route.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.api.test_contract import assert_problem
from tests.api.test_job_events import documented_event

REFERENCE_PAYLOAD = {  # verify_flow.py's payload
    "vector_data": [0.1, 0.2, 0.3, 0.4, 0.5],
    "metadata": {"source": "user_upload", "type": "text_embedding"},
}


def poll_task(client: httpx.Client, task_id: str, timeout: float = 120) -> tuple[dict[str, Any], list[str]]:
    """verify_flow.py's loop: GET until SUCCESS or FAILURE; the final document and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/tasks/{task_id}")
        assert response.status_code == 200, response.text  # the reference answers 200 in every state
        data = response.json()
        seen.append(data["status"])
        if data["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return data, seen
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} not ready after {timeout} s: {seen[-3:]}")


def test_the_reference_verify_flow_runs_unchanged(devhost):
    response = devhost.client.post("/api/tasks", json=REFERENCE_PAYLOAD)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"task_id", "status"} and accepted["status"] == "Processing"
    task_id = accepted["task_id"]
    assert response.headers["location"] == f"{devhost.base_url}/api/tasks/{task_id}"
    assert int(response.headers["retry-after"]) >= 1

    status, seen = poll_task(devhost.client, task_id)
    assert status["status"] == "SUCCESS", status
    assert set(seen) <= {"PENDING", "PROGRESS", "SUCCESS"}
    assert set(status) == {"task_id", "status", "result"} and status["task_id"] == task_id
    result = status["result"]
    assert result["status"] == "indexed"
    assert result["metadata_processed"] == REFERENCE_PAYLOAD["metadata"]
    assert result["processed_vectors"] == 1 and result["dimensions"] == 5  # one vector of five components

    # The task is a job like any other: the same id, with the normalized vector as its result.
    job = devhost.client.get(f"/api/jobs/{task_id}").json()
    assert job["kind"] == "vector-normalize" and job["status"] == "COMPLETED"
    (vector,) = devhost.client.get(f"/api/jobs/{task_id}/result").json()["vectors"]
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-12


def test_the_reference_sse_payload_with_duration_is_accepted(devhost):
    # verify_sse.py also sends `duration` (the reference's simulated run time): accepted, longrun does the work.
    response = devhost.client.post(
        "/api/tasks", json={"vector_data": [0.1, 0.2, 0.3], "metadata": {"user": "sse_test"}, "duration": 5}
    )
    assert response.status_code == 202, response.text
    status, _ = poll_task(devhost.client, response.json()["task_id"])
    assert status["status"] == "SUCCESS" and status["result"]["metadata_processed"] == {"user": "sse_test"}


def test_celery_state_names_for_progress_failure_and_revocation(devhost):
    running = devhost.client.post(
        "/api/jobs", json={"kind": "simulate", "options": {"chunks": 30, "chunk_seconds": 0.5}}
    ).json()["id"]
    deadline = time.monotonic() + 60
    while True:
        status = devhost.client.get(f"/api/tasks/{running}")
        if status.json()["status"] == "PROGRESS" and status.json()["result"]["total"] == 30:
            break
        assert time.monotonic() < deadline, status.text
        time.sleep(0.2)
    assert status.headers["retry-after"]
    progress = status.json()["result"]
    assert set(progress) == {"current", "total", "message", "job_id"} and progress["job_id"] == running
    assert devhost.client.delete(f"/api/jobs/{running}").status_code == 202
    revoked, _ = poll_task(devhost.client, running)
    assert revoked == {"task_id": running, "status": "REVOKED", "result": None}

    failing = devhost.client.post("/api/jobs", json={"kind": "simulate", "options": {"permanent_failure": True}})
    failure, _ = poll_task(devhost.client, failing.json()["id"])
    assert failure["status"] == "FAILURE"
    assert failure["result"].startswith("simulated_failure: ")


def test_bad_task_bodies_are_problems_naming_the_reference_fields(devhost):
    for body, field in (
        ({"metadata": {}}, "vector_data"),
        ({"vector_data": []}, "vector_data"),
        ({"vector_data": [1, "x"]}, "vector_data"),
        ({"vector_data": [1.0], "task_type": "web_scrape"}, "task_type"),
        ({"vector_data": [1.0], "colour": "red"}, "colour"),
    ):
        response = devhost.client.post("/api/tasks", json=body)
        problem = assert_problem(response, 422)
        fields = [e["field"] for e in problem["errors"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), (body, fields)
    for malformed in (b"{", b'{"vector_data": [3, 4], "metadata": {"x": 1e999}}'):
        assert_problem(
            devhost.client.post("/api/tasks", content=malformed, headers={"content-type": "application/json"}), 400
        )
    assert_problem(devhost.client.get("/api/tasks/" + "0" * 32), 404)
    assert_problem(devhost.client.get("/api/tasks/not-a-task"), 404)
    assert_problem(devhost.client.delete("/api/tasks/" + "0" * 32), 405)


def test_the_same_idempotency_key_names_the_same_job_through_either_route(devhost):
    headers = {"Idempotency-Key": "reference-client-7"}
    first = devhost.client.post("/api/tasks", json=REFERENCE_PAYLOAD, headers=headers)
    again = devhost.client.post("/api/tasks", json=REFERENCE_PAYLOAD, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["task_id"] == again.json()["task_id"]
    envelope = {"kind": "vector-normalize", "input": REFERENCE_PAYLOAD}
    through_jobs = devhost.client.post("/api/jobs", json=envelope, headers=headers)
    assert through_jobs.status_code == 202 and through_jobs.json()["id"] == first.json()["task_id"]
    changed = devhost.client.post("/api/tasks", json={**REFERENCE_PAYLOAD, "metadata": {}}, headers=headers)
    assert_problem(changed, 409)
    # A task without metadata: the same body in the envelope names the same job (nothing defaulted in).
    bare, key = {"vector_data": [[1.0, 2.0]]}, {"Idempotency-Key": f"reference-bare-{time.time_ns()}"}
    task = devhost.client.post("/api/tasks", json=bare, headers=key)
    job = devhost.client.post("/api/jobs", json={"kind": "vector-normalize", "input": bare}, headers=key)
    assert task.status_code == job.status_code == 202, job.text
    assert job.json()["id"] == task.json()["task_id"]


def test_the_openapi_document_describes_the_reference_routes(devhost):
    doc = devhost.client.get("/api/openapi.json").json()
    assert doc["paths"]["/api/tasks"]["post"]["operationId"] == "submitTask"
    assert doc["paths"]["/api/tasks/{task_id}"]["get"]["operationId"] == "getTask"
    assert doc["paths"]["/api/tasks/{task_id}/stream"]["get"]["operationId"] == "streamTask"
    assert {"TaskCreate", "TaskAccepted", "TaskStatus"} <= set(doc["components"]["schemas"])


def stream_updates(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    """verify_sse.py's loop: read the stream's lines, parse each `data: ` line, stop at a ready status."""
    updates: list[dict[str, Any]] = []
    with client.stream("GET", f"/api/tasks/{task_id}/stream", timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for line in response.iter_lines():
            if line.startswith("data: "):
                updates.append(json.loads(line.removeprefix("data: ")))
                if updates[-1]["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                    break
    return updates


def test_the_reference_stream_flow_runs_unchanged(devhost):
    # verify_sse.py: create the task, then listen to /tasks/{id}/stream until SUCCESS, FAILURE or REVOKED.
    payload = {"vector_data": [0.1, 0.2, 0.3], "metadata": {"user": "sse_test"}, "duration": 5}
    task_id = devhost.client.post("/api/tasks", json=payload).json()["task_id"]
    updates = stream_updates(devhost.client, task_id)
    assert updates[-1]["status"] == "SUCCESS", updates
    assert updates[-1]["result"]["metadata_processed"] == {"user": "sse_test"}
    assert all(u["task_id"] == task_id for u in updates)
    # Each update is the event the OpenAPI document describes: no `event:` or `id:`, data a TaskStatus.
    fields, data = documented_event(devhost, "/api/tasks/{task_id}/stream")
    for update in updates:
        assert not list(fields.iter_errors({"data": json.dumps(update)}))
        assert not list(data.iter_errors(update)), update
    assert len(updates) == len({json.dumps(u, sort_keys=True) for u in updates})  # an event per change only
    # Once ready, a new stream sends the final document and ends (as the reference's loop does).
    assert stream_updates(devhost.client, task_id) == [updates[-1]]


def test_the_stream_reports_progress_and_ends_revoked(devhost):
    job_id = devhost.client.post(
        "/api/jobs", json={"kind": "simulate", "options": {"chunks": 40, "chunk_seconds": 1}}
    ).json()["id"]
    updates: list[dict[str, Any]] = []
    cancelled = False
    with devhost.client.stream("GET", f"/api/tasks/{job_id}/stream", timeout=120) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            updates.append(json.loads(line.removeprefix("data: ")))
            if updates[-1]["status"] == "PROGRESS" and updates[-1]["result"]["total"] and not cancelled:
                assert devhost.client.delete(f"/api/jobs/{job_id}").status_code == 202
                cancelled = True
            if updates[-1]["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                break
    statuses = [u["status"] for u in updates]
    assert "PROGRESS" in statuses and statuses[-1] == "REVOKED", statuses
    currents = [u["result"]["current"] for u in updates if u["status"] == "PROGRESS"]
    assert currents == sorted(currents) and all(
        u["result"]["total"] in (0, 40) for u in updates if u["status"] == "PROGRESS"
    )


def test_streams_of_unknown_tasks_are_404_problems(devhost):
    assert_problem(devhost.client.get("/api/tasks/" + "0" * 32 + "/stream"), 404)
    assert_problem(devhost.client.post("/api/tasks/" + "0" * 32 + "/stream"), 405)
