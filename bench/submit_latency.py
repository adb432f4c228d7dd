"""Submit latency: 16 concurrent clients POST a 1 KB inline job to a devhost; p50 and p99.

Targets: p50 <= 30 ms, p99 <= 150 ms (the Architecture Center asks for about 100 ms).
Run: `.venv/bin/python -m bench.submit_latency [--clients 16] [--requests 50] [--rate 8]`.

Two figures: the closed loop (every client posts again as soon as it is answered) measures what the
devhost sustains while it also runs every submitted job's orchestration on the same two cores, so
its latency is mostly queueing; the paced run (the 16 clients together offer `--rate` req/s) measures
the latency of one submission at that concurrency. `--kind simulate` posts parked simulate jobs (one
chunk sleeping in a worker), which isolates the front door from the jobs' own work on the devhost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost

P50_TARGET_MS = 30.0
P99_TARGET_MS = 150.0


def one_kb_job() -> dict[str, Any]:
    """A vector-normalize job whose JSON body is about 1 KB."""
    vectors = [[round(0.1 * (i + j), 3) for j in range(8)] for i in range(20)]
    metadata = {"source": "bench", "pad": ""}
    body = {"kind": "vector-normalize", "input": {"vector_data": vectors, "metadata": metadata}}
    while len(json.dumps(body)) < 1024:
        metadata["pad"] += "x" * 16
    return body


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def parked_simulate_job() -> dict[str, Any]:
    """A simulate job whose one chunk sleeps in a worker: isolates the front door from the jobs' own work."""
    return {"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 60}}


JOBS = {"vector-normalize": one_kb_job, "simulate": parked_simulate_job}


def measure(
    base_url: str,
    clients: int,
    requests_per_client: int,
    warmup: int = 20,
    rate: float | None = None,
    kind: str = "vector-normalize",
) -> dict[str, Any]:
    """Closed loop (each client posts again as soon as it has its answer) or, with `rate`, paced:
    the clients together offer `rate` requests per second, staggered evenly."""
    body = json.dumps(JOBS[kind]()).encode()
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(warmup):
            client.post("/api/jobs", content=body, headers=headers).raise_for_status()
    barrier = threading.Barrier(clients)

    interval = clients / rate if rate else 0.0

    def run_client(index: int) -> list[float]:
        latencies: list[float] = []
        with httpx.Client(base_url=base_url, timeout=30) as client:
            client.get("/api/health")  # open the connection outside the measurement
            barrier.wait()
            next_at = time.perf_counter() + interval * index / clients
            for _ in range(requests_per_client):
                if interval:
                    time.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval
                started = time.perf_counter()
                response = client.post("/api/jobs", content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202:
                    raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        samples = [ms for batch in pool.map(run_client, range(clients)) for ms in batch]
    elapsed = time.perf_counter() - started
    return {
        "mode": f"paced at {rate:g} req/s" if rate else "closed loop",
        "kind": kind,
        "clients": clients,
        "requests": len(samples),
        "body_bytes": len(body),
        "p50_ms": round(statistics.median(samples), 1),
        "p90_ms": round(percentile(samples, 0.90), 1),
        "p99_ms": round(percentile(samples, 0.99), 1),
        "max_ms": round(max(samples), 1),
        "throughput_rps": round(len(samples) / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument(
        "--rate", type=float, action="append", help="also measure paced at this total req/s (repeatable; default 8)"
    )
    parser.add_argument("--kind", choices=sorted(JOBS), default="vector-normalize")
    args = parser.parse_args(argv)
    rates: list[float | None] = [*(args.rate or [8.0]), None]  # paced first: the closed loop leaves a backlog
    # Azurite on disk, as `make run` uses it. (In memory, Azurite's queue store sweeps deleted messages
    # every 60 s and blocks all its services for seconds once thousands have gone: an emulator artefact.)
    data = tempfile.TemporaryDirectory(prefix="bench-azurite-")
    azurite = Azurite.start(location=Path(data.name))
    host = DevHost(azurite.connection_string, env={"ENABLE_SIMULATE_KIND": "true"})
    results = []
    try:
        host.start()
        for rate in rates:
            results.append(measure(host.base_url, args.clients, args.requests, rate=rate, kind=args.kind))
    finally:
        host.stop(timeout=20)
        azurite.stop()
        data.cleanup()
    for figures in results:
        ok = figures["p50_ms"] <= P50_TARGET_MS and figures["p99_ms"] <= P99_TARGET_MS
        print(
            f"submit latency ({figures['mode']}), {figures['clients']} concurrent clients, {figures['requests']} x "
            f"{figures['body_bytes']} B {figures['kind']} jobs: p50 {figures['p50_ms']} ms, "
            f"p90 {figures['p90_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms, "
            f"{figures['throughput_rps']} req/s "
            f"(targets p50 <= {P50_TARGET_MS:.0f} ms, p99 <= {P99_TARGET_MS:.0f} ms: {'met' if ok else 'missed'})"
        )
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
