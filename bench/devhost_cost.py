"""devhost's own cost per small job: CPU by process and storage requests by operation (issue #15).

Runs the app as `make run` serves it (shipped settings, Azurite on disk) behind the counting proxy of
`bench/storage_meter.py`, submits `--jobs` simulate jobs of 2 chunks x 0.05 s from 16 client threads
(as `bench/side_by_side.py` does), waits until every job is finished (read from the `Jobs` table
straight from Azurite, not counted) and reports, per job: CPU seconds of the host process, the worker
processes and Azurite, and storage requests by (service, owner, operation). The idle rate, measured
first for `--idle` seconds, is reported beside them (not subtracted). With `--profile DIR` it records
py-spy flame graphs (`--subprocesses`: the workers too) and raw collapsed stacks of the loaded window.

Run: `.venv/bin/python -m bench.devhost_cost [--jobs 150] [--profile /tmp/prof] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
from azure.data.tables import TableServiceClient

from bench.storage_meter import MeteredStorage
from devhost.azurite import development_connection_string
from devhost.testing.azurite import Azurite, free_port
from devhost.testing.harness import DevHost

CLIENTS = 16
FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


def cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def groups(host: DevHost, azurite: Azurite) -> dict[str, list[psutil.Process]]:
    """The processes to charge, by role: the host, its workers, Azurite (node)."""
    assert host.process is not None and azurite.process is not None
    root = psutil.Process(host.process.pid)
    node = psutil.Process(azurite.process.pid)
    return {
        "host": [root],
        "workers": root.children(recursive=True),
        "azurite": [node, *node.children(recursive=True)],
    }


def snapshot(by_role: dict[str, list[psutil.Process]]) -> dict[str, float]:
    return {role: cpu_of(processes) for role, processes in by_role.items()}


def wait_finished(tables: TableServiceClient, job_ids: list[str], timeout: float) -> None:
    table = tables.get_table_client("Jobs")
    remaining = set(job_ids)
    deadline = time.monotonic() + timeout
    while remaining:
        for job_id in list(remaining):
            status = table.get_entity(job_id, "job").get("status")
            if status in FINISHED:
                if status != "COMPLETED":
                    raise RuntimeError(f"job {job_id} ended {status}")
                remaining.discard(job_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining)} jobs unfinished")
        if remaining:
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=150)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement first")
    parser.add_argument("--profile", type=Path, help="record py-spy flame graphs into this directory")
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="devhost-cost-") as scratch:
        azurite = Azurite.start(location=Path(scratch) / "azurite")
        listen = (free_port(), free_port(), free_port())
        host = DevHost(development_connection_string(listen))
        upstream = (azurite.blob_port, azurite.queue_port, azurite.table_port)
        storage = MeteredStorage(upstream, listen, host.task_hub).start()
        tables = TableServiceClient.from_connection_string(azurite.connection_string)
        spies: list[subprocess.Popen[bytes]] = []
        try:
            host.start()
            client = httpx.Client(base_url=host.base_url, timeout=120.0, limits=httpx.Limits(max_connections=64))
            body = {"kind": "simulate", "options": {"chunks": 2, "chunk_seconds": 0.05}}

            def submit() -> str:
                response = client.post("/api/jobs", json=body)
                assert response.status_code == 202, response.text
                return str(response.json()["id"])

            wait_finished(tables, [submit() for _ in range(4)], args.timeout)  # warm-up: imports, connections
            time.sleep(3.0)
            by_role = groups(host, azurite)
            idle_cpu, idle_requests = snapshot(by_role), storage.meter.snapshot()
            time.sleep(args.idle)
            idle = {
                "cpu_s_per_s": {k: round((v - idle_cpu[k]) / args.idle, 4) for k, v in snapshot(by_role).items()},
                "requests_per_s": round(sum((storage.meter.snapshot() - idle_requests).values()) / args.idle, 2),
            }
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                assert host.process is not None
                for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
                    spies.append(
                        subprocess.Popen(
                            [
                                spy,
                                "record",
                                "--pid",
                                str(host.process.pid),
                                "--subprocesses",
                                "--rate",
                                str(args.rate),
                                "--nonblocking",
                                "--format",
                                fmt,
                                "-o",
                                str(args.profile / f"profile.{suffix}"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
                time.sleep(1.0)
            cpu_before, requests_before = snapshot(by_role), storage.meter.snapshot()
            started = time.monotonic()
            job_ids: list[str] = []
            lock = threading.Lock()

            def one_client(count: int) -> None:
                for _ in range(count):
                    job_id = submit()
                    with lock:
                        job_ids.append(job_id)

            counts = [args.jobs // CLIENTS + (1 if n < args.jobs % CLIENTS else 0) for n in range(CLIENTS)]
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(one_client, counts))
            wait_finished(tables, job_ids, args.timeout)
            elapsed = time.monotonic() - started
            cpu_after, requests_after = snapshot(by_role), storage.meter.snapshot()
            for spy_process in spies:
                spy_process.send_signal(signal.SIGINT)
            for spy_process in spies:
                spy_process.wait(60)
            client.close()
        finally:
            for spy_process in spies:
                if spy_process.poll() is None:
                    spy_process.kill()
            host.stop(timeout=30)
            storage.stop()
            azurite.stop()
    requests: Counter[tuple[str, str, str]] = requests_after - requests_before
    cpu = {k: round((cpu_after[k] - cpu_before[k]) / args.jobs, 4) for k in cpu_after}
    figures: dict[str, Any] = {
        "jobs": args.jobs,
        "elapsed_s": round(elapsed, 2),
        "jobs_per_s": round(args.jobs / elapsed, 2),
        "cpu_s_per_job": {**cpu, "total": round(sum(cpu.values()), 4)},
        "requests_per_job": round(sum(requests.values()) / args.jobs, 2),
        "requests_by_owner_per_job": {
            owner: round(sum(n for (_, o, _), n in requests.items() if o == owner) / args.jobs, 2)
            for owner in sorted({o for _, o, _ in requests})
        },
        "requests_by_operation_per_job": {"/".join(key): round(n / args.jobs, 2) for key, n in requests.most_common()},
        "idle": idle,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
