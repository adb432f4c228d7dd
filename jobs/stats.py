"""Job statistics over the last hours, for the dashboard's charts: submissions, outcomes and durations per bucket.

Read from the Jobs table's index with one key-range query (newest first, a few fields per row), so the
charts cost no Durable status call; the counts are those recorded in the rows (a job whose row lags its
orchestration shows there as RUNNING until someone reads it). At most MAX_JOBS rows are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobs.errors import InvalidRequest, field_error
from shared.clock import iso, parse_iso, utc_now
from shared.contracts import JobStatus
from storage import jobs as job_store
from storage.clients import StorageClients

MAX_HOURS = 48
MAX_BUCKET_MINUTES = 60
MAX_JOBS = 10_000  # rows read per request; beyond it the statistics say they are truncated
_OUTCOMES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class StatsWindow:
    """The time window asked for and its bucket width."""

    hours: int
    bucket_minutes: int


def check_window(hours: int, bucket_minutes: int) -> StatsWindow:
    """InvalidRequest unless 1 <= hours <= MAX_HOURS and 1 <= bucket_minutes <= MAX_BUCKET_MINUTES."""
    errors = []
    if not 1 <= hours <= MAX_HOURS:
        errors.append(field_error("hours", f"an integer from 1 to {MAX_HOURS}"))
    if not 1 <= bucket_minutes <= MAX_BUCKET_MINUTES:
        errors.append(field_error("bucket_minutes", f"an integer from 1 to {MAX_BUCKET_MINUTES}"))
    if errors:
        raise InvalidRequest("invalid statistics window", errors)
    return StatsWindow(hours, bucket_minutes)


def _empty_bucket(start: datetime) -> dict[str, Any]:
    return {"start": iso(start), "submitted": 0, **{s.value.lower(): 0 for s in _OUTCOMES}, "_durations": []}


def _summary(durations: list[float]) -> dict[str, float | None]:
    if not durations:
        return {"mean": None, "max": None}
    return {"mean": round(sum(durations) / len(durations), 3), "max": round(max(durations), 3)}


def _failure_rate(bucket: dict[str, Any]) -> float | None:
    finished = sum(bucket[s.value.lower()] for s in _OUTCOMES)
    return round(bucket["failed"] / finished, 4) if finished else None


async def job_stats(clients: StorageClients, window: StatsWindow, now: datetime | None = None) -> dict[str, Any]:
    """Jobs created in the window, bucketed by creation time: counts by outcome, durations, failure rate."""
    until = now or utc_now()
    width = timedelta(minutes=window.bucket_minutes)
    # Buckets are aligned on whole multiples of their width, so a chart's ticks stay put between refreshes.
    epoch = datetime(1970, 1, 1, tzinfo=until.tzinfo)
    last_start = epoch + width * ((until - epoch) // width)
    count = (window.hours * 60) // window.bucket_minutes
    first_start = last_start - width * (count - 1)
    buckets = [_empty_bucket(first_start + width * i) for i in range(count)]
    all_durations: list[float] = []
    seen = 0
    truncated = False
    async for job in job_store.iter_created_since(clients.jobs, first_start):
        if seen == MAX_JOBS:
            truncated = True
            break
        seen += 1
        created = parse_iso(job["created_at"])
        index = (created - first_start) // width
        if not 0 <= index < count:
            continue  # created after `until` (a clock ahead of ours): the next refresh shows it
        bucket = buckets[index]
        bucket["submitted"] += 1
        if job["status"] in {s.value for s in _OUTCOMES}:
            bucket[job["status"].lower()] += 1
            if job["status"] == JobStatus.COMPLETED.value and job["finished_at"]:
                seconds = (parse_iso(job["finished_at"]) - created).total_seconds()
                bucket["_durations"].append(seconds)
                all_durations.append(seconds)
    totals: dict[str, Any] = {"submitted": sum(b["submitted"] for b in buckets)}
    for status in _OUTCOMES:
        totals[status.value.lower()] = sum(b[status.value.lower()] for b in buckets)
    totals["failure_rate"] = _failure_rate(totals)
    totals["duration_seconds"] = _summary(all_durations)
    for bucket in buckets:
        bucket["failure_rate"] = _failure_rate(bucket)
        bucket["duration_seconds"] = _summary(bucket.pop("_durations"))
    return {
        "since": iso(first_start),
        "until": iso(until),
        "bucket_minutes": window.bucket_minutes,
        "buckets": buckets,
        "totals": totals,
        "jobs_counted_up_to": MAX_JOBS if truncated else None,
    }
