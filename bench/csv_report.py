"""csv-report throughput: submit → COMPLETED through a devhost vs. one Python process with the csv module.

For each size (100 MB by default, 1 GB with `--sizes 100,1000`) on a generated CSV:
- reference: one plain pass of `csv.reader` over the file, same aggregation (group counts, metric
  count/sum/min/max), timed in this process;
- devhost: upload (POST /api/uploads + PUT), submit (POST /api/jobs with the input_ref), poll until
  COMPLETED; wall time from the start of the upload;
- the ratio devhost / reference (target ≤ 0.75, stretch ≤ 0.3), and the peak memory (PSS) of the
  devhost's process tree (host + workers; target ≤ 512 MB) sampled every 100 ms.
The devhost runs a 1 MB job first (warm-up); its wall time is reported as `first_job_s`.
The job's result is checked against the reference (rows, group counts, sums within 1e-9 relative).
Also measured: the idle devhost's PSS after the warm-up, each process's peak PSS during the job, and the
side-by-side reference's computation (`bench.celery_peer.csv_group_by`: pyarrow reading the whole file with
its threads, in this process) for `ratio_to_pyarrow`, without its HTTP upload, and the CPU seconds the job
cost the devhost, its workers and Azurite (`cpu_s`, upload included) against the reference's
(`pyarrow_reference_cpu_s`).

`--shipped` runs the devhost with the settings `make run` uses (local.settings.sample.json and host.json:
2 worker processes x 4 threads, 8 MiB chunks), the ones issue #15's memory target is read with; by default
the devhost runs with BENCH_ENV (one process with two threads, 16 MiB chunks).

Run: `.venv/bin/python -m bench.csv_report [--sizes 100[,1000]] [--shipped] [--env KEY=VALUE ...]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from azure.storage.blob import BlobClient

from bench import arrow_group_by
from devhost.testing.azurite import Azurite
from devhost.testing.harness import APP_TEST_ENV, DevHost
from longrun_client.uploads import DEFAULT_BLOCK_BYTES, DEFAULT_CONCURRENCY

RATIO_TARGET = 0.75
RATIO_STRETCH = 0.3
MEMORY_TARGET_MB = 512
GROUP_BY = "region"
METRICS = ["amount", "qty"]
OPTIONS: dict[str, Any] = {"group_by": GROUP_BY, "metrics": METRICS}
DATA_DIR = Path(os.environ.get("LONGRUN_BENCH_DIR", Path(tempfile.gettempdir()) / "longrun-bench"))

BENCH_ENV = {
    # Two cores: one worker process with two threads. Arrow's parser and the numpy/Arrow kernels release
    # the GIL, so two threads keep both cores busy while the process pays its imports (Arrow, numpy, the
    # Azure SDKs: ~85 MB) once; two processes with one thread each were slower and used 100 MB more.
    # Waves of 8 chunks queue at the worker, which takes the next one as soon as a thread is free.
    "ENABLE_SIMULATE_KIND": "false",
    "CHUNK_TARGET_BYTES": str(16 * 1024 * 1024),
    "MAX_PARALLEL_CHUNKS": "8",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "1",
    "PYTHON_THREADPOOL_THREAD_COUNT": "2",
}
WARM_UP_MB = 1
"""A small job first, so that the figure is the steady state rather than the first call's imports and
connections (reported separately as `first_job_s`)."""


# --- input ---------------------------------------------------------------------------------------


def _block(rng: random.Random, target_bytes: int) -> bytes:
    regions = [f"region-{n:03d}" for n in range(200)] + ['"north, east"', '"a ""quoted"" one"']
    junk = ["", "n/a", " 7 ", "1e3", ".5", "-0.25"]
    lines = []
    size = 0
    while size < target_bytes:
        amount = f"{rng.uniform(-5000, 5000):.2f}" if rng.random() > 0.02 else rng.choice(junk)
        note = '"multi\nline, note"' if rng.random() < 0.01 else "ok"
        line = f"{rng.choice(regions)},{amount},{rng.randint(0, 99)},{note}\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def generate_csv(size_mb: int, directory: Path = DATA_DIR) -> Path:
    """A deterministic CSV of about `size_mb` MB (header, quoted fields, junk numbers), made once and reused."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"report-{size_mb}MB.csv"
    target = size_mb * 1024 * 1024
    if path.exists() and path.stat().st_size >= target:
        return path
    rng = random.Random(size_mb)
    blocks = [_block(rng, 1024 * 1024) for _ in range(32)]
    partial = path.with_suffix(".part")
    with open(partial, "wb") as out:
        out.write(b"region,amount,qty,note\n")
        written = 0
        index = 0
        while written < target:
            block = blocks[index % len(blocks)]
            out.write(block)
            written += len(block)
            index += 1
    partial.replace(path)
    return path


# --- reference -----------------------------------------------------------------------------------


def reference_report(path: Path) -> dict[str, Any]:
    """One process, one pass of the csv module: the baseline the devhost must beat."""
    groups: dict[str, list[Any]] = {}
    rows = 0
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader)
        group_index = header.index(GROUP_BY)
        metric_indices = [header.index(name) for name in METRICS]
        for row in reader:
            if not row:
                continue
            rows += 1
            key = row[group_index]
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0, [[0, 0.0, math.inf, -math.inf] for _ in metric_indices]]
            group[0] += 1
            for totals, index in zip(group[1], metric_indices, strict=True):
                try:
                    value = float(row[index])
                except (ValueError, IndexError):
                    continue
                totals[0] += 1
                totals[1] += value
                if value < totals[2]:
                    totals[2] = value
                if value > totals[3]:
                    totals[3] = value
    return {
        "rows": rows,
        "groups": {
            key: {"count": count, "metrics": {name: {"count": t[0], "sum": t[1]} for name, t in zip(
                METRICS, totals, strict=True)}}
            for key, (count, totals) in groups.items()
        },
    }  # fmt: skip


def check_result(result: dict[str, Any], reference: dict[str, Any]) -> None:
    if result["rows"] != reference["rows"] or set(result["groups"]) != set(reference["groups"]):
        raise AssertionError(f"rows/groups differ: {result['rows']} vs {reference['rows']}")
    for key, group in reference["groups"].items():
        got = result["groups"][key]
        if got["count"] != group["count"]:
            raise AssertionError(f"group {key!r}: count {got['count']} vs {group['count']}")
        for name, stats in group["metrics"].items():
            mine = got["metrics"][name]
            if mine["count"] != stats["count"] or not math.isclose(mine["sum"], stats["sum"], rel_tol=1e-9):
                raise AssertionError(f"group {key!r} metric {name}: {mine} vs {stats}")


# --- devhost ---------------------------------------------------------------------------------------


@dataclass
class MemorySampler:
    """Peak memory of processes and all their descendants: the sum of their PSS, and of their RSS.

    PSS (proportional set size) counts a page shared by n processes as 1/n in each, so the sum is the
    memory the tree really uses; the RSS sum counts shared libraries (Arrow, numpy) once per process.
    """

    pids: tuple[int, ...]
    interval: float = 0.1
    peak_bytes: int = 0
    peak_rss_bytes: int = 0
    peak_by_process: dict[str, int] = field(default_factory=dict)  # "pid name" -> peak PSS in bytes
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            roots = [psutil.Process(pid) for pid in self.pids]
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = total_rss = 0
            try:
                for process in [tree for root in roots for tree in (root, *root.children(recursive=True))]:
                    try:
                        memory = process.memory_full_info()
                        name = f"{process.pid} {process.name()}"
                    except psutil.NoSuchProcess:
                        continue
                    total += memory.pss
                    total_rss += memory.rss
                    self.peak_by_process[name] = max(self.peak_by_process.get(name, 0), memory.pss)
            except psutil.NoSuchProcess:
                return
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_rss_bytes = max(self.peak_rss_bytes, total_rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def upload(client: httpx.Client, path: Path) -> str:
    """Ask for an upload and PUT the file in blocks, streamed from disk, as longrun_client does; returns its
    input_ref."""
    created = client.post("/api/uploads", json={"content_type": "text/csv"})
    created.raise_for_status()
    ticket = created.json()
    blob = BlobClient.from_blob_url(
        ticket["upload_url"], max_single_put_size=DEFAULT_BLOCK_BYTES, max_block_size=DEFAULT_BLOCK_BYTES
    )
    with open(path, "rb") as data:
        blob.upload_blob(data, length=path.stat().st_size, overwrite=True, max_concurrency=DEFAULT_CONCURRENCY)
    return str(ticket["input_ref"])


def run_job(host: DevHost, path: Path, timeout: float) -> dict[str, Any]:
    """Upload, submit and wait; returns timings, the job document and its result."""
    client = host.client
    started = time.perf_counter()
    input_ref = upload(client, path)
    uploaded = time.perf_counter()
    response = client.post("/api/jobs", json={"kind": "csv-report", "input_ref": input_ref, "options": OPTIONS})
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
    location = response.headers["location"]
    deadline = started + timeout
    while True:
        polled = client.get(location)
        if polled.status_code != 202:
            break
        if time.perf_counter() > deadline:
            raise TimeoutError(f"job not done after {timeout} s: {polled.text}")
        time.sleep(0.2)  # a client polling harder would steal CPU from the job it measures
    finished = time.perf_counter()
    job = polled.json()
    if job.get("status") != "COMPLETED":
        raise RuntimeError(f"job ended {job.get('status')}: {job}")
    result = client.get(job["links"]["result"]).json()
    return {"job": job, "result": result, "upload_s": uploaded - started, "total_s": finished - started}


def pyarrow_reference_s(path: Path) -> tuple[float, float]:
    """Seconds and CPU seconds the side-by-side reference's task takes here: pyarrow over the whole file with
    its own threads (`bench.arrow_group_by`, which the Celery peer's task runs), timed in this process once
    the file is in the page cache.
    """
    path.read_bytes()  # page cache, as the reference's freshly written blob is
    started, cpu_started = time.perf_counter(), time.process_time()
    arrow_group_by.group_by(str(path), GROUP_BY, list(METRICS))
    return time.perf_counter() - started, time.process_time() - cpu_started


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes and their descendants so far (the living ones)."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _mib(value: int) -> float:
    return round(value / 1024 / 1024, 1)


def measure(size_mb: int, env: dict[str, str], timeout: float, shipped: bool = False) -> dict[str, Any]:
    path = generate_csv(size_mb)
    size = path.stat().st_size
    started = time.perf_counter()
    reference = reference_report(path)
    reference_s = time.perf_counter() - started
    pyarrow_s, pyarrow_cpu_s = pyarrow_reference_s(path)

    with tempfile.TemporaryDirectory(prefix="longrun-azurite-") as location:
        azurite = Azurite.start(location=Path(location))
        host_env = env if shipped else {**APP_TEST_ENV, **BENCH_ENV, **env}
        host = DevHost(azurite.connection_string, env=host_env)
        try:
            host.start()
            assert host.process is not None
            first_job_s = run_job(host, generate_csv(WARM_UP_MB), timeout)["total_s"]
            time.sleep(1.0)
            with MemorySampler((host.process.pid,)) as idle:
                time.sleep(1.0)
            assert azurite.process is not None
            stack = [host.process.pid, azurite.process.pid]
            cpu_before = cpu_seconds(stack)
            with MemorySampler((host.process.pid,)) as sampler:
                run = run_job(host, path, timeout)
            cpu_s = cpu_seconds(stack) - cpu_before
        finally:
            host.stop(timeout=30)
            azurite.stop()
    check_result(run["result"], reference)
    ratio = run["total_s"] / reference_s
    return {
        "size_mb": round(size / 1024 / 1024, 1),
        "rows": reference["rows"],
        "chunks": run["job"]["progress"]["total"],
        "reference_s": round(reference_s, 2),
        "devhost_total_s": round(run["total_s"], 2),
        "devhost_upload_s": round(run["upload_s"], 2),
        "devhost_processing_s": round(run["total_s"] - run["upload_s"], 2),
        "ratio": round(ratio, 3),
        "ratio_processing_only": round((run["total_s"] - run["upload_s"]) / reference_s, 3),
        "first_job_s": round(first_job_s, 2),
        "pyarrow_reference_s": round(pyarrow_s, 2),
        "ratio_to_pyarrow": round(run["total_s"] / pyarrow_s, 3),
        "cpu_s": round(cpu_s, 2),  # devhost, its workers and Azurite, upload included
        "pyarrow_reference_cpu_s": round(pyarrow_cpu_s, 2),
        "peak_pss_mb": _mib(sampler.peak_bytes),
        "peak_rss_sum_mb": _mib(sampler.peak_rss_bytes),
        "idle_pss_mb": _mib(idle.peak_bytes),
        "peak_pss_by_process_mb": {name: _mib(value) for name, value in sampler.peak_by_process.items()},
        "load_average_1m": round(os.getloadavg()[0], 1),
        "meets_ratio_target": ratio <= RATIO_TARGET,
        "meets_memory_target": sampler.peak_bytes / 1024 / 1024 <= MEMORY_TARGET_MB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100", help="comma-separated sizes in MB (default 100; e.g. 100,1000)")
    parser.add_argument("--env", action="append", default=[], help="extra devhost setting KEY=VALUE")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--shipped", action="store_true", help="the settings make run uses, not BENCH_ENV")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    figures = []
    for size in (int(part) for part in args.sizes.split(",") if part.strip()):
        figure = measure(size, env, args.timeout, args.shipped)
        figures.append(figure)
        print(
            f"csv-report {figure['size_mb']} MB ({figure['rows']} rows, {figure['chunks']} chunks): "
            f"devhost {figure['devhost_total_s']} s (upload {figure['devhost_upload_s']} s) vs "
            f"one process {figure['reference_s']} s -> ratio {figure['ratio']} "
            f"(processing only {figure['ratio_processing_only']}; target <= {RATIO_TARGET}, "
            f"stretch <= {RATIO_STRETCH}); peak memory {figure['peak_pss_mb']} MB PSS (target <= {MEMORY_TARGET_MB}; "
            f"RSS sum {figure['peak_rss_sum_mb']} MB; idle {figure['idle_pss_mb']} MB); "
            f"pyarrow reference {figure['pyarrow_reference_s']} s -> ratio {figure['ratio_to_pyarrow']}; "
            f"CPU {figure['cpu_s']} s (pyarrow {figure['pyarrow_reference_cpu_s']} s)",
            flush=True,
        )
    settings = env if args.shipped else {**BENCH_ENV, **env}
    print(
        json.dumps(
            {"benchmark": "csv_report", "shipped": args.shipped, "settings": settings, "figures": figures}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
