"""`make chaos`: jobs of every kind under host crashes, storage restarts and dropped connections.

The stack, all on loopback: Azurite on disk (a restart keeps its data), one fault-injecting proxy in
front of each Azurite port, and the app in a devhost whose `AzureWebJobsStorage` points at the proxies.
N clients submit M jobs (csv-report raw and uploaded, one raw body in ten over 4 MiB so that it is staged
while it arrives, vector-normalize inline, simulate) with Idempotency-Keys, retrying connection errors and
5xx with the same key, while a fault thread works
through a shuffled schedule of

- `host_kill`: SIGKILL the host's process group at a random moment, restart it;
- `burst_kill`: a burst of concurrent submits, SIGKILL 20-300 ms into it (the record-then-start window);
- `storage_restart`: stop Azurite, probe the API while it is down (the answers must be 503 + Retry-After
  within 2 s), start it again on the same ports and location;
- `conn_drop` / `conn_reset`: close (FIN) or abort (RST) every connection between host and storage, and
  do the same to new ones at random for a few seconds.

Submissions follow the fault schedule: the jobs are spread evenly over the faults' slots, and a slot's
jobs wait until its fault has begun, so every fault lands among running jobs however long the previous
one took to recover. After a fault that stops the host or storage, the suite measures recovery: from
the restart to the first 202 (a probe job submitted every 100 ms) and to progress (the first job of any
kind recorded finished after the restart). Then every accepted job is polled until it finishes or the
settle time runs out, and judged (`bench.chaos.checker`): lost, stranded, duplicated, wrong. Finally
retention runs over everything finished (rows backdated past RETENTION_DAYS, the timer every 2 s), and
whatever rows, blobs or Durable instances are left are orphans.

Run: `make chaos` (defaults: 1,000 jobs, 5 faults of each type) or `python -m bench.chaos --short`.
Exit status 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient

from bench.chaos.checker import (
    FINISHED,
    Observation,
    OutageVerdict,
    Probe,
    Submission,
    Verdict,
    judge,
    judge_outage,
    leftover_row,
    percentile,
)
from bench.chaos.client import JobClient
from bench.chaos.proxy import ProxyGroup, Sever
from bench.chaos.workload import JobSpec, make_job, plan_jobs, simulate_job
from devhost.azurite import azurite_command, development_connection_string, wait_listening
from devhost.durable.timings import FAST_TEST_TIMINGS
from devhost.testing.azurite import ROOT, free_port
from devhost.testing.harness import DevHost

FAULT_TYPES = ("host_kill", "burst_kill", "storage_restart", "conn_drop", "conn_reset")
OUTAGE_LIMIT_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 30.0  # an outage probe unanswered after this counts as "no answer"
TARGETS = ("lost", "stranded", "duplicated", "wrong", "unaccepted")
RETENTION_DAYS = 7  # the app's default; rows are backdated past it


@dataclass
class Config:
    """One run's shape."""

    jobs: int = 1000
    clients: int = 16
    faults: int = 5
    seed: int = 1
    rate: float | None = None
    settle: float = 120.0  # stop waiting once no job has finished for this long
    settle_cap: float = 1800.0
    outage: float = 6.0
    delay: float = 0.0
    burst: int = 12
    budget: float = 180.0
    retention: bool = True
    keep: bool = False
    fault_spacing: float = 8.0


@dataclass
class FaultRecord:
    """One injected fault and what followed it."""

    type: str
    at: float
    detail: str = ""
    answer_s: float | None = None
    progress_s: float | None = None


class Storage:
    """Azurite on disk on fixed ports, stopped and started again in place."""

    def __init__(self, ports: tuple[int, int, int], location: Path, log: Path) -> None:
        self.ports = ports
        self.location = location
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start Azurite and wait until all three ports listen."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                azurite_command(ROOT, self.ports, self.location),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_listening(self.process, self.ports, timeout=60)

    def stop(self) -> None:
        """SIGTERM (Azurite saves its metadata on the way out, as Azure never loses an acknowledged write)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Run:
    """Everything a run starts and records."""

    config: Config
    directory: Path
    storage: Storage
    proxies: ProxyGroup
    host: DevHost
    direct: str  # connection string straight to Azurite (the checker's view, no faults)
    prefix: str
    rng: random.Random
    submissions: list[Submission] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    faults_begun: int = 0
    faults_planned: int = 0
    faults_over: bool = False

    def add(self, submission: Submission) -> Submission:
        """Track a submission (thread-safe)."""
        with self.lock:
            self.submissions.append(submission)
        return submission

    def next_key(self, what: str) -> str:
        """A fresh idempotency key for a job the suite makes up on the way (probes, bursts)."""
        with self.lock:
            self.counter += 1
            return f"{self.prefix}-{what}-{self.counter:05d}"


def log(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- recovery and faults -----------------------------------------------------------------------------------


def first_finish_after(run: Run, moment: datetime, timeout: float = 60.0) -> float | None:
    """Seconds from `moment` until some job is recorded finished after it (read straight from Azurite)."""
    table = TableServiceClient.from_connection_string(run.direct).get_table_client("Jobs")
    since = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the job store's fixed-width format: string order is time order
    query = f"PartitionKey eq 'index' and finished_at gt '{since}'"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if next(iter(table.query_entities(query, select=["RowKey"], results_per_page=1)), None) is not None:
                return (datetime.now(UTC) - moment).total_seconds()
        except (ResourceNotFoundError, HttpResponseError, ServiceRequestError):
            pass
        time.sleep(0.2)
    return None


def measure_recovery(run: Run, started: float, record: FaultRecord) -> None:
    """Recovery after a restart at `started`: the first 202 (a one-chunk simulate job submitted every 100 ms)
    and progress (the first job of any kind recorded finished after the restart)."""
    restarted = datetime.now(UTC) - timedelta(seconds=time.monotonic() - started)
    spec = simulate_job(run.next_key("probe"), run.rng, chunks=1, seconds=0.0)
    submission = run.add(Submission(spec))
    client = JobClient(run.host.base_url, budget=120, timeout=5, max_backoff=0.1, seed=run.rng.randint(0, 10**6))
    try:
        client.submit(submission)
    finally:
        client.close()
    if submission.accepted_at is not None:
        record.answer_s = submission.accepted_at - started
    record.progress_s = first_finish_after(run, restarted)


def restart_host(run: Run) -> float:
    """Start the host again after a kill; returns the moment of the restart."""
    started = time.monotonic()
    run.host.start(wait=False)
    run.host.wait_ready(timeout=120)
    return started


def fault_host_kill(run: Run, record: FaultRecord) -> None:
    """SIGKILL the host (process group) wherever it is, restart it."""
    run.host.kill()
    measure_recovery(run, restart_host(run), record)


def fault_burst_kill(run: Run, record: FaultRecord) -> None:
    """Fire a burst of keyed submits and SIGKILL the host while they are being recorded and started."""
    submissions = []
    for _ in range(run.config.burst):
        variant = run.rng.choice(("vector-inline", "simulate"))
        submissions.append(run.add(Submission(make_job(run.next_key("burst"), variant, run.rng))))
    barrier = threading.Barrier(len(submissions) + 1)

    def submit(submission: Submission, seed: int) -> None:
        client = JobClient(run.host.base_url, budget=run.config.budget, seed=seed)
        try:
            barrier.wait()
            client.submit(submission)
        finally:
            client.close()

    for submission in submissions:
        thread = threading.Thread(target=submit, args=(submission, run.rng.randint(0, 10**6)), daemon=True)
        thread.start()
        run.threads.append(thread)
    barrier.wait()
    began = time.monotonic()
    recorded = wait_for_rows(run, [s.spec.job_id for s in submissions], timeout=5.0)
    seen = time.monotonic()
    time.sleep(run.rng.uniform(0.0, 0.05))
    run.host.kill()
    record.detail = (
        f"{len(submissions)} submits, first job row after {(seen - began) * 1000:.0f} ms, "
        f"killed {(time.monotonic() - seen) * 1000:.0f} ms later with {recorded} rows recorded"
    )
    measure_recovery(run, restart_host(run), record)


def wait_for_rows(run: Run, job_ids: list[str], timeout: float) -> int:
    """Poll the Jobs table (straight from Azurite) until a job row of one of `job_ids` exists; how many do."""
    table = TableServiceClient.from_connection_string(run.direct).get_table_client("Jobs")
    query = " or ".join(f"PartitionKey eq '{job_id}'" for job_id in job_ids)
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = sum(1 for row in table.query_entities(query, select=["RowKey"]) if row["RowKey"] == "job")
        except ResourceNotFoundError:
            found = 0
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.005)


def _probe_routes(run: Run) -> list[tuple[str, Callable[[httpx.Client], httpx.Response]]]:
    known = next((s.spec.job_id for s in run.submissions if s.accepted_ids), uuid.uuid4().hex)
    unknown = uuid.uuid4().hex

    def keyed_submit(http: httpx.Client) -> httpx.Response:
        spec = simulate_job(run.next_key("outage"), run.rng, chunks=1, seconds=0.0)
        headers = {"Content-Type": "application/json", "Idempotency-Key": spec.key}
        response = http.post("/api/jobs", content=spec.body, headers=headers)
        if response.status_code == 202:  # accepted while storage was down: it must run like any other
            run.add(Submission(spec, accepted_ids=[str(response.json().get("id"))], accepted_at=time.monotonic()))
        return response

    def unkeyed_submit(http: httpx.Client) -> httpx.Response:
        spec = simulate_job(run.next_key("outage-unkeyed"), run.rng, chunks=1, seconds=0.0)
        response = http.post("/api/jobs", content=spec.body, headers={"Content-Type": "application/json"})
        if response.status_code == 202:
            accepted = [str(response.json().get("id"))]
            run.add(Submission(spec, accepted_ids=accepted, accepted_at=time.monotonic(), keyed=False))
        return response

    def raw_submit(http: httpx.Client) -> httpx.Response:
        body = b"region,amount\nnorth,1\n"
        return http.post(
            "/api/jobs?kind=csv-report&group_by=region", content=body, headers={"Content-Type": "text/csv"}
        )

    return [
        ("POST /api/jobs keyed", keyed_submit),
        ("POST /api/jobs unkeyed", unkeyed_submit),
        ("POST /api/jobs raw csv unkeyed", raw_submit),
        ("GET /api/jobs/{id}", lambda http: http.get(f"/api/jobs/{known}")),
        ("GET /api/jobs/{id}/result", lambda http: http.get(f"/api/jobs/{known}/result")),
        ("DELETE /api/jobs/{unknown}", lambda http: http.delete(f"/api/jobs/{unknown}")),
        ("GET /api/jobs", lambda http: http.get("/api/jobs?limit=5")),
        ("POST /api/uploads", lambda http: http.post("/api/uploads", json={"content_type": "text/csv"})),
        ("GET /api/dead-letters", lambda http: http.get("/api/dead-letters")),
        ("GET /api/health", lambda http: http.get("/api/health")),
    ]


def probe_outage(run: Run, until: float) -> list[threading.Thread]:
    """One thread per route, each sending it again and again while storage is down; each answer is timed.

    Returns the threads: a probe may hang long after the outage (that is a finding), so nobody waits here.
    """
    routes = _probe_routes(run)

    def worker(label: str, call: Callable[[httpx.Client], httpx.Response]) -> None:
        with httpx.Client(base_url=run.host.base_url, timeout=PROBE_TIMEOUT_SECONDS) as http:
            while time.monotonic() < until:
                started = time.monotonic()
                try:
                    response = call(http)
                    status: int | None = response.status_code
                    retry_after = "retry-after" in response.headers
                except httpx.TransportError:
                    status, retry_after = None, False
                probe = Probe(label, status, time.monotonic() - started, retry_after)
                with run.lock:
                    run.probes.append(probe)

    workers = [threading.Thread(target=worker, args=route, daemon=True) for route in routes]
    for thread in workers:
        thread.start()
    return workers


def fault_storage_restart(run: Run, record: FaultRecord) -> None:
    """Stop Azurite, probe the API while it is down, start it again on the same ports and data."""
    run.storage.stop()
    down = time.monotonic()
    # Probes start early enough that a 2 s answer still lands inside the outage.
    run.threads.extend(probe_outage(run, down + max(0.5, run.config.outage - OUTAGE_LIMIT_SECONDS - 0.5)))
    time.sleep(max(0.0, down + run.config.outage - time.monotonic()))
    run.storage.start()
    record.detail = f"down {time.monotonic() - down:.1f} s"
    measure_recovery(run, time.monotonic(), record)


def fault_connections(kind: Sever) -> Callable[[Run, FaultRecord], None]:
    """Sever every host-storage connection now and new ones at random for 3 s."""

    def inject(run: Run, record: FaultRecord) -> None:
        severed = run.proxies.sever_all(kind)
        run.proxies.flaky(kind, seconds=3.0, probability=0.5, max_after=0.3)
        time.sleep(3.0)
        record.detail = f"{severed} open connections severed at once"

    return inject


FAULTS: dict[str, Callable[[Run, FaultRecord], None]] = {
    "host_kill": fault_host_kill,
    "burst_kill": fault_burst_kill,
    "storage_restart": fault_storage_restart,
    "conn_drop": fault_connections("drop"),
    "conn_reset": fault_connections("reset"),
}


def run_faults(run: Run, started: float, duration: float) -> None:
    """Inject every fault of the shuffled schedule at a random moment of its slot, one after another."""
    schedule = [kind for kind in FAULT_TYPES for _ in range(run.config.faults)]
    run.rng.shuffle(schedule)
    run.faults_planned = len(schedule)
    try:
        slot = duration / max(1, len(schedule))
        for index, kind in enumerate(schedule):
            at = started + slot * (index + run.rng.uniform(0.1, 0.9))
            time.sleep(max(0.0, at - time.monotonic()))
            record = FaultRecord(kind, time.monotonic() - started)
            run.faults_begun = index + 1
            log(f"fault {index + 1}/{len(schedule)}: {kind}")
            try:
                FAULTS[kind](run, record)
            except Exception as error:  # noqa: BLE001 - a fault that could not be injected is reported, not fatal
                record.detail = f"injection failed: {type(error).__name__}: {error}"
                log(record.detail)
            run.faults.append(record)
    finally:
        run.faults_over = True


# --- clients -------------------------------------------------------------------------------------------------


def run_clients(run: Run, specs: list[JobSpec], rate: float, started: float) -> None:
    """N client threads take the jobs in order, each submitted at its slot of the paced schedule."""
    pending: queue.Queue[tuple[int, JobSpec]] = queue.Queue()
    for item in enumerate(specs):
        pending.put(item)

    def client_loop(seed: int) -> None:
        client = JobClient(run.host.base_url, budget=run.config.budget, seed=seed)
        try:
            while True:
                try:
                    index, spec = pending.get_nowait()
                except queue.Empty:
                    return
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
                # Job i belongs to the slot of fault i * F // M: hold it until that fault has begun.
                while not run.faults_over and run.faults_begun < index * run.faults_planned // len(specs):
                    time.sleep(0.05)
                client.submit(run.add(Submission(spec)))
        finally:
            client.close()

    with ThreadPoolExecutor(run.config.clients) as pool:
        for i in range(run.config.clients):
            pool.submit(client_loop, run.config.seed * 1000 + i)


# --- settle and observe --------------------------------------------------------------------------------------


POLL_UNFINISHED_EVERY = 10.0
"""Seconds between the settle's polls of the unfinished jobs through the API, as their clients poll."""


def settle(run: Run, quiet: float, cap: float) -> int:
    """Wait until every accepted job is recorded finished, or none has finished for `quiet` seconds (or `cap`
    has passed). Reads the job rows straight from Azurite: one query instead of a GET per job, so that a
    thousand jobs can be watched without loading the host. Every POLL_UNFINISHED_EVERY seconds the jobs not
    yet finished are polled once through the API, as a client of the 202 pattern polls its Location: a job
    whose start after the answer was lost to a kill is started by such a poll (jobs.recovery). Returns how
    many are still unfinished."""
    accepted = {s.job_id for s in run.submissions if s.accepted_ids}
    began = last_progress = time.monotonic()
    finished_before = -1
    last_log = last_poll = 0.0
    while True:
        try:
            rows = jobs_table_rows(run.direct)
        except (HttpResponseError, ServiceRequestError):
            rows = []
        finished = {
            str(r["PartitionKey"]) for r in rows if r["RowKey"] == "job" and r.get("status") in FINISHED
        } & accepted
        waiting = len(accepted) - len(finished)
        now = time.monotonic()
        if len(finished) > finished_before:
            finished_before, last_progress = len(finished), now
        if not waiting or now - last_progress > quiet or now - began > cap:
            return waiting
        if now - last_log > 30:
            log(f"settling: {waiting} of {len(accepted)} jobs not finished")
            last_log = now
        if now - last_poll > POLL_UNFINISHED_EVERY:
            poll_jobs(run, sorted(accepted - finished))
            last_poll = now
        time.sleep(2.0)


def poll_jobs(run: Run, job_ids: list[str]) -> None:
    """GET each job once (8 at a time); the answers are not used (observe reads every job at the end)."""
    client = httpx.Client(base_url=run.host.base_url, timeout=30)

    def poll(job_id: str) -> None:
        try:
            client.get(f"/api/jobs/{job_id}")
        except httpx.HTTPError:
            pass  # the host may be down or restarting: the next round polls again

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(poll, job_ids))
    finally:
        client.close()


def jobs_table_rows(connection_string: str) -> list[dict[str, Any]]:
    """Every row of the Jobs table, read straight from Azurite."""
    table = TableServiceClient.from_connection_string(connection_string).get_table_client("Jobs")
    try:
        return list(table.list_entities())
    except ResourceNotFoundError:
        return []


def listed_ids(run: Run) -> Counter[str]:
    """How often each job appears across every page of GET /api/jobs."""
    seen: Counter[str] = Counter()
    client = JobClient(run.host.base_url, timeout=30)
    url: str | None = "/api/jobs?limit=100"
    pages = 0
    try:
        while url and pages < len(run.submissions) // 100 + 50:
            pages += 1
            response = client.http.get(url)
            if response.status_code != 200:
                log(f"listing answered {response.status_code}; stopping at page {pages}")
                break
            body = response.json()
            seen.update(str(item["id"]) for item in body.get("items", []))
            token = body.get("continuation")
            url = None if not token else f"/api/jobs?limit=100&continuation={token}"
    finally:
        client.close()
    return seen


def observe(run: Run) -> dict[str, Observation]:
    """The final view of every accepted job through the API (resource, result; 8 at a time), its rows in
    the Jobs table and how often the listing shows it."""
    rows = jobs_table_rows(run.direct)
    job_rows = Counter(str(r["PartitionKey"]) for r in rows if r["RowKey"] == "job")
    index_rows = Counter(str(r.get("job_id")) for r in rows if r["PartitionKey"] == "index")
    listed = listed_ids(run)
    job_ids = list(dict.fromkeys(s.job_id for s in run.submissions if s.accepted_ids))
    local = threading.local()

    def look(job_id: str) -> tuple[str, Observation]:
        if not hasattr(local, "client"):
            local.client = JobClient(run.host.base_url, timeout=30)
        client: JobClient = local.client
        status, job = client.job(job_id)
        for _ in range(5):  # a transient failure of the poll itself is not the job's state
            if status is not None and status < 500:
                break
            time.sleep(1.0)
            status, job = client.job(job_id)
        result = client.result(job_id) if job and job.get("status") == "COMPLETED" else None
        return job_id, Observation(status, job, result, job_rows[job_id], index_rows[job_id], listed[job_id])

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(look, job_ids))


# --- retention ---------------------------------------------------------------------------------------------


def dead_lettered_jobs(run: Run) -> set[str]:
    """Jobs with a dead letter: retention keeps their input for a replay (by design, not an orphan)."""
    table = TableServiceClient.from_connection_string(run.direct).get_table_client("DeadLetters")
    try:
        return {str(row["job_id"]) for row in table.query_entities("PartitionKey eq 'record'") if row.get("job_id")}
    except ResourceNotFoundError:
        return set()


def leftovers(run: Run) -> dict[str, int]:
    """Rows, blobs and Durable instances still stored (after retention, all of them are orphans).

    The input of a dead-lettered job is kept for its replay until the dead letter expires (30 days).
    """
    found: Counter[str] = Counter()
    kept_inputs = {f"jobs/{job_id}/input" for job_id in dead_lettered_jobs(run)}
    for row in jobs_table_rows(run.direct):
        label = leftover_row(row)
        if label is not None:
            found[label] += 1
    blobs = BlobServiceClient.from_connection_string(run.direct)
    for container in ("payloads", "results"):
        try:
            for blob in blobs.get_container_client(container).list_blobs():
                if container == "payloads" and blob.name in kept_inputs:
                    continue
                found[f"{container} blobs ({blob.name.split('/')[0]}/)"] += 1
        except ResourceNotFoundError:
            pass
    tables = TableServiceClient.from_connection_string(run.direct)
    for suffix in ("Instances", "History"):
        try:
            count = sum(
                1 for _ in tables.get_table_client(f"{run.host.task_hub}{suffix}").list_entities(select=["RowKey"])
            )
        except ResourceNotFoundError:
            count = 0
        if count:
            found[f"Durable {suffix} rows"] = count
    return dict(found)


def run_retention(run: Run, timeout: float = 1200.0) -> dict[str, int]:
    """Backdate every finished job past RETENTION_DAYS (uploads past both retentions), let the timer purge.

    One timer invocation purges the jobs one after another (about 3 a second on the shared 2-core machine),
    so this waits until two looks 10 s apart find the same leftovers, however long that takes (bounded)."""
    run.host.stop(timeout=60)
    table = TableServiceClient.from_connection_string(run.direct).get_table_client("Jobs")
    now = datetime.now(UTC)
    old = (now - timedelta(days=RETENTION_DAYS + 1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    very_old = (now - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for row in jobs_table_rows(run.direct):
        if row["PartitionKey"] == "uploads":
            fields = {"created_at": very_old}
        elif row.get("finished_at"):
            fields = {"finished_at": old}
        else:
            continue
        table.update_entity(
            {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], **fields}, mode=UpdateMode.MERGE
        )
    run.host.env["RETENTION_SCHEDULE"] = "*/2 * * * * *"
    run.host.start()
    deadline = time.monotonic() + timeout
    previous: dict[str, int] | None = None
    while time.monotonic() < deadline:
        time.sleep(10)
        current = leftovers(run)
        if current == previous:  # two passes of the timer changed nothing
            break
        previous = current
    return leftovers(run)


# --- report ----------------------------------------------------------------------------------------------------


def _seconds(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s, max {max(values):.2f} s"


def report(
    run: Run, verdict: Verdict, outage: OutageVerdict, orphans: dict[str, int] | None, elapsed: float
) -> list[str]:
    """Print the figures; return the targets missed."""
    missed: list[str] = []
    by_type = Counter(f.type for f in run.faults if not f.detail.startswith("injection failed"))
    counters = run.proxies.counters()
    print("\n== chaos: results")
    print(f"run time: {elapsed:.0f} s, seed {run.config.seed}, logs and data: {run.directory}")
    print(
        f"jobs: {verdict.submitted} submitted, {verdict.accepted} accepted, {verdict.completed} completed exactly "
        f"({Counter(s.spec.variant for s in run.submissions)})"
    )
    print("faults: " + ", ".join(f"{kind} {by_type[kind]}" for kind in FAULT_TYPES))
    for fault in run.faults:
        if fault.detail:
            print(f"    {fault.type} at {fault.at:.0f} s: {fault.detail}")
    seen = sum((s.answers for s in run.submissions), Counter())
    print("client answers: " + ", ".join(f"{label} x{count}" for label, count in sorted(seen.items())))
    print(
        f"proxy: {counters.connections} connections, {counters.dropped} dropped, {counters.reset} reset, "
        f"{counters.upstream_refused} refused while storage was down"
    )
    for what in TARGETS:
        count = getattr(verdict, what)
        per_variant = dict(verdict.by_variant.get(what, {}))
        print(f"{what}: {count}" + (f" {per_variant}" if per_variant else ""))
        for example in verdict.examples.get(what, []):
            print(f"    {example}")
        if count:
            missed.append(f"{what} {count}")
    for kind in ("host_kill", "burst_kill", "storage_restart"):
        records = [f for f in run.faults if f.type == kind]
        answers = [f.answer_s for f in records if f.answer_s is not None]
        progress = [f.progress_s for f in records if f.progress_s is not None]
        print(f"recovery after {kind}: first 202 {_seconds(answers)}; first job finished {_seconds(progress)}")
    every = [f for f in run.faults if f.type in ("host_kill", "burst_kill", "storage_restart")]
    print(
        f"recovery overall: first 202 {_seconds([f.answer_s for f in every if f.answer_s is not None])}; "
        f"first job finished {_seconds([f.progress_s for f in every if f.progress_s is not None])}"
    )
    print(
        f"storage-outage answers: {outage.probes} probes, latency p50 {outage.p50:.2f} s, p99 {outage.p99:.2f} s, "
        f"max {outage.max:.2f} s; {outage.misses} not 503 + Retry-After within {OUTAGE_LIMIT_SECONDS:.0f} s"
    )
    for route, figures in outage.routes.items():
        print(f"    {route}: {figures}")
    if not outage.met:
        missed.append(f"outage answers {outage.misses}/{outage.probes} missed")
    if orphans is None:
        print("orphans after retention: not checked (--no-retention)")
    else:
        total = sum(orphans.values())
        print(f"orphans after retention: {total}" + (f" {orphans}" if orphans else ""))
        if total:
            missed.append(f"orphans {total}")
    short = [kind for kind in FAULT_TYPES if by_type[kind] < run.config.faults]
    if short:
        missed.append(f"faults not injected: {short}")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return missed


def write_json(run: Run, verdict: Verdict, outage: OutageVerdict, orphans: dict[str, int] | None) -> Path:
    """The figures and examples as JSON next to the logs."""
    path = run.directory / "report.json"
    document = {
        "config": asdict(run.config),
        "faults": [asdict(f) for f in run.faults],
        "verdict": {
            **{name: getattr(verdict, name) for name in ("submitted", "accepted", "completed", *TARGETS)},
            "examples": verdict.examples,
            "by_variant": {what: dict(counts) for what, counts in verdict.by_variant.items()},
        },
        "outage": {
            "probes": outage.probes,
            "statuses": dict(outage.statuses),
            "routes": outage.routes,
            "p50": outage.p50,
            "p99": outage.p99,
            "max": outage.max,
            "misses": outage.misses,
            "examples": outage.examples,
        },
        "orphans": orphans,
        "answers": dict(sum((s.answers for s in run.submissions), Counter())),
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


# --- main --------------------------------------------------------------------------------------------------------


def execute(config: Config) -> int:
    """One run; returns the exit status."""
    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="chaos-", dir=os.environ.get("TMPDIR")))
    azurite_ports = (free_port(), free_port(), free_port())
    proxy_ports = (free_port(), free_port(), free_port())
    storage = Storage(azurite_ports, directory / "azurite", directory / "azurite.log")
    proxies = ProxyGroup(list(zip(proxy_ports, azurite_ports, strict=True)), config.delay, config.seed)
    env = {
        "ENABLE_SIMULATE_KIND": "true",
        "RETRY_FIRST_INTERVAL_SECONDS": "0.5",
        "RETRY_MAX_INTERVAL_SECONDS": "5",
        # Work a killed host held is redelivered after 15 s instead of the minute host.json sets (Azure's
        # default is 5 min; docs/devhost.md gives the recovery times), so a run settles in minutes. The shipped
        # minute itself is proven end to end by tests/jobs/test_end_to_end.py and the peers' crash test.
        **FAST_TEST_TIMINGS,
    }
    # Every episode logged (its history length among it): a wrong job's log then shows where its history went.
    host = DevHost(
        development_connection_string(proxy_ports),
        env=env,
        args=["--log-episodes"],
        log_path=directory / "devhost.log",
    )
    run = Run(
        config,
        directory,
        storage,
        proxies,
        host,
        development_connection_string(azurite_ports),
        f"chaos{config.seed}-{uuid.uuid4().hex[:6]}",
        random.Random(config.seed),
    )
    log(f"data and logs in {directory}")
    missed: list[str] = ["did not finish"]
    try:
        storage.start()
        proxies.start()
        host.start()
        specs = plan_jobs(config.jobs, config.seed, run.prefix)
        duration = len(FAULT_TYPES) * config.faults * config.fault_spacing
        rate = config.rate or max(0.5, config.jobs / duration)
        log(f"{config.jobs} jobs at {rate:.1f}/s from {config.clients} clients, {config.faults} faults of each type")
        started = time.monotonic()
        run.faults_planned = len(FAULT_TYPES) * config.faults
        faults = threading.Thread(target=run_faults, args=(run, started, duration), daemon=True)
        faults.start()
        run_clients(run, specs, rate, started)
        faults.join()
        for thread in run.threads:
            thread.join(config.budget + 10)
        log(f"submitted; settling until all jobs finish or none has for {config.settle:.0f} s")
        settle(run, config.settle, config.settle_cap)
        verdict = judge(run.submissions, observe(run))
        outage = judge_outage(run.probes, OUTAGE_LIMIT_SECONDS)
        orphans = None
        if config.retention:
            log("retention over everything finished")
            orphans = run_retention(run)
        missed = report(run, verdict, outage, orphans, time.monotonic() - began)
        print(f"report: {write_json(run, verdict, outage, orphans)}")
    finally:
        host.stop(timeout=30)
        proxies.stop()
        storage.stop()
        if not config.keep and not missed:
            shutil.rmtree(directory, ignore_errors=True)
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m bench.chaos [--short] [--jobs N] [--faults F] ...`."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--short", action="store_true", help="60 jobs, 1 fault of each type (< 3 minutes)")
    parser.add_argument("--jobs", type=int, help="jobs to submit (default 1000; 60 with --short)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--faults", type=int, help="faults of each type (default 5; 1 with --short)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, help="submits per second (default: spread over the fault schedule)")
    parser.add_argument(
        "--settle", type=float, help="stop waiting once no job has finished for this long (default 120 s; 45 short)"
    )
    parser.add_argument("--outage", type=float, default=6.0, help="seconds storage stays down per restart")
    parser.add_argument("--delay", type=float, default=0.0, help="max seconds the proxy delays each block")
    parser.add_argument("--no-retention", action="store_true", help="skip the orphan check after retention")
    parser.add_argument("--keep", action="store_true", help="keep Azurite data and logs even when all is well")
    args = parser.parse_args(argv)
    config = Config(
        jobs=args.jobs or (60 if args.short else 1000),
        clients=args.clients,
        faults=args.faults or (1 if args.short else 5),
        seed=args.seed,
        rate=args.rate,
        settle=args.settle or (45.0 if args.short else 120.0),
        settle_cap=300.0 if args.short else 1800.0,
        outage=args.outage,
        delay=args.delay,
        burst=8 if args.short else 12,
        retention=not args.no_retention,
        keep=args.keep,
        fault_spacing=6.0 if args.short else 8.0,
    )
    # `timeout` and CI runners stop with SIGTERM: unwind through `finally`, so no host or Azurite outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return execute(config)
