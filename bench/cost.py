"""Cost per job: the storage transactions, function executions, history and bytes one job costs on Azure.

The devhost runs with the shipped `local.settings.sample.json` and `host.json` against Azurite through a
counting proxy (`bench/storage_meter.py`), so every storage request the app, the Durable backend (as
devhost emulates DurableTask.AzureStorage) and the host's triggers make is counted by service, owner and
operation. For each workload the jobs are submitted, their completion is watched in the `Jobs` table
straight from Azurite (not through the proxy: a client's polling is counted once per job, below), then
each job is read once (`GET /api/jobs/{id}` and its result). Per job:

- storage transactions (the window's requests minus the idle rate measured before, times its length);
- function executions: HTTP calls the client made, orchestrator episodes and activities (from the
  History table: `OrchestratorStarted` and `TaskScheduled` events, sub-orchestrations included);
- execution time (`bench.executions`: the host's "Executed" log lines, every episode included): summed
  per execution, and as the time at least one execution was running, which is what Flex Consumption
  bills on demand, times the instance's memory (GB-s);
- history rows and bytes, and bytes left stored (blobs of the job, its table rows);
- the bill at the prices in PRICES;
- what the Azure Storage provider would add to devhost's Durable requests (`provider_extra`: completions
  through a control queue, a history read per episode, a receive per message), as a low and a high bound.

Run: `.venv/bin/python -m bench.cost [--tiny 40] [--small 0] [--mb1 10] [--mb100 1] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from bench.csv_report import OPTIONS, generate_csv, upload
from bench.executions import ExecutionLog
from bench.history_size import _entity_bytes
from bench.storage_meter import Key, MeteredStorage
from devhost.azurite import development_connection_string
from devhost.testing.azurite import Azurite, free_port
from devhost.testing.harness import DevHost

# List prices, pay-as-you-go, US East, USD, as published on azure.microsoft.com/pricing (Storage: general
# purpose v2, LRS, Hot tier; Functions: Flex Consumption, on demand). Read 2025; this machine has no route
# to re-check them, so treat them as the order of magnitude and re-run with today's prices for a budget.
PRICES: dict[str, float] = {
    "blob_write_per_10k": 0.065,  # PutBlob, PutBlock, PutBlockList, lease, create container, list
    "blob_read_per_10k": 0.005,  # GetBlob, properties
    "blob_other_per_10k": 0.005,  # everything else; DeleteBlob is free
    "queue_class1_per_10k": 0.04,  # PutMessage, UpdateMessage, DeleteMessage, GetMessages (they write)
    "queue_class2_per_10k": 0.004,  # PeekMessages, metadata
    "table_per_10k": 0.00036,  # every table transaction, a batch counts once
    "executions_per_million": 0.40,  # Flex Consumption on demand (Consumption: 0.20)
    "gb_second": 0.000026,  # Flex Consumption on demand, per GB-s of instance memory while it executes
    "gb_month_hot": 0.018,  # blob data stored (Hot, LRS), table data is priced about 2-3x
}
PRICES_DATE = "2025 list prices (not re-checked on 2026-12-01: no network)"
INSTANCE_MEMORY_GB = 2.0  # infra/bicep/main.bicep `instanceMemoryMB` (2048)

BLOB_WRITES = {"PutBlob", "PutBlock", "PutBlockList", "LeaseBlob", "CreateContainer", "ListBlobs", "SetMetadata"}
BLOB_READS = {"GetBlob", "GetBlobProperties"}
QUEUE_CLASS2 = {"PeekMessages", "GetQueueMetadata"}
FREE = {"DeleteBlob"}
LOCAL_SETUP = {"CreateContainer", "CreateQueue", "CreateTable"}
IDLE_SECONDS = 20.0
TINY_INPUT = {"vector_data": [[3.0, 4.0], [1.0, 2.0]], "metadata": {"source": "bench"}}


def provider_extra(episodes: float, activities: float, durable_puts: float) -> dict[str, Counter[Key]]:
    """What DurableTask.AzureStorage does per job beyond what devhost's meter counted: (low, high) requests.

    devhost hands an activity's completion to its orchestration in-process (docs/devhost.md): the provider
    sends it as a `TaskCompleted` message to a control queue and deletes it after the episode, 2 requests
    per activity. Without extended sessions the provider also reads the history once per episode (a query).
    Those make the low estimate. The provider also receives each message with a `GetMessages` that devhost
    skips for messages it sends itself: at most one per message (a receive takes up to 32), the high one.
    """
    low: Counter[Key] = Counter(
        {
            ("queue", "durable", "PutMessage"): activities,
            ("queue", "durable", "DeleteMessage"): activities,
            ("table", "durable", "QueryEntities"): episodes,
        }
    )
    high = low + Counter({("queue", "durable", "GetMessages"): durable_puts + activities})
    return {"low": low, "high": high}


def transaction_price(key: Key) -> float:
    """What one transaction of this kind costs, in USD."""
    service, _, operation = key
    if operation in FREE:
        return 0.0
    if service == "blob":
        per_10k = PRICES["blob_write_per_10k"] if operation in BLOB_WRITES else PRICES["blob_read_per_10k"]
    elif service == "queue":
        per_10k = PRICES["queue_class2_per_10k"] if operation in QUEUE_CLASS2 else PRICES["queue_class1_per_10k"]
    else:
        per_10k = PRICES["table_per_10k"]
    return per_10k / 10_000


class Stack:
    """Azurite, the counting proxies in front of it, and a devhost with the shipped settings behind them."""

    def __init__(self, env: dict[str, str]) -> None:
        """Start everything; `env` overrides the shipped settings (none by default)."""
        self.azurite = Azurite.start()
        self.direct = self.azurite.connection_string
        listen = (free_port(), free_port(), free_port())
        # Every episode logged, so that execution time counts orchestrator replays too.
        self.host = DevHost(development_connection_string(listen), env=env, args=["--log-episodes"])
        upstream = (self.azurite.blob_port, self.azurite.queue_port, self.azurite.table_port)
        self.storage = MeteredStorage(upstream, listen, self.host.task_hub).start()
        self.tables = TableServiceClient.from_connection_string(self.direct)
        self.blobs = BlobServiceClient.from_connection_string(self.direct)
        self.http_calls = 0

    def start(self) -> Stack:
        """Start the devhost and let it settle."""
        self.host.start()
        return self

    def stop(self) -> None:
        """Stop the devhost, the proxies and Azurite."""
        try:
            self.host.stop(timeout=30)
        finally:
            self.storage.stop()
            self.azurite.stop()

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP function execution."""
        self.http_calls += 1
        return self.host.client.request(method, url, **kwargs)

    def wait_finished(self, job_ids: list[str], timeout: float) -> None:
        """Wait until every job's row says it finished, reading the Jobs table directly (not counted)."""
        table = self.tables.get_table_client("Jobs")
        remaining = set(job_ids)
        deadline = time.monotonic() + timeout
        while remaining:
            for job_id in list(remaining):
                row = table.get_entity(job_id, "job")
                if row.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
                    if row["status"] != "COMPLETED":
                        raise RuntimeError(f"job {job_id} ended {row['status']}")
                    remaining.discard(job_id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(remaining)} jobs unfinished after {timeout} s")
            time.sleep(0.1)

    def durable_figures(self, job_id: str) -> dict[str, int]:
        """Episodes, activities, history rows and bytes of a job (its sub-orchestrations included)."""
        hub = self.host.task_hub
        query = f"PartitionKey ge '{job_id}' and PartitionKey lt '{job_id}\uffff'"
        rows = [dict(r) for r in self.tables.get_table_client(f"{hub}History").query_entities(query)]
        instances = [dict(r) for r in self.tables.get_table_client(f"{hub}Instances").query_entities(query)]
        events = Counter(str(row.get("EventType")) for row in rows)
        return {
            "episodes": events["OrchestratorStarted"],
            "activities": events["TaskScheduled"],
            "sub_orchestrations": events["SubOrchestrationInstanceCreated"],
            "history_rows": len(rows),
            "history_bytes": sum(_entity_bytes(row) for row in rows),
            "instance_bytes": sum(_entity_bytes(row) for row in instances),
        }

    def stored_bytes(self, job_id: str) -> dict[str, int]:
        """Bytes the job leaves stored until retention: its blobs, its Jobs rows."""
        blob_bytes = 0
        for container in ("payloads", "results"):
            client = self.blobs.get_container_client(container)
            blob_bytes += sum(blob.size for blob in client.list_blobs(name_starts_with=f"jobs/{job_id}/"))
        table = self.tables.get_table_client("Jobs")
        rows = [dict(r) for r in table.query_entities(f"PartitionKey eq '{job_id}'")]
        index_keys = [row["index_key"] for row in rows if row.get("index_key")]
        rows += [dict(table.get_entity("index", key)) for key in index_keys]
        return {"blob_bytes": blob_bytes, "table_bytes": sum(_entity_bytes(row) for row in rows)}


def _submit_tiny(stack: Stack) -> str:
    response = stack.call("POST", "/api/jobs", json={"kind": "vector-normalize", "input": TINY_INPUT})
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return str(response.json()["id"])


def _submit_small(stack: Stack) -> str:
    # The side-by-side's small job (bench/side_by_side.py): two chunks, so it runs staged.
    body = {"kind": "simulate", "options": {"chunks": 2, "chunk_seconds": 0.05}}
    response = stack.call("POST", "/api/jobs", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return str(response.json()["id"])


def _submit_csv_raw(stack: Stack, data: bytes) -> str:
    params = {"kind": "csv-report", "group_by": OPTIONS["group_by"], "metrics": ",".join(OPTIONS["metrics"])}
    response = stack.call("POST", "/api/jobs", params=params, content=data, headers={"Content-Type": "text/csv"})
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return str(response.json()["id"])


def _submit_csv_upload(stack: Stack, path: Path) -> str:
    stack.http_calls += 1  # POST /api/uploads (the PUT goes to storage, counted there)
    input_ref = upload(stack.host.client, path)
    body = {"kind": "csv-report", "input_ref": input_ref, "options": OPTIONS}
    response = stack.call("POST", "/api/jobs", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    return str(response.json()["id"])


def _read(stack: Stack, job_id: str) -> None:
    job = stack.call("GET", f"/api/jobs/{job_id}")
    if job.status_code != 200:
        raise RuntimeError(f"GET job answered {job.status_code}: {job.text}")
    result = stack.call("GET", f"/api/jobs/{job_id}/result")
    if result.status_code != 200:
        raise RuntimeError(f"GET result answered {result.status_code}: {result.text}")


def idle_rate(stack: Stack, seconds: float) -> Counter[Key]:
    """Requests per second of an idle host (queue polling, lease renewals), by key."""
    before = stack.storage.meter.snapshot()
    time.sleep(seconds)
    after = stack.storage.meter.snapshot()
    return Counter({key: (after[key] - before[key]) / seconds for key in after if after[key] > before[key]})


def run_workload(
    stack: Stack, name: str, count: int, submit: Any, idle: Counter[Key], timeout: float, concurrency: int = 4
) -> dict[str, Any]:
    """Submit `count` jobs (`concurrency` at a time), wait, read each once; the figures per job."""
    meter = stack.storage.meter
    calls_before = stack.http_calls
    assert stack.host.log_path is not None
    executions_log = ExecutionLog(stack.host.log_path)
    before = meter.snapshot()
    started = time.monotonic()
    job_ids: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            job_id = submit(stack)
            with lock:
                job_ids.append(job_id)

    per = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]
    threads = [threading.Thread(target=worker, args=(n,)) for n in per if n]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted = meter.snapshot()
    stack.wait_finished(job_ids, timeout)
    time.sleep(1.0)  # let the last episode's checkpoint and message deletes land
    ran = meter.snapshot()
    for job_id in job_ids:
        _read(stack, job_id)
    after = meter.snapshot()
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # the last reads' log lines
    timing = executions_log.read()
    idle_share = Counter({key: rate * elapsed for key, rate in idle.items()})

    def per_job(counts: Counter[Key]) -> dict[str, float]:
        return {"|".join(key): round(value / count, 2) for key, value in sorted(counts.items()) if value}

    total = Counter({key: after[key] - before[key] - idle_share.get(key, 0.0) for key in after})
    total = Counter({key: value for key, value in total.items() if value > 0.5})
    # Locally the steps and devhost create the containers, queues and tables they use the first time each
    # worker process needs them; in Azure the infrastructure does (activities.resources): not billed per job.
    local_setup = Counter({key: value for key, value in total.items() if key[2] in LOCAL_SETUP})
    total -= local_setup
    durable = [stack.durable_figures(job_id) for job_id in job_ids]
    stored = [stack.stored_bytes(job_id) for job_id in job_ids]

    def mean(rows: list[dict[str, int]], field: str) -> float:
        return round(sum(row[field] for row in rows) / len(rows), 2)

    figures: dict[str, Any] = {
        "workload": name,
        "jobs": count,
        "elapsed_s": round(elapsed, 2),
        "idle_subtracted_per_job": round(sum(idle_share.values()) / count, 2),
        "transactions_per_job": per_job(total),
        "local_setup_per_job": per_job(local_setup),
        "submit_per_job": round(sum((submitted - before).values()) / count, 2),
        "run_per_job": round(sum((ran - submitted).values()) / count, 2),
        "read_per_job": round(sum((after - ran).values()) / count, 2),
        "http_per_job": round((stack.http_calls - calls_before) / count, 2),
        **{field: mean(durable, field) for field in durable[0]},
        **{field: mean(stored, field) for field in stored[0]},
    }
    by_owner: dict[str, float] = {}
    by_service: dict[str, float] = {}
    usd = 0.0
    for key, value in total.items():
        by_owner[key[1]] = by_owner.get(key[1], 0.0) + value / count
        by_service[key[0]] = by_service.get(key[0], 0.0) + value / count
        usd += transaction_price(key) * value / count
    executions = figures["http_per_job"] + figures["episodes"] + figures["activities"]
    durable_puts = sum(value for key, value in total.items() if key[1:] == ("durable", "PutMessage")) / count
    extra = provider_extra(figures["episodes"], figures["activities"], durable_puts)
    provider = {
        bound: {
            "transactions": round(sum(total.values()) / count + sum(added.values()), 1),
            "usd_storage_per_million_jobs": round(
                (usd + sum(transaction_price(key) * value for key, value in added.items())) * 1_000_000, 2
            ),
        }
        for bound, added in extra.items()
    }
    usd_executions = executions * PRICES["executions_per_million"] / 1_000_000
    active_seconds = timing.active_seconds() / count
    usd_time = active_seconds * INSTANCE_MEMORY_GB * PRICES["gb_second"]
    figures.update(
        {
            "transactions": round(sum(total.values()) / count, 1),
            "by_owner": {key: round(value, 1) for key, value in sorted(by_owner.items())},
            "by_service": {key: round(value, 1) for key, value in sorted(by_service.items())},
            "executions": executions,
            "execution_seconds_per_job": {
                kind: round(seconds / count, 4) for kind, seconds in sorted(timing.seconds_by_kind().items())
            },
            "active_seconds_per_job": round(active_seconds, 4),
            "azure_provider_estimate": provider,
            "usd_per_million_jobs": {
                "storage_transactions": round(usd * 1_000_000, 2),
                "executions": round(usd_executions * 1_000_000, 2),
                "execution_time": round(usd_time * 1_000_000, 2),
            },
        }
    )
    return figures


def _print(figures: dict[str, Any]) -> None:
    print(
        f"{figures['workload']}: {figures['transactions']} transactions/job "
        f"(submit {figures['submit_per_job']}, run {figures['run_per_job']}, read {figures['read_per_job']}; "
        f"idle {figures['idle_subtracted_per_job']} subtracted) by owner {figures['by_owner']}, "
        f"by service {figures['by_service']}; executions {figures['executions']} "
        f"(HTTP {figures['http_per_job']}, episodes {figures['episodes']}, activities {figures['activities']}); "
        f"execution seconds {figures['execution_seconds_per_job']}, active {figures['active_seconds_per_job']} s; "
        f"history {figures['history_rows']} rows / {figures['history_bytes']} B; "
        f"stored {figures['blob_bytes']} B blobs + {figures['table_bytes']} B rows; "
        f"USD per million jobs {figures['usd_per_million_jobs']}; "
        f"with the Azure Storage provider's own requests {figures['azure_provider_estimate']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the workloads and print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiny", type=int, default=40, help="tiny inline vector-normalize jobs")
    parser.add_argument("--small", type=int, default=0, help="small staged simulate jobs (2 chunks x 0.05 s)")
    parser.add_argument("--mb1", type=int, default=10, help="1 MB csv-report jobs posted raw")
    parser.add_argument("--mb100", type=int, default=1, help="100 MB csv-report jobs through an upload")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE over the shipped settings")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    stack = Stack(env).start()
    results: dict[str, Any] = {"prices": PRICES, "prices_date": PRICES_DATE, "workloads": []}
    try:
        _submit_tiny(stack)  # warm-up: imports, connections, table and container creation
        time.sleep(3.0)
        idle = idle_rate(stack, IDLE_SECONDS)
        results["idle_per_second"] = {"|".join(key): round(value, 3) for key, value in sorted(idle.items())}
        results["idle_per_day"] = round(sum(idle.values()) * 86400)
        print(f"idle host: {sum(idle.values()):.2f} transactions/s {results['idle_per_second']}", flush=True)
        workloads: list[tuple[str, int, Any]] = [("tiny inline vector-normalize", args.tiny, _submit_tiny)]
        if args.small:
            workloads.append(("small simulate, 2 chunks (staged)", args.small, _submit_small))
        if args.mb1:
            data = generate_csv(1).read_bytes()
            workloads.append(("1 MB csv-report, raw POST", args.mb1, lambda s: _submit_csv_raw(s, data)))
        if args.mb100:
            path = generate_csv(100)
            workloads.append(("100 MB csv-report, upload", args.mb100, lambda s: _submit_csv_upload(s, path)))
        for name, count, submit in workloads:
            if count:
                figures = run_workload(stack, name, count, submit, idle, args.timeout, concurrency=min(4, count))
                results["workloads"].append(figures)
                _print(figures)
    finally:
        stack.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
