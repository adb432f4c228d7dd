"""The client's own rules, without a server: how progress events update a job, how long retries wait,
and how Retry-After is read. The server side of each is exercised in test_client.py and test_cli.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from longrun_client.errors import parse_retry_after
from longrun_client.handle import apply_event, events_url
from longrun_client.models import JobSnapshot, JobStatus
from longrun_client.retry import RetryPolicy
from longrun_client.wire import query_value, raw_params

RUNNING = {
    "id": "a" * 32,
    "kind": "simulate",
    "status": "RUNNING",
    "created_at": "2026-12-01T00:00:00Z",
    "updated_at": "2026-12-01T00:00:01Z",
    "progress": {"completed": 1, "total": 4, "percent": 25.0},
    "links": {"self": "http://h/api/jobs/" + "a" * 32},
}


def test_progress_events_move_the_counts_and_the_phase():
    # The stream as docs/api.md ("Job events") shows it: status and progress events carry
    # {id, status, phase, progress, updated_at}; the terminal event carries the whole job resource.
    snapshot = JobSnapshot.from_json(RUNNING)
    assert snapshot.phase == "processing"  # derived while the server reports no phase
    event = {"id": "a" * 32, "status": "RUNNING", "phase": "merging", "updated_at": "2026-12-01T00:00:09Z",
             "progress": {"completed": 4, "total": 4, "percent": 100.0}}  # fmt: skip
    moved, terminal = apply_event(snapshot, "progress", json.dumps(event))
    assert not terminal
    assert (moved.progress.completed, moved.progress.total, moved.phase) == (4, 4, "merging")
    assert moved.kind == "simulate" and moved.links == snapshot.links  # what the event does not carry stays
    assert moved.updated_at == "2026-12-01T00:00:09Z"
    done = {**RUNNING, "status": "COMPLETED", "progress": {"completed": 4, "total": 4, "percent": 100.0},
            "result": {"chunks": 4}}  # fmt: skip
    finished, terminal = apply_event(moved, "completed", json.dumps(done))
    assert terminal and finished.status is JobStatus.COMPLETED and finished.summary == {"chunks": 4}


def test_a_terminal_event_without_the_resource_still_ends_the_wait():
    snapshot = JobSnapshot.from_json(RUNNING)
    cancelled, terminal = apply_event(snapshot, "cancelled", "")
    assert terminal and cancelled.status is JobStatus.CANCELLED
    unchanged, terminal = apply_event(snapshot, "progress", "not json")
    assert unchanged == snapshot and not terminal
    pending = {"id": "a" * 32, "status": "PENDING", "phase": None, "progress": {"completed": 0, "total": 0}}
    status, terminal = apply_event(snapshot, "status", json.dumps(pending))
    assert status.status is JobStatus.PENDING and status.phase == "pending" and not terminal


def test_the_event_stream_sits_next_to_the_location():
    assert events_url("https://gw/longrun/api/jobs/abc") == "https://gw/longrun/api/jobs/abc/events"
    assert events_url("https://gw/api/jobs/abc?code=k") == "https://gw/api/jobs/abc/events?code=k"


def test_backoff_grows_with_jitter_and_retry_after_wins_up_to_its_cap():
    policy = RetryPolicy(max_attempts=4, backoff_seconds=0.5, max_backoff_seconds=3, max_retry_after_seconds=10)
    for attempt, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (6, 3.0)):
        delays = [policy.delay(attempt, None) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so clients that failed together do not retry together
    assert policy.delay(0, 7.0) == 7.0 and policy.delay(0, 600.0) == 10
    assert [policy.should_retry(a) for a in range(4)] == [True, True, True, False]


def test_retry_after_as_seconds_or_an_http_date():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_raw_submits_carry_options_as_the_query_reads_them():
    assert query_value(["amount", "qty"]) == "amount,qty" and query_value(True) == "true"
    params = raw_params("csv-report", {"group_by": "region", "metrics": ["a", "b"]}, 60)
    assert params == {"kind": "csv-report", "deadline_seconds": "60", "group_by": "region", "metrics": "a,b"}
