"""longrun against the Celery + Redis reference, side by side in one run on this machine (issue #15).

Both stacks run at once on loopback: longrun as `make run` serves it (devhost with the shipped
local.settings.sample.json and host.json, Azurite on disk) and the reference (bench/celery_peer.py:
uvicorn, two Celery worker processes with four threads each, like longrun's 2 x 4, and redis-server).
The reference lives in a virtualenv of its own, built on first use from bench/requirements-peer.txt
(`--peer-venv`, default $TMPDIR/longrun-peer-venv); redis-server must be on PATH (Debian: redis-server).

Each test runs on stacks of its own, started fresh and warmed up (4 tiny jobs each):
1. a ~100 MB CSV grouped by one column (longrun: through an upload; the reference: posted raw), until
   seen finished (poll every 0.2 s), `--csv-runs` times per stack, the stacks taking turns: the first run
   is reported as cold, the median of the others as warm; with each stack's peak PSS (host and workers;
   web server and workers), sampled alike on both; the row counts are cross-checked;
2. submit latency of a tiny job (1 chunk of 0 s): 16 clients paced at 8 submits/s in total; p50 / p99,
   on longrun, then on the reference;
3. small-job throughput: `--jobs` jobs of 2 chunks x 0.05 s from 16 clients back to back, until every job
   is seen finished (pollers sweep the unfinished ones every 0.2 s); jobs/s, and the CPU seconds per job
   the whole stack used (host, workers, storage emulator or Redis, web server); longrun, then the reference.
4. a crash: `--crash-jobs` jobs of 2 chunks x 1 s from 16 clients; 5 s after the last submit, SIGKILL the
   worker side (longrun: devhost's process group, host and workers; the reference: its Celery worker
   processes), start it again 2 s later, and count the jobs seen finished within 120 s of the restart; the
   others are lost to a client that waited that long. The peers' own crash test (`../shared/peers/tools`),
   which found longrun's jobs hidden for 5 minutes after a crash when our tests ran with shortened timings.
The last lines are the ratios longrun / reference, and the jobs each stack lost to the crash.

Run: `.venv/bin/python -m bench.side_by_side [--jobs 500] [--csv-mb 100] [--csv-runs 3] [--crash-jobs 50]
[--csv-only | --crash-only] [--json out.json]` (`--csv-only`, `--crash-only`: that test alone).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.csv_report import GROUP_BY, METRICS, OPTIONS, MemorySampler, generate_csv, upload
from devhost.testing.azurite import ROOT, Azurite, free_port
from devhost.testing.harness import DevHost

CLIENTS = 16
PACED_RATE = 8.0
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "SUCCESS", "FAILURE"}


class System:
    """One stack under test: how to submit, read a status, and which processes to charge CPU to."""

    name = ""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=120.0, limits=httpx.Limits(max_connections=64))

    def submit_small(self, chunks: int, seconds: float) -> str:
        raise NotImplementedError

    def submit_csv(self, path: Path) -> str:
        raise NotImplementedError

    def status(self, job_id: str) -> tuple[str, Any]:
        raise NotImplementedError

    def processes(self) -> list[psutil.Process]:
        raise NotImplementedError

    def memory_roots(self) -> list[int]:
        """The processes (with their descendants) whose memory the CSV test samples: host and workers."""
        raise NotImplementedError

    def kill_workers(self) -> None:
        """SIGKILL the side that runs the jobs, as a crash would (storage and broker stay up)."""
        raise NotImplementedError

    def restart_workers(self) -> None:
        """Start the killed side again and wait until it serves."""
        raise NotImplementedError


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class Longrun(System):
    name = "longrun"

    def __init__(self, host: DevHost, azurite: Azurite) -> None:
        super().__init__(host.base_url)
        self.host, self.azurite = host, azurite

    def submit_small(self, chunks: int, seconds: float) -> str:
        body = {"kind": "simulate", "options": {"chunks": chunks, "chunk_seconds": seconds}}
        response = self.client.post("/api/jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def submit_csv(self, path: Path) -> str:
        # Through an upload (POST /api/uploads, PUT to storage, submit the input_ref): the path docs/api.md
        # gives for inputs of this size (a raw body is limited to 100 MiB).
        body = {"kind": "csv-report", "input_ref": upload(self.client, path), "options": OPTIONS}
        response = self.client.post("/api/jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def status(self, job_id: str) -> tuple[str, Any]:
        job = self.client.get(f"/api/jobs/{job_id}").json()
        return str(job["status"]), job.get("result")

    def processes(self) -> list[psutil.Process]:
        assert self.host.process is not None and self.azurite.process is not None
        return _tree(self.host.process.pid) + _tree(self.azurite.process.pid)

    def memory_roots(self) -> list[int]:
        assert self.host.process is not None
        return [self.host.process.pid]  # the host and its workers; not Azurite, as the reference's Redis

    def kill_workers(self) -> None:
        self.host.kill()  # the host and its language workers: a Functions instance lost as a whole

    def restart_workers(self) -> None:
        self.host.start()  # same port and task hub, make run's settings (no test-only timings)


class Reference(System):
    name = "celery"

    def __init__(
        self, base_url: str, pids: list[int], memory_pids: list[int], stack: ReferenceStack | None = None
    ) -> None:
        super().__init__(base_url)
        self.pids = pids
        self.memory_pids = memory_pids
        self.stack = stack

    def submit_small(self, chunks: int, seconds: float) -> str:
        response = self.client.post("/tasks", json={"chunks": chunks, "chunk_seconds": seconds})
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def submit_csv(self, path: Path) -> str:
        params = {"group_by": GROUP_BY, "metrics": ",".join(METRICS)}
        with open(path, "rb") as data:
            response = self.client.post("/tasks/csv", params=params, content=data)
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def status(self, job_id: str) -> tuple[str, Any]:
        task = self.client.get(f"/tasks/{job_id}").json()
        return str(task["status"]), task.get("result")

    def processes(self) -> list[psutil.Process]:
        return [process for pid in self.pids for process in _tree(pid)]

    def memory_roots(self) -> list[int]:
        return self.memory_pids  # the web server and the workers; not Redis, as longrun's Azurite

    def kill_workers(self) -> None:
        assert self.stack is not None
        self.stack.kill_workers()

    def restart_workers(self) -> None:
        assert self.stack is not None
        self.stack.start_workers()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def wait_all(system: System, job_ids: list[str], timeout: float) -> float:
    """Sweep the unfinished jobs until all are finished; returns when the last was seen finished."""
    remaining = set(job_ids)
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(4) as pool:
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system.name}: {len(remaining)} jobs unfinished")
            statuses = dict(zip(remaining, pool.map(lambda job: system.status(job)[0], list(remaining)), strict=True))
            failed = [job for job, status in statuses.items() if status in ("FAILED", "FAILURE")]
            if failed:
                raise RuntimeError(f"{system.name}: {len(failed)} jobs failed")
            remaining -= {job for job, status in statuses.items() if status in FINISHED}
            if remaining:
                time.sleep(0.2)
    return time.monotonic()


def submit_latency(system: System, submits: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    interval = CLIENTS / PACED_RATE
    per_client = max(1, submits // CLIENTS)
    start = time.monotonic()

    def client(n: int) -> None:
        for k in range(per_client):
            due = start + (k + n / CLIENTS) * interval
            time.sleep(max(0.0, due - time.monotonic()))
            began = time.perf_counter()
            system.submit_small(1, 0.0)
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(3.0)  # let the submitted jobs drain before the next test
    return {"p50_ms": round(percentile(latencies, 0.5), 1), "p99_ms": round(percentile(latencies, 0.99), 1)}


def submit_back_to_back(system: System, jobs: int, chunks: int, seconds: float) -> list[str]:
    """`jobs` jobs of `chunks` x `seconds` from CLIENTS threads, each submitting as soon as it has its answer."""
    job_ids: list[str] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        for _ in range(count):
            job_id = system.submit_small(chunks, seconds)
            with lock:
                job_ids.append(job_id)

    counts = [jobs // CLIENTS + (1 if n < jobs % CLIENTS else 0) for n in range(CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, counts))
    return job_ids


def throughput(system: System, jobs: int, timeout: float) -> dict[str, float]:
    cpu_before = cpu_seconds(system.processes())
    started = time.monotonic()
    job_ids = submit_back_to_back(system, jobs, 2, 0.05)
    finished = wait_all(system, job_ids, timeout)
    cpu = cpu_seconds(system.processes()) - cpu_before
    elapsed = finished - started
    return {
        "jobs_per_s": round(jobs / elapsed, 2),
        "elapsed_s": round(elapsed, 2),
        "cpu_s_per_job": round(cpu / jobs, 4),
    }


CRASH_KILL_AFTER = 5.0  # seconds after the last submit, as the peers' test
CRASH_DOWN = 2.0
CRASH_WINDOW = 120.0


def crash(system: System, jobs: int) -> dict[str, Any]:
    """Jobs of 2 x 1 s, the worker side SIGKILLed mid-batch and started again: how many a client sees finish
    within CRASH_WINDOW of the restart, and when the last of them did."""
    job_ids = submit_back_to_back(system, jobs, 2, 1.0)
    time.sleep(CRASH_KILL_AFTER)
    system.kill_workers()
    time.sleep(CRASH_DOWN)
    system.restart_workers()
    restarted = time.monotonic()
    remaining, completed, last = set(job_ids), 0, 0.0
    with ThreadPoolExecutor(4) as pool:
        while remaining and time.monotonic() - restarted < CRASH_WINDOW:
            statuses = dict(zip(remaining, pool.map(lambda job: system.status(job)[0], list(remaining)), strict=True))
            done = {job for job, status in statuses.items() if status in FINISHED}
            completed += sum(1 for job in done if statuses[job] in ("COMPLETED", "SUCCESS"))
            if done:
                last = time.monotonic() - restarted
            remaining -= done
            if remaining:
                time.sleep(1.0)
    return {
        "jobs": jobs,
        "completed": completed,
        "lost": len(remaining),
        "restart_to_last_s": round(last, 1) if not remaining else None,
    }


def csv_end_to_end(system: System, path: Path, timeout: float) -> dict[str, Any]:
    """One CSV job from submit to seen finished, with the peak summed PSS of the stack's host and workers.

    Both stacks carry the same sampler (its reads of /proc cost CPU on the cores the job runs on).
    """
    with MemorySampler(tuple(system.memory_roots())) as sampler:
        started = time.monotonic()
        job_id = system.submit_csv(path)
        while True:
            status, result = system.status(job_id)
            if status in FINISHED:
                break
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{system.name}: csv job unfinished")
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    if status not in ("COMPLETED", "SUCCESS"):
        raise RuntimeError(f"{system.name}: csv job ended {status}: {result}")
    peak_mib = round(sampler.peak_bytes / 2**20)
    return {"seconds": round(elapsed, 2), "rows": (result or {}).get("rows"), "peak_pss_mib": peak_mib}


def csv_runs(systems: list[System], path: Path, runs: int, timeout: float) -> dict[str, dict[str, Any]]:
    """`runs` CSV jobs per stack, the stacks taking turns: the first run of each is cold (its code paths,
    imports and the emulator's JIT are met for the first time), the median of the others is the steady
    state a deployed service runs in."""
    seen: dict[str, list[dict[str, Any]]] = {system.name: [] for system in systems}
    for _ in range(runs):
        for system in systems:
            seen[system.name].append(csv_end_to_end(system, path, timeout))
            print(system.name, "csv", seen[system.name][-1], flush=True)
    figures: dict[str, dict[str, Any]] = {}
    for name, results in seen.items():
        if len({result["rows"] for result in results}) > 1:
            raise RuntimeError(f"{name}: the runs counted different rows: {[r['rows'] for r in results]}")
        warm = [result["seconds"] for result in results[1:]]
        figures[name] = {
            "cold_seconds": results[0]["seconds"],
            "warm_seconds": round(statistics.median(warm), 2) if warm else None,
            "runs_seconds": [result["seconds"] for result in results],
            "rows": results[0]["rows"],
            "peak_pss_mib": max(result["peak_pss_mib"] for result in results),
        }
    return figures


def ensure_peer_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    requirements = ROOT / "bench" / "requirements-peer.txt"
    if not marker.exists() or marker.read_text() != requirements.read_text():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
        marker.write_text(requirements.read_text())
    return python


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not answering")


class ReferenceStack:
    """redis-server, two Celery worker processes (4 threads each) and uvicorn, on free loopback ports."""

    def __init__(self, python: Path, state: Path) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
        self.port, redis_port = free_port(), free_port()
        env = {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "PEER_BLOB_DIR": str(state / "blobs"),
            "PYTHONPATH": str(ROOT),
        }
        log = open(state / "reference.log", "ab")  # noqa: SIM115 - handed to the children
        spawn: Callable[[list[str]], subprocess.Popen[bytes]] = lambda argv: subprocess.Popen(  # noqa: E731
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes = [
            spawn([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        ]
        time.sleep(0.3)
        self._spawn = spawn
        celery = [str(python), "-m", "celery", "-A", "bench.celery_peer", "worker", "--pool", "threads"]
        self._workers = [[*celery, "--concurrency", "4", "-n", f"w{n}@%h", "--loglevel", "WARNING"] for n in range(2)]
        self.processes += [spawn(command) for command in self._workers]
        uvicorn = [str(python), "-m", "uvicorn", "bench.celery_peer:api", "--port", str(self.port)]
        self.processes.append(spawn([*uvicorn, "--host", "127.0.0.1", "--log-level", "warning"]))
        _wait_http(f"http://127.0.0.1:{self.port}/docs", self.processes[-1])
        time.sleep(2.0)  # the workers connect to Redis

    def kill_workers(self) -> None:
        """SIGKILL the Celery workers (each in a session of its own: the worker and its pool)."""
        for process in self.processes[1:3]:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def start_workers(self) -> None:
        """Start the Celery workers again and give them the time they take to connect to Redis."""
        self.processes[1:3] = [self._spawn(command) for command in self._workers]
        time.sleep(2.0)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


@contextmanager
def both_stacks(python: Path, timeout: float) -> Iterator[list[System]]:
    """Fresh stacks for one test, warmed up (imports, connections): longrun (devhost, Azurite on disk) and the
    reference. Each test gets its own, so no figure depends on what an earlier test left behind: Azurite's
    CPU per request grows with what its tables hold, and a worker that ran the CSV jobs holds Arrow's heap."""
    # What the last test wrote (300 MB of uploads) is still being written back to disk, under the next test.
    os.sync()
    with tempfile.TemporaryDirectory(prefix="longrun-side-by-side-") as scratch:
        state = Path(scratch)
        azurite = Azurite.start(location=state / "azurite")
        host = DevHost(azurite.connection_string)
        reference: ReferenceStack | None = None
        try:
            host.start()
            reference = ReferenceStack(python, state)
            systems: list[System] = [
                Longrun(host, azurite),
                Reference(
                    f"http://127.0.0.1:{reference.port}",
                    [p.pid for p in reference.processes],
                    [p.pid for p in reference.processes[1:]],  # [0] is redis-server
                    reference,
                ),
            ]
            for system in systems:
                wait_all(system, [system.submit_small(1, 0.0) for _ in range(4)], timeout)
            yield systems
        finally:
            host.stop(timeout=30)
            azurite.stop()
            if reference is not None:
                reference.stop()


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--submits", type=int, default=320, help="paced submits for the latency test")
    parser.add_argument("--csv-mb", type=int, default=100, help="0 skips the CSV test")
    parser.add_argument("--csv-runs", type=int, default=3, help="CSV jobs per stack: one cold, the rest warm")
    parser.add_argument("--crash-jobs", type=int, default=50, help="jobs of the crash test; 0 skips it")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--csv-only", action="store_true", help="the CSV test alone")
    only.add_argument("--crash-only", action="store_true", help="the crash test alone")
    parser.add_argument("--peer-venv", type=Path, default=Path(tempfile.gettempdir()) / "longrun-peer-venv")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    # Killed with SIGTERM (timeout, pkill), stop both stacks as on an error: their processes are in
    # sessions of their own and would outlive this one, loading the machine for the next measurement.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    python = ensure_peer_venv(args.peer_venv)
    figures: dict[str, dict[str, Any]] = {"longrun": {}, "celery": {}}
    tests: list[Callable[[list[System]], None]] = []
    csv = bool(args.csv_mb) and not args.crash_only
    main_tests = not (args.csv_only or args.crash_only)
    crash_test_on = bool(args.crash_jobs) and not args.csv_only
    if csv:
        path = generate_csv(args.csv_mb)

        def csv_test(systems: list[System]) -> None:
            for name, csv in csv_runs(systems, path, args.csv_runs, args.timeout).items():
                figures[name]["csv"] = csv

        tests.append(csv_test)
    if main_tests:

        def submit_test(systems: list[System]) -> None:
            for system in systems:
                figures[system.name]["submit"] = submit_latency(system, args.submits)
                print(system.name, "submit", figures[system.name]["submit"], flush=True)

        def throughput_test(systems: list[System]) -> None:
            for system in systems:
                figures[system.name]["throughput"] = throughput(system, args.jobs, args.timeout)
                print(system.name, "throughput", figures[system.name]["throughput"], flush=True)

        tests += [submit_test, throughput_test]
    if crash_test_on:

        def crash_test(systems: list[System]) -> None:
            for system in systems:
                figures[system.name]["crash"] = crash(system, args.crash_jobs)
                print(system.name, "crash", figures[system.name]["crash"], flush=True)

        tests.append(crash_test)  # last: the killed stacks are not used again
    for test in tests:
        with both_stacks(python, args.timeout) as systems:
            test(systems)
    mine, peer = figures["longrun"], figures["celery"]
    ratios: dict[str, Any] = {}
    if main_tests:
        ratios = {
            "submit_p50": ratio(mine["submit"]["p50_ms"], peer["submit"]["p50_ms"]),
            "submit_p99": ratio(mine["submit"]["p99_ms"], peer["submit"]["p99_ms"]),
            "throughput": ratio(mine["throughput"]["jobs_per_s"], peer["throughput"]["jobs_per_s"]),
            "cpu_per_job": ratio(mine["throughput"]["cpu_s_per_job"], peer["throughput"]["cpu_s_per_job"]),
        }
    if csv:
        if mine["csv"]["rows"] != peer["csv"]["rows"]:
            print(f"rows differ: longrun {mine['csv']['rows']}, reference {peer['csv']['rows']}", flush=True)
        ratios["csv_cold_seconds"] = ratio(mine["csv"]["cold_seconds"], peer["csv"]["cold_seconds"])
        if mine["csv"]["warm_seconds"] is not None:
            ratios["csv_warm_seconds"] = ratio(mine["csv"]["warm_seconds"], peer["csv"]["warm_seconds"])
    if crash_test_on:
        ratios["crash_lost"] = {name: figures[name]["crash"]["lost"] for name in ("longrun", "celery")}
    figures["ratios_longrun_over_reference"] = ratios
    figures["load_average"] = {"1m": round(os.getloadavg()[0], 2)}
    print("ratios longrun / reference:", ratios, "load", os.getloadavg(), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
