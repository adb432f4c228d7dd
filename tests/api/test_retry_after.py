"""A poll's Retry-After for a job queued behind others (issue #15): when its turn is likely to come.

Every poll of a job that has not begun answers PENDING again and, in Azure, is a billed execution and a table
read. Under a burst, the age-based interval (1 s for a young job) makes a client poll a queued job once a
second for as long as it waits; the poll now says when jobs admitted before it are likely to be done
(jobs.queue_progress), and falls back to the interval when it cannot tell.

One worker process with two threads, so a burst of 0.4 s jobs queues for several seconds and the process that
answers the polls is the one that runs the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from devhost.testing.harness import DevHost

JOBS = 40
JOB_SECONDS = 0.4
BURST_ENV = {"FUNCTIONS_WORKER_PROCESS_COUNT": "1", "PYTHON_THREADPOOL_THREAD_COUNT": "2"}


def _submit(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        answer = client.post(
            "/api/jobs", json={"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": JOB_SECONDS}}
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])


def test_a_job_behind_a_backlog_is_told_when_its_turn_comes(devhost_factory: Callable[..., DevHost]) -> None:
    host = devhost_factory(env=BURST_ENV)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: _submit(host.base_url), range(JOBS)))
    last = ids[-1]
    # Once a few jobs have begun, two at a time, the queue's pace is known (1.5 s after the burst on a quiet
    # machine; a busy one starts them later, so the poll is repeated), and the last job, some 30 behind, is
    # told to wait longer than the age-based interval alone (1 s) while it is still pending.
    time.sleep(1.5)
    deadline = time.monotonic() + 20
    while True:
        poll = host.client.get(f"/api/jobs/{last}")
        asked_at = time.monotonic()
        assert poll.status_code == 202, poll.text
        assert poll.json()["status"] == "PENDING", "the last job began before its poll was told to wait longer"
        assert "queue" not in poll.json()  # admitted at once: it waits for a worker, not for admission
        retry_after = int(poll.headers["retry-after"])
        if retry_after >= 2:
            break
        assert asked_at < deadline, "the age-based interval alone, with some 30 jobs ahead of it, two at a time"
        time.sleep(0.3)
    # A job submitted now joins the back of the queue: its 202 says so too.
    late = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 0}})
    assert late.status_code == 202, late.text
    assert int(late.headers["retry-after"]) >= 2
    # Not longer than the job took: the client is not sent away past its completion by more than a second.
    done: dict[str, Any] = host.wait_for_job(f"/api/jobs/{last}", timeout=60).json()
    waited = time.monotonic() - asked_at
    assert done["status"] == "COMPLETED"
    assert retry_after <= waited + 1.5, (retry_after, waited)


def test_a_lone_young_job_is_polled_every_second(devhost_factory: Callable[..., DevHost]) -> None:
    """No backlog, no estimate: the interval of docs/api.md (1 s for a job's first 10 s)."""
    host = devhost_factory(env=BURST_ENV)
    job_id = _submit(host.base_url)
    poll = host.client.get(f"/api/jobs/{job_id}")
    assert poll.status_code == 202 and poll.headers["retry-after"] == "1"
