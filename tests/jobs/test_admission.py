"""Admission control end to end: the real app in devhost, on Azurite, with small limits so that lanes and caps bite.

Each test starts its own host (its own task hub, so its own admission ledger) with the limits it needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.testing.harness import DevHost
from jobs.requests import job_id_for
from storage.admission import Ledger, Partition, QueueEntry, entries_enqueued_before, partition_key, read_ledger
from storage.names import INBOX_POISON_QUEUE, INBOX_QUEUE, JOBS_TABLE
from tests.api.probes import count_job_rows

SLOW = {"chunks": 2, "chunk_seconds": 60}  # runs until cancelled, for any test here


def submit(
    host: DevHost, options: dict[str, Any], priority: str | None = None, client: str | None = None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"kind": "simulate", "options": options, **extra}
    if priority is not None:
        body["priority"] = priority
    headers = {"X-Client-Id": client} if client else {}
    return host.client.post("/api/jobs", json=body, headers=headers)


def accepted(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def job(host: DevHost, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = host.client.get(f"/api/jobs/{job_id}").json()
    return body


def wait_until(predicate: Callable[[], bool], timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def status(host: DevHost, job_id: str) -> str:
    return str(job(host, job_id)["status"])


def cancel_all(host: DevHost, job_ids: list[str]) -> None:
    for job_id in job_ids:
        host.client.delete(f"/api/jobs/{job_id}")


def test_high_jobs_overtake_a_low_backlog_by_their_fair_share_and_lows_keep_their_order(devhost_factory):
    """100 low jobs wait behind one slot, then 5 high ones arrive. With weights 6:3:1 the highs take the next
    slots but one in seven, which goes to the oldest low: every high is admitted before the lows still
    waiting, but for at most that one fair-share low; and the lows run oldest first."""
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "1"})
    quick = {"chunks": 1, "chunk_seconds": 0.2}
    blocker = accepted(submit(host, SLOW, "low"))
    wait_until(lambda: status(host, blocker) == "RUNNING", what="the first job to run")
    lows = [accepted(submit(host, quick, "low")) for _ in range(99)]
    waiting = job(host, lows[-1])
    assert waiting["status"] == "PENDING" and waiting["priority"] == "low"
    assert waiting["queue"]["lane"] == "low" and waiting["queue"]["approximate"] is True
    assert waiting["queue"]["position"] == 99
    highs = [accepted(submit(host, quick, "high")) for _ in range(5)]
    assert job(host, highs[-1])["queue"]["position"] == 5
    host.client.delete(f"/api/jobs/{blocker}")  # its slot is given back when it ends: admission starts

    wait_until(lambda: all(status(host, h) == "COMPLETED" for h in highs), timeout=120, what="the high jobs")
    # One slot: jobs end in the order they were admitted, so end times give the admission order.
    finished_at = {h: job(host, h)["updated_at"] for h in highs}
    last_high = max(finished_at.values())
    early_lows = [low for low in lows[:10] if job(host, low)["status"] == "COMPLETED"]
    early_lows = [low for low in early_lows if job(host, low)["updated_at"] < last_high]
    # The fair share of the low lane next to the high one is 1 in 7 (6:1): at most one low in between.
    assert len(early_lows) <= 1, f"{len(early_lows)} low jobs overtook the high ones"
    assert early_lows == lows[: len(early_lows)]  # FIFO: the oldest low first
    assert sorted(highs, key=lambda h: finished_at[h]) == highs  # FIFO within the high lane too

    # And the lows are not starved: with the highs gone they run, oldest first.
    wait_until(lambda: status(host, lows[2]) == "COMPLETED", timeout=60, what="the low lane to move on")
    assert status(host, lows[0]) == "COMPLETED" and status(host, lows[1]) == "COMPLETED"
    cancel_all(host, lows[3:])
    wait_until(lambda: status(host, lows[-1]) == "CANCELLED", what="a pending job to end cancelled")


def test_a_client_at_its_cap_waits_while_other_clients_run(devhost_factory):
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "3", "MAX_RUNNING_JOBS_PER_CLIENT": "1"})
    greedy = [accepted(submit(host, SLOW, client="greedy")) for _ in range(3)]
    polite = accepted(submit(host, SLOW, client="polite"))
    wait_until(lambda: status(host, polite) == "RUNNING", what="the other client's job to run")
    statuses = [status(host, job_id) for job_id in greedy]
    assert statuses.count("RUNNING") == 1 and statuses.count("PENDING") == 2, statuses
    waiting = job(host, greedy[2])
    assert waiting["queue"]["lane"] == "normal"
    # A slot is free (3 allowed, 2 run), yet the greedy client's next job stays queued.
    time.sleep(2)
    assert [status(host, job_id) for job_id in greedy].count("RUNNING") == 1
    cancel_all(host, greedy + [polite])


def test_past_max_pending_jobs_a_submit_gets_429_and_nothing_is_stored(devhost_factory, azurite):
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "1", "MAX_PENDING_JOBS": "2"})
    running = accepted(submit(host, SLOW))
    wait_until(lambda: status(host, running) == "RUNNING", what="the first job to run")
    queued = [accepted(submit(host, SLOW)) for _ in range(2)]
    assert [job(host, job_id)["queue"]["position"] for job_id in queued] == [1, 2]
    rows = count_job_rows(azurite.connection_string)

    refused = submit(host, SLOW, priority="high")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    problem = refused.json()
    assert problem["status"] == 429 and problem["type"] == "urn:longrun:problem:too-many-pending-jobs"
    keyed = host.client.post(
        "/api/jobs", json={"kind": "simulate", "options": SLOW}, headers={"Idempotency-Key": "refused-when-full"}
    )
    assert keyed.status_code == 429
    assert count_job_rows(azurite.connection_string) == rows  # nothing stored

    # The queue door does not dead-letter: the message is put back and submitted once there is room.
    inbox = QueueClient.from_connection_string(
        azurite.connection_string, INBOX_QUEUE, message_encode_policy=TextBase64EncodePolicy()
    )
    key = f"deferred-{host.task_hub}"
    inbox.send_message(json.dumps({"kind": "simulate", "options": {"chunks": 1}, "idempotency_key": key}))
    time.sleep(4)
    assert count_job_rows(azurite.connection_string) == rows  # still refused, and not poisoned
    assert "(Succeeded" in host.logs().split("queue=jobs-inbox")[0].rsplit("intake_job", 1)[-1]  # not a failure
    cancel_all(host, queued)

    wait_until(lambda: host.client.get(f"/api/jobs/{job_id_for(key)}").status_code in (200, 202), timeout=60,
               what="the deferred message to be submitted")  # fmt: skip
    poison = QueueClient.from_connection_string(azurite.connection_string, INBOX_POISON_QUEUE)
    assert poison.get_queue_properties().approximate_message_count == 0
    cancel_all(host, [running])


def test_pending_jobs_can_be_cancelled_and_their_deadline_counts_from_submit(devhost_factory):
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "1"})
    running = accepted(submit(host, SLOW))
    wait_until(lambda: status(host, running) == "RUNNING", what="the first job to run")
    to_cancel = accepted(submit(host, SLOW))
    with_deadline = accepted(submit(host, SLOW, deadline_seconds=4))
    assert status(host, to_cancel) == "PENDING"

    started = time.monotonic()
    response = host.client.delete(f"/api/jobs/{to_cancel}")
    assert response.status_code == 202
    wait_until(lambda: status(host, to_cancel) == "CANCELLED", timeout=30, what="the pending job to be cancelled")
    assert time.monotonic() - started < 20

    final = host.wait_for_job(f"/api/jobs/{with_deadline}", timeout=30)
    assert final.status_code == 200
    body = final.json()
    assert body["status"] == "FAILED" and body["error"]["type"] == "deadline_exceeded"
    assert status(host, running) == "RUNNING"  # neither took the running job's slot
    cancel_all(host, [running])
    final = host.wait_for_job(f"/api/jobs/{running}", timeout=60)
    assert final.json()["status"] == "CANCELLED"
    # Every place was given back: a new job is admitted at once.
    fresh = accepted(submit(host, {"chunks": 1}))
    assert host.wait_for_job(f"/api/jobs/{fresh}", timeout=30).json()["status"] == "COMPLETED"


def _ledger_and_rows(conn: str, task_hub: str) -> tuple[Ledger, list[QueueEntry]]:
    table = TableServiceClient.from_connection_string(conn).get_table_client(JOBS_TABLE)
    part = Partition(table, partition_key(task_hub))
    return read_ledger(part), entries_enqueued_before(part, "9999")


def test_concurrent_single_submits_are_each_counted_once_in_the_ledger(devhost_factory, azurite):
    """16 clients submit at once (their ledger changes ride in shared transactions: jobs.group_commit), some
    retrying with the same key: every job gets exactly one queue row, the ledger's counters equal the rows,
    as many run as MAX_RUNNING_JOBS allows, the rest wait, and cancelling all gives every place back."""
    host = devhost_factory(env={"MAX_RUNNING_JOBS": "4"})

    def post(n: int) -> str:
        headers = {"Idempotency-Key": f"concurrent-{host.task_hub}-{n % 24}"}  # 8 of 32 are retries
        response = host.client.post("/api/jobs", json={"kind": "simulate", "options": SLOW}, headers=headers)
        return accepted(response)

    with ThreadPoolExecutor(16) as pool:
        job_ids = set(pool.map(post, range(32)))
    assert len(job_ids) == 24

    ledger, rows = _ledger_and_rows(azurite.connection_string, host.task_hub)
    assert sorted(row.job_id for row in rows) == sorted(job_ids)  # one row each: none twice, none forgotten
    admitted = [row.job_id for row in rows if row.admitted]
    assert ledger.running == len(admitted) == 4
    assert ledger.pending == {"normal": 20} and ledger.joined == {"normal": 24}
    wait_until(lambda: sorted(status(host, j) for j in job_ids) == ["PENDING"] * 20 + ["RUNNING"] * 4,
               what="4 jobs running, 20 waiting")  # fmt: skip
    assert {j for j in job_ids if status(host, j) == "RUNNING"} == set(admitted)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda j: host.client.delete(f"/api/jobs/{j}"), job_ids))
    wait_until(lambda: all(status(host, j) == "CANCELLED" for j in job_ids), timeout=120, what="all cancelled")
    ledger, rows = _ledger_and_rows(azurite.connection_string, host.task_hub)
    assert rows == [] and ledger.running == 0 and ledger.waiting == 0
