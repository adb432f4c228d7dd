"""The HTTP contract through the devhost: status codes, headers and the job resource."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.api.probes import eventually, instances
from tests.conftest import DEFAULT_TEST_ENV

JOB_KEYS = {"id", "kind", "status", "created_at", "updated_at", "progress", "links"}


def submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/api/jobs", json=body, headers=headers)


def simulate(chunks: int = 1, chunk_seconds: float = 0, **options: Any) -> dict[str, Any]:
    return {"kind": "simulate", "options": {"chunks": chunks, "chunk_seconds": chunk_seconds, **options}}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:longrun:problem:") and body["title"] and body["detail"]
    return body


def test_submit_answers_202_with_location_retry_after_and_the_job(devhost):
    response = submit(devhost.client, simulate())
    assert response.status_code == 202, response.text
    job = response.json()
    assert JOB_KEYS <= set(job)
    assert re.fullmatch(r"[0-9a-f]{32}", job["id"])
    assert response.headers["location"] == f"{devhost.base_url}/api/jobs/{job['id']}"
    assert int(response.headers["retry-after"]) >= 1
    assert job["kind"] == "simulate" and job["status"] in ("PENDING", "RUNNING")
    assert job["links"] == {
        "self": response.headers["location"],
        "result": response.headers["location"] + "/result",
        "cancel": response.headers["location"],
    }
    assert set(job["progress"]) == {"completed", "total", "percent"}
    # Never the input, the system key or Durable's own URLs.
    assert "input" not in job and "runtime/webhooks" not in response.text and "code=" not in response.text


def test_a_job_is_polled_with_202_until_it_completes_with_200_and_a_result(devhost):
    response = submit(devhost.client, simulate(chunks=3))
    location = response.headers["location"]
    polled = devhost.client.get(location)
    if polled.status_code == 202:
        assert polled.headers["location"] == location and int(polled.headers["retry-after"]) >= 1
    final = devhost.wait_for_job(location)
    assert final.status_code == 200, final.text
    job = final.json()
    assert job["status"] == "COMPLETED"
    assert job["progress"]["percent"] == 100.0
    assert isinstance(job["result"], dict) and "error" not in job
    assert "retry-after" not in final.headers
    result = devhost.client.get(job["links"]["result"])
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    assert result.json()["chunks"] == 3


def test_unknown_jobs_are_404_problems(devhost):
    for path in ("/api/jobs/" + "0" * 32, "/api/jobs/not-a-job-id", "/api/jobs/" + "0" * 32 + "/result"):
        assert_problem(devhost.client.get(path), 404)
    assert_problem(devhost.client.delete("/api/jobs/" + "f" * 32), 404)


def test_the_result_is_409_until_completed_and_cancel_ends_the_job_cancelled(devhost):
    response = submit(devhost.client, simulate(chunks=2, chunk_seconds=20))
    job = response.json()
    running = devhost.client.get(job["links"]["result"])
    assert_problem(running, 409)
    assert running.headers["retry-after"] == "1"  # a young job's poll interval
    cancel = devhost.client.delete(job["links"]["cancel"])
    assert cancel.status_code == 202, cancel.text
    assert cancel.headers["location"] == job["links"]["self"]
    final = devhost.wait_for_job(job["links"]["self"], timeout=60)
    assert final.status_code == 200
    assert final.json()["status"] == "CANCELLED"
    ended = devhost.client.get(job["links"]["result"])
    assert_problem(ended, 409)
    assert "retry-after" not in ended.headers  # it never will be COMPLETED
    again = devhost.client.delete(job["links"]["cancel"])  # finished: changes nothing
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"


def test_a_failed_job_reports_its_error_and_is_dead_lettered_and_replayable(devhost):
    job = submit(devhost.client, simulate(chunks=1, permanent_failure=True)).json()
    final = devhost.wait_for_job(job["links"]["self"], timeout=90)
    assert final.status_code == 200
    failed = final.json()
    assert failed["status"] == "FAILED" and "result" not in failed
    assert set(failed["error"]) == {"type", "message", "attempts"} and failed["error"]["attempts"] >= 1
    assert_problem(devhost.client.get(job["links"]["result"]), 409)

    def dead_letter():
        items = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
        return next((item for item in items if item["job_id"] == job["id"]), None)

    record = eventually(dead_letter, timeout=30)
    assert record["source"] == "job" and record["kind"] == "simulate" and record["reason"]
    replay = devhost.client.post(record["links"]["replay"])
    assert replay.status_code == 202, replay.text
    replayed = replay.json()
    assert replayed["id"] != job["id"] and replayed["kind"] == "simulate"
    assert replay.headers["location"] == f"{devhost.base_url}/api/jobs/{replayed['id']}"
    assert_problem(devhost.client.post("/api/dead-letters/no-such-record/replay"), 404)


def test_wrong_methods_are_405_problems_with_allow(devhost):
    response = devhost.client.put("/api/jobs", json={})
    assert_problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    response = devhost.client.post("/api/jobs/" + "0" * 32)
    assert_problem(response, 405)
    assert "DELETE" in response.headers["allow"]
    for method in ("POST", "PUT", "PATCH", "DELETE"):  # the anonymous route too (it was the host's 404)
        response = devhost.client.request(method, "/api/health")
        assert_problem(response, 405)
        assert response.headers["allow"] == "GET"


def test_jobs_are_listed_newest_first_with_filters_and_continuation(devhost):
    ids = [submit(devhost.client, simulate()).json()["id"] for _ in range(3)]
    first = devhost.client.get("/api/jobs", params={"limit": 2, "kind": "simulate"})
    assert first.status_code == 200
    page = first.json()
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    assert page["continuation"]
    second = devhost.client.get(
        "/api/jobs", params={"limit": 2, "kind": "simulate", "continuation": page["continuation"]}
    ).json()
    assert second["items"][0]["id"] == ids[0]
    for item in page["items"] + second["items"]:
        assert JOB_KEYS <= set(item) and item["kind"] == "simulate"

    devhost.wait_for_job(f"/api/jobs/{ids[-1]}")

    def completed_ids() -> list[str]:
        page = devhost.client.get("/api/jobs", params={"status": "COMPLETED", "limit": 100}).json()
        return [item["id"] for item in page["items"]]

    eventually(lambda: ids[-1] in completed_ids())
    for item in devhost.client.get("/api/jobs", params={"status": "COMPLETED"}).json()["items"]:
        assert item["status"] == "COMPLETED"

    for params in ({"status": "DONE"}, {"limit": "0"}, {"limit": "abc"}, {"limit": "\u00b2"}, {"kind": "x"}):
        assert_problem(devhost.client.get("/api/jobs", params=params), 422)
    assert_problem(devhost.client.get("/api/jobs", params={"continuation": "bogus"}), 422)


def test_the_openapi_document_describes_the_contract(devhost):
    response = devhost.client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/result", "/api/uploads", "/api/health"} <= set(
        doc["paths"]
    )
    assert doc["servers"] == [{"url": devhost.base_url}]
    # Every answer that tells the client to come back declares when (docs/api.md, Errors).
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status in ("429", "503"):
                if status in operation["responses"]:
                    assert "Retry-After" in operation["responses"][status].get("headers", {}), (path, method, status)
    assert "Retry-After" in doc["paths"]["/api/jobs/{job_id}/result"]["get"]["responses"]["409"]["headers"]


@pytest.mark.parametrize(
    ("method", "path", "template", "request_args"),
    [
        ("POST", "/api/uploads", "/api/uploads", {"content": b"\x00", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/api/uploads", "/api/uploads", {"content": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/api/uploads", "/api/uploads", {"json": {"content_type": "text/csv", "pad": " " * 5000}}),
        (
            "POST",
            "/api/dead-letters/0/replay",
            "/api/dead-letters/{record_id}/replay",
            {"headers": {"Idempotency-Key": ""}},
        ),
        ("GET", "/api/dead-letters", "/api/dead-letters", {"params": {"continuation": "bogus"}}),
        ("GET", "/api/jobs", "/api/jobs", {"params": {"continuation": "bogus"}}),
        ("GET", f"/api/jobs/{'0' * 32}/events", "/api/jobs/{job_id}/events", {"headers": {"Last-Event-ID": "x"}}),
    ],
)
def test_refusals_answer_a_status_the_openapi_document_lists(devhost, method, path, template, request_args):
    responses = devhost.client.get("/api/openapi.json").json()["paths"][template][method.lower()]["responses"]
    response = devhost.client.request(method, path, **request_args)
    assert 400 <= response.status_code < 500, response.text
    assert str(response.status_code) in responses, (response.status_code, sorted(responses))
    assert_problem(response, response.status_code)


def test_health_reports_storage_queue_depths_and_job_counts(devhost):
    response = devhost.client.get("/api/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["storage"] == "ok"
    assert set(body["queues"]) == {
        "jobs-inbox",
        "jobs-inbox-poison",
        "jobs-deadletter",
        "jobs-admitted",
        "webhook-events",
    }
    assert all(isinstance(depth, int) for depth in body["queues"].values())
    assert set(body["jobs"]) == {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"}


def test_health_is_503_within_seconds_when_storage_is_unreachable():
    storage = Azurite.start()
    host = DevHost(storage.connection_string, env=dict(DEFAULT_TEST_ENV)).start()
    try:
        assert host.client.get("/api/health").status_code == 200
        storage.stop()
        started = time.monotonic()
        response = host.client.get("/api/health")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert time.monotonic() - started < 10
    finally:
        host.kill()
        storage.stop()


@pytest.mark.parametrize("public", ["https://gateway.example.com/longrun", "https://gateway.example.com/longrun/"])
def test_links_use_public_base_url_behind_a_gateway(devhost_factory, public):
    host = devhost_factory(env={"PUBLIC_BASE_URL": public})
    response = submit(host.client, simulate())
    assert response.status_code == 202
    job_id = response.json()["id"]
    expected = f"https://gateway.example.com/longrun/api/jobs/{job_id}"
    assert response.headers["location"] == expected
    assert response.json()["links"]["self"] == expected
    polled = host.client.get(f"/api/jobs/{job_id}")
    assert polled.json()["links"]["result"] == expected + "/result"
    assert [i["instanceId"] for i in instances(host, instanceIdPrefix=job_id)] == [job_id]


def test_listed_running_jobs_show_live_status_and_progress(devhost):
    job_id = submit(devhost.client, simulate(chunks=4, chunk_seconds=1)).json()["id"]

    def listed() -> dict[str, Any] | None:
        items = devhost.client.get("/api/jobs", params={"kind": "simulate", "limit": 100}).json()["items"]
        item = next(item for item in items if item["id"] == job_id)
        return item if item["status"] == "RUNNING" and item["progress"]["total"] == 4 else None

    item = eventually(listed, timeout=30, interval=0.2)  # the row alone would say 0 of 0
    assert 0 <= item["progress"]["completed"] <= 4
    done = devhost.wait_for_job(f"/api/jobs/{job_id}").json()
    items = devhost.client.get("/api/jobs", params={"kind": "simulate", "limit": 100}).json()["items"]
    assert next(item for item in items if item["id"] == job_id)["status"] == done["status"] == "COMPLETED"
