"""The verdict of a fault run: did every accepted job end as docs/api.md says, exactly once, exactly right?

Pure functions over what the clients recorded and what the suite observed at the end, so the rules can
be unit-tested without a host:

- accepted: at least one 202 answer to a submit; every 202 for one key must name the same job, and that
  job's id must be the one the key derives (else *duplicated*);
- lost: accepted, but the job is unknown at the end (404, or no row in the `Jobs` table);
- stranded: still PENDING or RUNNING after the settle time;
- duplicated: more than one job for a key, or the job more than once in the index or in the listing;
- wrong: finished other than COMPLETED, or a result that differs from the independently computed one;
- unaccepted: a submit that never got its 202 within the client's retry budget (a failure of its own);
- orphans: rows, blobs or Durable instances left after retention ran over everything finished.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.workload import JobSpec, result_differences
from storage.admission import ADMISSION_PREFIX, LEDGER_ROW, ledger_from_entity

FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class Submission:
    """What one client saw while submitting one job (all its attempts)."""

    spec: JobSpec
    accepted_ids: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    accepted_at: float | None = None
    gave_up: str | None = None
    keyed: bool = True

    @property
    def job_id(self) -> str:
        """The job this submission names: derived from the key, or (unkeyed) the first one answered."""
        if self.keyed or not self.accepted_ids:
            return self.spec.job_id
        return self.accepted_ids[0]


@dataclass
class Observation:
    """What the suite saw of one job at the end: its resource, its result document, its rows."""

    http_status: int | None
    job: dict[str, Any] | None = None
    result: Any = None
    job_rows: int = 1
    index_rows: int = 1
    listed: int = 1


@dataclass
class Verdict:
    """Counts and a few examples of each kind of failure."""

    submitted: int = 0
    accepted: int = 0
    unaccepted: int = 0
    lost: int = 0
    stranded: int = 0
    duplicated: int = 0
    wrong: int = 0
    completed: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    by_variant: dict[str, Counter[str]] = field(default_factory=dict)

    def note(self, what: str, spec: JobSpec, detail: str) -> None:
        """Count one failure of `what` and keep up to three examples per variant."""
        setattr(self, what, getattr(self, what) + 1)
        per_variant = self.by_variant.setdefault(what, Counter())
        per_variant[spec.variant] += 1
        if per_variant[spec.variant] <= 3:
            how = spec.variant + (f", line ending {spec.line_ending!r}" if spec.line_ending else "")
            self.examples.setdefault(what, []).append(f"{spec.key} ({how}, job {spec.job_id}): {detail!r}")

    @property
    def failures(self) -> int:
        """Everything that misses a target."""
        return self.unaccepted + self.lost + self.stranded + self.duplicated + self.wrong


def judge(submissions: list[Submission], observations: dict[str, Observation]) -> Verdict:
    """Hold every accepted job to the contract; `observations` is keyed by job id."""
    verdict = Verdict(submitted=len(submissions))
    for submission in submissions:
        spec = submission.spec
        if not submission.accepted_ids:
            verdict.note("unaccepted", spec, submission.gave_up or "never answered 202")
            continue
        verdict.accepted += 1
        ids = set(submission.accepted_ids)
        if ids != {submission.job_id}:
            verdict.note("duplicated", spec, f"202 answers named jobs {sorted(ids)}")
        observation = observations.get(submission.job_id)
        if observation is None or observation.http_status == 404 or observation.job_rows == 0:
            status = None if observation is None else observation.http_status
            verdict.note(
                "lost", spec, f"answered {status}, job rows {0 if observation is None else observation.job_rows}"
            )
            continue
        if observation.index_rows > 1 or observation.listed > 1:
            verdict.note("duplicated", spec, f"{observation.index_rows} index rows, listed {observation.listed} times")
        job = observation.job or {}
        status = job.get("status")
        if status not in FINISHED:
            answers = ", ".join(f"{label} x{count}" for label, count in submission.answers.items())
            verdict.note("stranded", spec, f"status {status} (HTTP {observation.http_status}); client saw {answers}")
            continue
        if status != "COMPLETED":
            verdict.note("wrong", spec, f"ended {status}: {job.get('error')}")
            continue
        found = result_differences(spec, observation.result)
        if found:
            verdict.note("wrong", spec, "; ".join(found[:3]))
            continue
        verdict.completed += 1
    return verdict


@dataclass(frozen=True)
class Probe:
    """One request made while storage was down."""

    route: str
    status: int | None  # None: no answer (timeout or connection error)
    seconds: float
    retry_after: bool


@dataclass
class OutageVerdict:
    """Storage-outage answers: every one must be 503 with Retry-After within `limit` seconds."""

    probes: int
    statuses: Counter[str]
    routes: dict[str, str]
    p50: float
    p99: float
    max: float
    misses: int
    examples: list[str]

    @property
    def met(self) -> bool:
        """True when every probe was answered 503 + Retry-After in time (and there was at least one)."""
        return self.probes > 0 and self.misses == 0


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no samples)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def judge_outage(probes: list[Probe], limit: float = 2.0) -> OutageVerdict:
    """Hold the answers given during storage outages to the target: 503 + Retry-After within `limit` s."""
    statuses: Counter[str] = Counter()
    misses: list[str] = []
    for probe in probes:
        label = "no answer" if probe.status is None else str(probe.status)
        statuses[f"{probe.route} {label}"] += 1
        if probe.status != 503 or not probe.retry_after or probe.seconds > limit:
            misses.append(f"{probe.route}: {label} after {probe.seconds:.2f} s, Retry-After {probe.retry_after}")
    seconds = [probe.seconds for probe in probes]
    routes: dict[str, str] = {}
    for route in sorted({probe.route for probe in probes}):
        mine = [probe for probe in probes if probe.route == route]
        codes = Counter("no answer" if p.status is None else str(p.status) for p in mine)
        times = [p.seconds for p in mine]
        routes[route] = (
            f"{len(mine)} probes, {dict(codes)}, p50 {percentile(times, 0.5):.2f} s, max {max(times):.2f} s, "
            f"{sum(1 for p in mine if p.retry_after)} with Retry-After"
        )
    return OutageVerdict(
        probes=len(probes),
        statuses=statuses,
        routes=routes,
        p50=percentile(seconds, 0.5),
        p99=percentile(seconds, 0.99),
        max=max(seconds, default=0.0),
        misses=len(misses),
        examples=misses[:8],
    )


def leftover_row(row: dict[str, Any]) -> str | None:
    """What a `Jobs` table row still there after retention counts as, or None when it is standing state.

    The admission ledger (storage.admission) is the controller's one row per task hub: its counters of
    jobs that ever joined and left a lane grow for the hub's lifetime, so it stays. It is an orphan only
    while it still counts a job as running or waiting, as every job row, index row, upload row and
    admission queue row is.
    """
    partition = str(row["PartitionKey"])
    if partition.startswith(ADMISSION_PREFIX):
        if row["RowKey"] != LEDGER_ROW:
            return "admission queue rows"
        ledger = ledger_from_entity(row, None)
        return "admission ledger counting jobs" if ledger.running or ledger.waiting else None
    kind = "index" if partition == "index" else "uploads" if partition == "uploads" else "job"
    return f"Jobs {kind} rows ({row.get('status', '-')})"
