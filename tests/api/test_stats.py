"""GET /api/stats: the dashboard's charts read jobs per bucket from the Jobs table's index (jobs/stats.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.api.probes import FUNCTION_KEY


def finished(devhost: Any, options: dict[str, Any]) -> Any:
    response = devhost.client.post("/api/jobs", json={"kind": "simulate", "options": options})
    assert response.status_code == 202, response.text
    return devhost.wait_for_job(response.headers["location"]).json()


def stats(devhost: Any, **params: Any) -> Any:
    response = devhost.client.get("/api/stats", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def counts(totals: dict[str, Any]) -> tuple[int, ...]:
    return tuple(totals[name] for name in ("submitted", "completed", "failed", "cancelled"))


def test_stats_count_outcomes_durations_and_failure_rate(devhost):
    # The session's Azurite holds every test module's jobs (one Jobs table): compare before and after.
    before = stats(devhost, hours=1, bucket_minutes=1)["totals"]
    jobs = [
        finished(devhost, {"chunks": 2, "chunk_seconds": 0.3}),
        finished(devhost, {"chunks": 1}),
        finished(devhost, {"chunks": 1, "permanent_failure": True}),
    ]
    assert [job["status"] for job in jobs] == ["COMPLETED", "COMPLETED", "FAILED"]
    body = stats(devhost, hours=1, bucket_minutes=1)
    totals = body["totals"]
    added = tuple(a - b for a, b in zip(counts(totals), counts(before), strict=True))
    assert added == (3, 2, 1, 0)
    finished_jobs = totals["completed"] + totals["failed"] + totals["cancelled"]
    assert totals["failure_rate"] == round(totals["failed"] / finished_jobs, 4)
    assert 0.3 <= totals["duration_seconds"]["max"] < 600
    assert body["bucket_minutes"] == 1 and len(body["buckets"]) == 60
    assert body["jobs_counted_up_to"] is None
    starts = [datetime.fromisoformat(b["start"].replace("Z", "+00:00")) for b in body["buckets"]]
    assert all(start.second == 0 and start.microsecond == 0 for start in starts)  # aligned on whole minutes
    assert all((b - a).total_seconds() == 60 for a, b in zip(starts, starts[1:], strict=False))
    assert sum(b["submitted"] for b in body["buckets"]) == totals["submitted"]
    for bucket in body["buckets"]:
        done = bucket["completed"] + bucket["failed"] + bucket["cancelled"]
        assert bucket["failure_rate"] == (round(bucket["failed"] / done, 4) if done else None)
    # The default window: 3 hours of 5-minute buckets, holding at least the last hour's jobs.
    default = stats(devhost)
    assert default["bucket_minutes"] == 5 and len(default["buckets"]) == 36
    assert default["totals"]["submitted"] >= totals["submitted"]


def test_stats_refuse_a_bad_window_with_a_problem(devhost):
    for params in ({"hours": "0"}, {"hours": "49"}, {"hours": "abc"}, {"bucket_minutes": "61"}, {"hours": "\u00b2"}):
        response = devhost.client.get("/api/stats", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("application/problem+json")
    assert devhost.client.post("/api/stats").status_code == 405


def test_stats_need_a_function_key_and_the_pages_do_not(devhost_factory):
    host = devhost_factory(args=["--enforce-auth"])
    assert host.client.get("/api/stats").status_code == 401
    assert host.client.get("/api/stats", headers={"x-functions-key": FUNCTION_KEY}).status_code == 200
    assert host.client.get("/api/ui").status_code == 200
    assert host.client.get("/api/ui/app.js").status_code == 200
    assert host.client.get("/api/docs").status_code == 200


def test_pages_use_the_public_base_path_behind_a_gateway(devhost_factory):
    host = devhost_factory(env={"PUBLIC_BASE_URL": "https://gateway.example.com/longrun/"})
    assert '<base href="/longrun/api/ui">' in host.client.get("/api/ui").text
    assert '<base href="/longrun/api/docs">' in host.client.get("/api/docs").text
