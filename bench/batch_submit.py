"""Bulk submission: 1,000 jobs through one POST /api/jobs/batch vs 1,000 POST /api/jobs from 16 clients.

Target (issue #13): the batch takes at most 0.2 of the time of the single submits.
Run: `.venv/bin/python -m bench.batch_submit [--jobs 1000] [--clients 16]`.

Each way runs against a fresh devhost on an Azurite of its own (on disk, as `make run` uses it), so the
jobs the first way started, and the rows they left, do not load the second. The jobs are one-chunk simulate jobs; the
time measured is the client's: from the first request sent to the last answer received (every job
recorded and in its admission lane; both ways answer before the orchestrations start, docs/api.md). Beside
it, the time until every job's orchestration has started (its row in the task hub's Instances table, read
straight from Azurite), so the starts deferred past the answer are counted too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from azure.data.tables import TableServiceClient

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost

TARGET_RATIO = 0.2


def job(n: int, run: str) -> dict[str, Any]:
    """One small job with its own idempotency key."""
    return {"kind": "simulate", "options": {"chunks": 1}, "idempotency_key": f"bench-{run}-{n}"}


def all_started(host: DevHost, jobs: int, since: float, timeout: float = 600.0) -> float:
    """Seconds from `since` until the task hub holds `jobs` orchestration instances (every job started)."""
    table = TableServiceClient.from_connection_string(host.connection_string).get_table_client(
        f"{host.task_hub}Instances"
    )
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if sum(1 for _ in table.query_entities("PartitionKey ne ''", select=["PartitionKey"])) >= jobs:
            return time.perf_counter() - since
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {jobs} orchestrations started within {timeout} s")


def singles(base_url: str, jobs: int, clients: int, run: str) -> float:
    """Seconds for `jobs` POST /api/jobs spread over `clients` concurrent clients."""

    def client_posts(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            for n in range(index, jobs, clients):
                item = job(n, run)
                key = item.pop("idempotency_key")
                response = client.post("/api/jobs", json=item, headers={"Idempotency-Key": key})
                assert response.status_code == 202, response.text

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_posts, range(clients)))
    return time.perf_counter() - started


def one_batch(base_url: str, jobs: int, run: str) -> float:
    """Seconds for one POST /api/jobs/batch of `jobs` items."""
    body = json.dumps({"items": [job(n, run) for n in range(jobs)]})
    with httpx.Client(base_url=base_url, timeout=600) as client:
        started = time.perf_counter()
        response = client.post("/api/jobs/batch", content=body, headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    statuses = [item["status"] for item in response.json()["items"]]
    assert statuses == [202] * jobs, {s: statuses.count(s) for s in set(statuses)}
    return elapsed


def on_fresh_stack(way: Callable[[str], float], jobs: int) -> tuple[float, float]:
    """Run one way against a devhost on an Azurite of its own (on disk, as `make run` uses it), after the
    previous way's writes reached the disk.

    Not one Azurite for both ways: the emulator's CPU per request grows with what it holds (its in-memory
    tables; docs/benchmarks.md), so the second way would pay for the first way's 1,000 jobs.
    """
    os.sync()
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as data:
        azurite = Azurite.start(location=Path(data))
        try:
            host = DevHost(azurite.connection_string, env={"ENABLE_SIMULATE_KIND": "true"}).start()
            try:
                since = time.perf_counter()
                answered = way(host.base_url)
                return answered, all_started(host, jobs, since)
            finally:
                host.stop()
        finally:
            azurite.stop()


def measure(jobs: int, clients: int) -> dict[str, Any]:
    """Both ways, each on a fresh stack; the two times and their ratio."""
    run = str(time.time_ns())
    single_seconds, singles_started = on_fresh_stack(lambda base_url: singles(base_url, jobs, clients, run), jobs)
    batch_seconds, batch_started = on_fresh_stack(lambda base_url: one_batch(base_url, jobs, run + "-batch"), jobs)
    return {
        "jobs": jobs,
        "clients": clients,
        "singles_s": round(single_seconds, 2),
        "batch_s": round(batch_seconds, 2),
        "ratio": round(batch_seconds / single_seconds, 3),
        "singles_all_started_s": round(singles_started, 2),
        "batch_all_started_s": round(batch_started, 2),
        "all_started_ratio": round(batch_started / singles_started, 3),
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    result = measure(args.jobs, args.clients)
    for key, value in result.items():
        print(f"{key}: {value}", flush=True)
    return 0 if result["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
