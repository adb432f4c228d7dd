"""POST /api/jobs/batch against the real app in devhost: independent items, one result each, retries that
create nothing twice, also after the host was SIGKILLed in the middle of a batch."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient

from devhost.testing.harness import DevHost
from jobs.requests import job_id_for
from storage.admission import partition_key
from storage.indexed_table import INDEX_PARTITION
from storage.names import JOBS_TABLE


def post_batch(host: DevHost, items: list[Any], timeout: float = 300.0) -> httpx.Response:
    return host.client.post("/api/jobs/batch", json={"items": items}, timeout=timeout)


def post_batch_as_a_client_does(host: DevHost, items: list[Any], rounds: int = 4) -> list[dict[str, Any]]:
    """The whole batch again with the same keys while some item answers 503 (docs/api.md: a retry creates
    nothing twice): a host just restarted on a loaded machine may refuse items whose start timed out."""
    for _ in range(rounds):
        response = post_batch(host, items)
        assert response.status_code == 200, response.text
        answers: list[dict[str, Any]] = response.json()["items"]
        if all(answer["status"] != 503 for answer in answers):
            break
        time.sleep(2)
    return answers


def ledger(conn: str, host: DevHost) -> dict[str, Any]:
    with TableServiceClient.from_connection_string(conn) as service:
        return dict(service.get_table_client(JOBS_TABLE).get_entity(partition_key(host.task_hub), "ledger"))


def test_a_batch_answers_each_item_in_order_bad_items_do_not_refuse_the_others(devhost):
    key = f"batch-mixed-{time.time_ns()}"
    items = [
        {"kind": "simulate", "options": {"chunks": 1}, "idempotency_key": key},
        {"kind": "no-such-kind"},
        {"kind": "vector-normalize", "input": {"vector_data": [[3, 4]]}, "priority": "high"},
        {"kind": "simulate", "options": {"chunks": 0}},
        "not an object",
        {"kind": "simulate", "priority": "urgent"},
        {"kind": "simulate", "options": {"chunks": 1}, "idempotency_key": ""},
    ]
    response = post_batch(devhost, items)
    assert response.status_code == 200, response.text
    answers = response.json()["items"]
    assert [a["status"] for a in answers] == [202, 422, 202, 422, 422, 422, 400]
    assert answers[0]["job"]["id"] == job_id_for(key)
    assert answers[0]["location"].endswith(f"/api/jobs/{job_id_for(key)}")
    assert answers[2]["job"]["priority"] == "high" and answers[2]["job"]["kind"] == "vector-normalize"
    assert answers[1]["problem"]["errors"][0]["field"] == "items[1].kind"
    assert any(e["field"].startswith("items[3].options") for e in answers[3]["problem"]["errors"])
    assert any(e["field"] == "items[5].priority" for e in answers[5]["problem"]["errors"])
    assert [e["field"] for e in answers[6]["problem"]["errors"]] == ["items[6].idempotency_key"]  # not a header
    for answer in (answers[0], answers[2]):
        final = devhost.wait_for_job(answer["location"])
        assert final.json()["status"] == "COMPLETED"

    # The same batch again: the keyed item names the same job; the unkeyed good item is a new job.
    again = post_batch(devhost, items).json()["items"]
    assert again[0]["status"] == 202 and again[0]["job"]["id"] == job_id_for(key)
    assert again[0]["job"]["status"] == "COMPLETED"
    assert again[2]["job"]["id"] != answers[2]["job"]["id"]


def test_a_key_repeated_within_a_batch_names_one_job_and_refuses_nothing_else(devhost, azurite):
    key = f"batch-twice-{time.time_ns()}"
    vectors = {"kind": "vector-normalize", "input": {"vector_data": [[3, 4]]}}
    other = {"kind": "vector-normalize", "input": {"vector_data": [[1, 0]]}}
    keyed = {"idempotency_key": key}
    items = [{**vectors, **keyed}, other, {**vectors, **keyed}, {**other, **keyed}]
    for attempt in range(2):  # the batch, then the same batch again: nothing new, the same answers
        answers = post_batch(devhost, items).json()["items"]
        assert [a["status"] for a in answers] == [202, 202, 202, 409], answers
        assert answers[0]["job"]["id"] == answers[2]["job"]["id"] == job_id_for(key)
        assert answers[1]["job"]["id"] != job_id_for(key)
        problem = answers[3]["problem"]
        assert problem["type"].endswith(":idempotency-key-reused")
        assert [e["field"] for e in problem["errors"]] == ["items[3].idempotency_key"]
        if attempt == 0:
            for answer in answers[:3]:
                assert devhost.wait_for_job(answer["location"]).json()["status"] == "COMPLETED"
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        rows = list(service.get_table_client(JOBS_TABLE).query_entities(f"job_id eq '{job_id_for(key)}'"))
    assert len([row for row in rows if row["PartitionKey"] == INDEX_PARTITION]) == 1  # listed once


def test_a_batch_document_of_the_wrong_shape_is_refused_whole(devhost):
    bodies: list[Any] = [{"items": []}, {"items": [{}] * 1001}, {"jobs": []}, [1, 2]]
    for body in bodies:
        response = devhost.client.post("/api/jobs/batch", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    assert devhost.client.get("/api/jobs/batch").status_code == 405
    extra = devhost.client.post("/api/jobs/batch", json={"items": [{"kind": "simulate"}], "extra": 1})
    assert extra.status_code == 422 and extra.json()["errors"] == [{"field": "extra", "message": "unknown field"}]
    # One item's number that no double holds makes the document malformed: refused whole, not one item's 503.
    overflow = b'{"items": [{"kind": "simulate"}, {"kind": "vector-normalize", "input": {"vector_data": [[3, 4]], '
    overflow += b'"metadata": {"x": 1e999}}}]}'
    response = devhost.client.post("/api/jobs/batch", content=overflow, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"


@pytest.mark.timeout(900)
def test_a_batch_retried_after_the_host_was_killed_mid_batch_creates_every_job_exactly_once(devhost_factory, azurite):
    """SIGKILL of the host (and its workers) while a 200-item batch is being written and started, then the
    whole batch again with the same keys: every item names its one job, every job completes once, and the
    admission ledger ends with nothing running and nothing waiting: no place was taken twice or lost."""
    host = devhost_factory()
    run = time.time_ns()
    items = [{"kind": "simulate", "options": {"chunks": 1}, "idempotency_key": f"killed-{run}-{n}"} for n in range(200)]
    first: dict[str, Any] = {}

    def send() -> None:
        try:
            first["response"] = post_batch(host, items)
        except httpx.HTTPError as exc:
            first["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    job_ids = [job_id_for(str(item["idempotency_key"])) for item in items]
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = service.get_table_client(JOBS_TABLE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once the batch has recorded some of its jobs
            try:
                if any(True for _ in table.query_entities(f"PartitionKey eq '{job_ids[-1]}'")):
                    break
            except ResourceNotFoundError:
                pass  # the app has not created its tables yet
            time.sleep(0.05)
    host.kill()
    sender.join(30)
    assert "response" not in first, "the batch finished before the kill; the test proves nothing"

    host.start()
    answers = post_batch_as_a_client_does(host, items)
    assert [a["status"] for a in answers] == [202] * len(items), answers[0]
    assert [a["job"]["id"] for a in answers] == job_ids
    for job_id in job_ids:
        final = host.wait_for_job(f"/api/jobs/{job_id}", timeout=180)
        assert final.json()["status"] == "COMPLETED", final.text
    state = ledger(azurite.connection_string, host)
    assert state["running"] == 0 and all(v == 0 for v in _counts(state["pending"]).values()), state
    assert sum(_counts(state["joined"]).values()) == len(items)  # each job joined its lane exactly once


def _counts(raw: str) -> dict[str, int]:
    return {k: int(v) for k, v in json.loads(raw).items()}
