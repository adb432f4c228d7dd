"""200 concurrent job event streams on one devhost: what a stream costs and whether jobs slow down.

Target (issue #11): a batch of jobs finishes no more than 10 % slower while 200 SSE streams watch it.
Run: `.venv/bin/python -m bench.streams [--streams 200] [--jobs 24] [--rounds 2]`.

Two parts, on one devhost and one Azurite (its access log on, to count storage requests):

- **Cost of an open stream**: 4 parked jobs (one 60 s chunk each, so nothing changes), first nothing
  watching them for `--idle` seconds, then `--streams` streams on them for as long. The difference in
  CPU seconds (devhost and its workers, Azurite) and in reads of the task hub's Instances table, per
  stream and minute, is what one quiet watcher costs.
- **Job throughput with 200 streams held open** (the issue's target): a batch of `--jobs` simulate jobs
  (4 chunks of 0.5 s) once with no watcher and once while `--streams` streams stay open on a parked job
  (viewers of one job), `--rounds` times, alternating; the figure is the median wall time with over without.
- **Clients following their own jobs**: the same batch, watcher i streaming job i mod `--jobs` from its
  submission to its terminal event: every stream is a new connection (a function invocation, the job's
  row and status read, the resource read for the terminal event), so this adds the cost of opening one.

The streams are read by httpx-sse in this process (one event loop), as clients on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from httpx_sse import aconnect_sse

from devhost.azurite import azurite_command, wait_listening
from devhost.testing.azurite import ROOT, Azurite, free_port
from devhost.testing.harness import APP_TEST_ENV, DevHost

TARGET_SLOWDOWN = 0.10
BATCH_JOB = {"kind": "simulate", "options": {"chunks": 4, "chunk_seconds": 0.5}}
PARKED_JOB = {"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 60}}
TERMINAL = {"completed", "failed", "cancelled"}


def start_azurite(log: Path) -> Azurite:
    """An in-memory Azurite on free ports that writes its access log (one line per request) to `log`."""
    ports = (free_port(), free_port(), free_port())
    command = [arg for arg in azurite_command(ROOT, ports, None) if arg != "--silent"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_listening(process, ports)
    return Azurite(*ports, process=process)


def instance_reads(log: Path, hub: str) -> int:
    """Reads of the task hub's Instances table so far (a status query is one point read of it)."""
    pattern = re.compile(rf'"GET /devstoreaccount1/{hub}Instances\(')
    with open(log, errors="replace") as text:
        return sum(1 for line in text if pattern.search(line))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their children so far."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass
class Watchers:
    """Open streams and what they received."""

    opened: int = 0
    open_now: int = 0
    peak: int = 0
    events: int = 0
    ends: int = 0
    errors: list[str] = field(default_factory=list)


async def watch(client: httpx.AsyncClient, job_of: Any, stop: asyncio.Event, stats: Watchers) -> None:
    """One watcher: stream the job `await job_of()` names until its terminal event (or until stopped),
    reconnecting with Last-Event-ID when a stream ends at its maximum duration."""
    job = await job_of()
    last_id: str | None = None
    while not stop.is_set():
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            async with aconnect_sse(client, "GET", f"/api/jobs/{job}/events", headers=headers) as source:
                if source.response.status_code == 204:
                    return  # its job ended while we reconnected
                source.response.raise_for_status()
                stats.opened += 1
                stats.open_now += 1
                stats.peak = max(stats.peak, stats.open_now)
                try:
                    async for event in source.aiter_sse():
                        stats.events += 1
                        last_id = event.id or last_id
                        if event.event in TERMINAL:
                            return
                    stats.ends += 1  # ended at its maximum duration: resume with Last-Event-ID
                finally:
                    stats.open_now -= 1
        except (httpx.HTTPError, RuntimeError) as exc:
            stats.errors.append(type(exc).__name__)
            await asyncio.sleep(1)


def submit(host: DevHost, body: dict[str, Any], count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = host.client.post("/api/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def wait_all(host: DevHost, ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending:
        for job in list(pending):
            if host.client.get(f"/api/jobs/{job}").status_code == 200:
                pending.discard(job)
        assert time.monotonic() < deadline, f"{len(pending)} jobs unfinished"
        time.sleep(0.25)


async def with_streams(host: DevHost, count: int, job_of: Any, work: Any) -> Watchers:
    """Run `work()` (in a thread) while `count` watchers stream the jobs `job_of(i)` names (awaitable)."""
    stats = Watchers()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    timeout = httpx.Timeout(10.0, read=120.0)
    async with httpx.AsyncClient(base_url=host.base_url, limits=limits, timeout=timeout) as client:
        tasks = [asyncio.create_task(watch(client, lambda i=i: job_of(i), stop, stats)) for i in range(count)]
        await asyncio.to_thread(work)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats


def measure_cost(host: DevHost, azurite: Azurite, log: Path, streams: int, seconds: float) -> dict[str, Any]:
    parked = submit(host, PARKED_JOB, 4)
    time.sleep(5)  # let them start: from now on nothing changes until their chunk ends
    pids = [
        p for p in (host.process.pid if host.process else None, azurite.process.pid if azurite.process else None) if p
    ]

    def window() -> tuple[float, int]:
        cpu0, reads0 = cpu_seconds(pids), instance_reads(log, host.task_hub)
        time.sleep(seconds)
        return cpu_seconds(pids) - cpu0, instance_reads(log, host.task_hub) - reads0

    quiet_cpu, quiet_reads = window()
    measured: dict[str, Any] = {}

    def loaded() -> None:
        time.sleep(5)  # let every stream open
        measured["cpu"], measured["reads"] = window()

    async def parked_job(i: int) -> str:
        return parked[i % len(parked)]

    stats = asyncio.run(with_streams(host, streams, parked_job, loaded))
    for job in parked:
        host.client.delete(f"/api/jobs/{job}")
    per_minute = 60.0 / seconds / streams
    return {
        "streams_open_peak": stats.peak,
        "stream_errors": len(stats.errors),
        "idle_cpu_s_per_min": round(quiet_cpu * 60 / seconds, 2),
        "streams_cpu_s_per_min": round(measured["cpu"] * 60 / seconds, 2),
        "cpu_ms_per_stream_minute": round((measured["cpu"] - quiet_cpu) * per_minute * 1000, 1),
        "instance_reads_per_stream_minute": round((measured["reads"] - quiet_reads) * per_minute, 1),
    }


def streamed_batch(host: DevHost, streams: int, jobs: int) -> tuple[float, Watchers]:
    """The batch's wall time while `streams` clients watch it: watcher i streams job i mod `jobs` from its
    submission to its terminal event, as clients that each follow their own job."""
    submitted: list[str] = []
    elapsed: list[float] = []

    async def own_job(i: int) -> str:
        while len(submitted) <= i % jobs:
            await asyncio.sleep(0.05)
        return submitted[i % jobs]

    def run_batch() -> None:
        began = time.monotonic()
        for _ in range(jobs):
            submitted.extend(submit(host, BATCH_JOB, 1))
        wait_all(host, list(submitted))
        elapsed.append(time.monotonic() - began)

    stats = asyncio.run(with_streams(host, streams, own_job, run_batch))
    return elapsed[0], stats


def held_streams_batch(host: DevHost, streams: int, jobs: int) -> tuple[float, Watchers]:
    """The batch's wall time while `streams` streams stay open on a parked job (a dashboard's viewers)."""
    parked = submit(host, PARKED_JOB, 1)
    time.sleep(3)
    elapsed: list[float] = []

    async def parked_job(i: int) -> str:
        return parked[0]

    def run_batch() -> None:
        time.sleep(5)  # every stream open before the clock starts
        began = time.monotonic()
        wait_all(host, submit(host, BATCH_JOB, jobs))
        elapsed.append(time.monotonic() - began)

    stats = asyncio.run(with_streams(host, streams, parked_job, run_batch))
    host.client.delete(f"/api/jobs/{parked[0]}")
    return elapsed[0], stats


def plain_batch(host: DevHost, jobs: int, parked: bool) -> float:
    """The batch's wall time with nobody watching (beside a parked job, as in the held-streams run)."""
    held = submit(host, PARKED_JOB, 1) if parked else []
    time.sleep(3 if parked else 0)
    began = time.monotonic()
    wait_all(host, submit(host, BATCH_JOB, jobs))
    seconds = time.monotonic() - began
    for job in held:
        host.client.delete(f"/api/jobs/{job}")
    return seconds


def measure_throughput(host: DevHost, streams: int, jobs: int, rounds: int) -> dict[str, Any]:
    """Held streams (`rounds` alternating pairs), then clients following their own jobs (one pair)."""
    submit(host, BATCH_JOB, 4)  # warm the workers
    time.sleep(8)
    without: list[float] = []
    held: list[float] = []
    peaks: list[int] = []
    errors = 0
    for _ in range(rounds):
        without.append(plain_batch(host, jobs, parked=True))
        seconds, stats = held_streams_batch(host, streams, jobs)
        held.append(seconds)
        peaks.append(stats.peak)
        errors += len(stats.errors)
    slowdown = statistics.median(held) / statistics.median(without) - 1
    own_without = plain_batch(host, jobs, parked=False)
    own_seconds, own = streamed_batch(host, streams, jobs)
    return {
        "batch": f"{jobs} jobs x 4 chunks x 0.5 s",
        "held: without_streams_s": [round(s, 2) for s in without],
        "held: with_streams_s": [round(s, 2) for s in held],
        "held: streams_open_peak": peaks,
        "held: slowdown_median": f"{slowdown * 100:+.1f} %",
        "held: target_met": slowdown <= TARGET_SLOWDOWN,
        "own jobs: without_s / with_s": f"{own_without:.2f} / {own_seconds:.2f} ({own_seconds / own_without - 1:+.1%})",
        "own jobs: streams_opened, open_peak": f"{own.opened}, {own.peak}",
        "stream_errors": errors + len(own.errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of each cost window")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        log = Path(tmp) / "azurite.log"
        azurite = start_azurite(log)
        host = DevHost(azurite.connection_string, env=dict(APP_TEST_ENV))
        try:
            host.start()
            print("== cost of open streams (parked jobs, nothing changes)", flush=True)
            for key, value in measure_cost(host, azurite, log, args.streams, args.idle).items():
                print(f"{key}: {value}", flush=True)
            print(f"\n== job throughput with and without {args.streams} streams", flush=True)
            for key, value in measure_throughput(host, args.streams, args.jobs, args.rounds).items():
                print(f"{key}: {value}", flush=True)
        finally:
            host.stop()
            azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
