"""Webhooks end to end: the real app on devhost POSTs to a real receiver on loopback that verifies each
request with standardwebhooks. Success, retries with one webhook-id, Retry-After, 4xx not retried, a
receiver that always fails (dead letter, the breaker opens, later jobs wait instead of calling, the
breaker recovers), the job's outcome untouched by any of it, and the replay of a webhook dead letter.

Settings are short so that a breaker period takes seconds: three failures open it for OPEN_SECONDS,
three attempts per event with 0.2 s..1 s backoff.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.api.documented import Contract
from tests.conftest import DEFAULT_TEST_ENV
from tests.webhooks.receiver import TEST_SECRET, Receiver

pytestmark = pytest.mark.slow

OPEN_SECONDS = 4.0
WEBHOOK_ENV = {
    "WEBHOOK_SECRET": TEST_SECRET,
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_BREAKER_FAILURES": "3",
    "WEBHOOK_BREAKER_OPEN_SECONDS": str(OPEN_SECONDS),
    "WEBHOOK_PROGRESS_SECONDS": "0.1",
}


@pytest.fixture(scope="module")
def host(azurite: Azurite) -> Iterator[DevHost]:
    server = DevHost(azurite.connection_string, env={**DEFAULT_TEST_ENV, **WEBHOOK_ENV}).start()
    try:
        yield server
    finally:
        server.stop(timeout=20)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


def submit(host: DevHost, receiver: Receiver, events: list[str] | None = None, **options: Any) -> str:
    callback: dict[str, Any] = {"url": receiver.url()}
    if events is not None:
        callback["events"] = events
    body = {"kind": "simulate", "options": {"chunks": 1, **options}, "callback": callback}
    response = host.client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def finished_job(host: DevHost, job_id: str) -> dict[str, Any]:
    response = host.wait_for_job(f"/api/jobs/{job_id}", timeout=60)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def dead_letter(host: DevHost, record_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = host.client.get(f"/api/dead-letters/{record_id}")
        if response.status_code == 200:
            contract = Contract(host.client.get("/api/openapi.json").json())
            contract.check(response)
            assert not contract.broken, contract.broken
            record: dict[str, Any] = response.json()
            return record
        time.sleep(0.1)
    raise TimeoutError(f"no dead letter {record_id}")


def breaker_state(host: DevHost, key: str, want: str, timeout: float = 12.0) -> str:
    """The state /api/health shows for a breaker ("closed" when unlisted), polled until it is `want`
    (health caches its details for 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = host.client.get("/api/health").json().get("webhook_breakers", {})
        state = str(found.get(key, {}).get("state", "closed"))
        if state == want or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def for_job(job_id: str) -> Any:
    return lambda deliveries: [d for d in deliveries if d.json["data"]["id"] == job_id]


def documented_delivery(host: DevHost) -> Draft202012Validator:
    """The body of a delivery as the OpenAPI document's `webhooks.jobEvent` describes it (members it does not
    name refused)."""
    contract = Contract(host.client.get("/api/openapi.json").json())
    return contract.schema(
        contract.doc["webhooks"]["jobEvent"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    )


def test_a_finished_job_is_posted_once_signed_with_the_job_resource(host: DevHost, receiver: Receiver) -> None:
    job_id = submit(host, receiver)
    (delivery,) = receiver.wait_for(lambda got: len(got) >= 1)
    assert delivery.verified, "standardwebhooks could not verify the signature"
    assert not list(documented_delivery(host).iter_errors(delivery.json)), delivery.json
    assert delivery.headers["webhook-id"] == f"msg_{job_id}_completed"
    assert delivery.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert delivery.headers["content-type"] == "application/json"
    body = delivery.json
    assert body["type"] == "job.completed" and body["timestamp"].endswith("Z")
    job = finished_job(host, job_id)
    # The job was final before its delivery started, and the event carries its resource.
    assert body["data"]["status"] == job["status"] == "COMPLETED"
    for key in ("id", "kind", "status", "created_at", "progress", "result", "priority", "trace_id"):
        assert body["data"][key] == job[key], key
    time.sleep(1.0)
    assert receiver.count() == 1, "a delivered event is not sent again"


def test_progress_events_are_sent_when_subscribed_each_with_its_own_id(host: DevHost, receiver: Receiver) -> None:
    job_id = submit(host, receiver, events=["progress", "completed"], chunks=3, chunk_seconds=0.3)
    # Each event is a delivery of its own: a progress event may arrive after the completed one.
    got = receiver.wait_for(lambda got: {"job.completed", "job.progress"} <= {d.json["type"] for d in got})
    progress = [d for d in got if d.json["type"] == "job.progress"]
    assert progress, "no progress event"
    assert all(d.verified and d.json["data"]["status"] == "RUNNING" for d in progress)
    documented = documented_delivery(host)
    assert not [error.message for d in got for error in documented.iter_errors(d.json)]
    ids = [d.headers["webhook-id"] for d in got]
    assert len(set(ids)) == len(ids) and f"msg_{job_id}_completed" in ids


def test_a_receiver_failing_twice_gets_the_same_webhook_id_three_times(host: DevHost, receiver: Receiver) -> None:
    receiver.answer([503, 500, 200])
    job_id = submit(host, receiver)
    got = receiver.wait_for(lambda got: len(got) >= 3)
    assert [d.status for d in got] == [503, 500, 200]
    assert {d.headers["webhook-id"] for d in got} == {f"msg_{job_id}_completed"}
    assert all(d.verified for d in got)
    assert len({d.body for d in got}) == 1, "every attempt sends the same body"
    time.sleep(1.0)
    assert receiver.count() == 3


def test_retry_after_is_honoured(host: DevHost, receiver: Receiver) -> None:
    receiver.answer([429, 200])
    receiver.retry_after = "3"
    submit(host, receiver)
    first, second = receiver.wait_for(lambda got: len(got) >= 2)
    assert second.at - first.at >= 2.9, "the retry came before the receiver's Retry-After (backoff alone is 0.2 s)"


def test_a_4xx_is_not_retried_and_becomes_a_dead_letter(host: DevHost, receiver: Receiver) -> None:
    receiver.answer([410])
    job_id = submit(host, receiver)
    record = dead_letter(host, f"webhook-msg_{job_id}_completed")
    assert record["source"] == "webhook" and record["error_type"] == "webhook_rejected" and record["attempts"] == 1
    assert record["job_id"] == job_id and record["webhook"]["webhook_id"] == f"msg_{job_id}_completed"
    time.sleep(1.5)
    assert receiver.count() == 1
    assert finished_job(host, job_id)["status"] == "COMPLETED"


def test_an_always_failing_receiver_opens_the_breaker_and_is_not_hammered_then_recovers(
    host: DevHost, receiver: Receiver
) -> None:
    receiver.answer([500])
    began = time.monotonic()  # the breaker opens after this: a bound on how many open periods the test sees
    first = submit(host, receiver)
    record = dead_letter(host, f"webhook-msg_{first}_completed")
    assert record["error_type"] == "webhook_retries_exhausted" and record["attempts"] == 3
    assert receiver.count() == 3
    # A failing webhook never changes the job's own outcome.
    assert finished_job(host, first)["status"] == "COMPLETED"
    key = f"127.0.0.1:{receiver.port}"
    assert breaker_state(host, key, "open") == "open"

    # Two more jobs while the host keeps failing: their deliveries wait for the breaker instead of calling.
    later = [submit(host, receiver), submit(host, receiver)]
    for job_id in later:
        assert finished_job(host, job_id)["status"] == "COMPLETED"
    failing_until = time.monotonic() + OPEN_SECONDS + 2.0
    while time.monotonic() < failing_until:
        time.sleep(0.2)
    # Without a breaker: 2 jobs × 3 attempts within ~2 s. With it: at most one probe per open period, and
    # how many periods pass depends on how fast the machine ran the jobs (two, when it is quick).
    during = receiver.count() - 3
    periods = 1 + int((time.monotonic() - began) // OPEN_SECONDS)
    assert during <= min(periods, 5), f"the failing host was called {during} times while its breaker was open"

    receiver.answer([200])
    got = receiver.wait_for(lambda got: all(for_job(job_id)(got) and got[-1].status == 200 for job_id in later)
                            and {d.json["data"]["id"] for d in got if d.status == 200} >= set(later),
                            timeout=4 * OPEN_SECONDS + 20)  # fmt: skip
    delivered = {d.json["data"]["id"] for d in got if d.status == 200}
    assert delivered >= set(later)
    assert all(d.verified for d in got)
    assert breaker_state(host, key, "closed") == "closed", "the breaker closed again after the successful probe"

    # The dead letter of the first job's event replays with the same webhook-id and body.
    original = [d for d in got if d.json["data"]["id"] == first]
    response = host.client.post(f"/api/dead-letters/{record['id']}/replay")
    assert response.status_code == 202, response.text
    assert response.headers["location"].endswith(f"/api/jobs/{first}")
    assert response.json()["webhook_id"] == f"msg_{first}_completed"
    again = receiver.wait_for(lambda got: len([d for d in got if d.json["data"]["id"] == first]) > len(original))
    replayed = [d for d in again if d.json["data"]["id"] == first][-1]
    assert replayed.status == 200 and replayed.verified
    assert replayed.headers["webhook-id"] == f"msg_{first}_completed"
    assert replayed.body == original[0].body


def test_replaying_an_unknown_webhook_dead_letter_is_404(host: DevHost) -> None:
    response = host.client.post("/api/dead-letters/webhook-msg_nothing_completed/replay")
    assert response.status_code == 404
