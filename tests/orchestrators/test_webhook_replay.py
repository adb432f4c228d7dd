"""The webhook delivery orchestration and the job's announcements, replayed in-process by the Durable SDK.

The delivery waits on durable timers only (backoff at least as long as Retry-After, the breaker's open
period without spending an attempt), gives up at once on a 4xx or a refused URL, dead-letters after the
last attempt, and leaves nothing open. The job announces its event after recording its outcome, only
when its callback wants it, throttles progress events, and ends the same whether announcing fails or not.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrators import webhook
from orchestrators.job import job_orchestration
from orchestrators.retry import backoff_seconds
from orchestrators.webhook import webhook_delivery_orchestration
from shared.clock import iso
from shared.contracts import (
    ANNOUNCE_JOB_EVENT,
    DEAD_LETTER_WEBHOOK,
    DELIVER_WEBHOOK,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    PREPARE_OR_RUN_JOB,
    PROCESS_CHUNK,
    DeliverOutput,
    JobStart,
    RetryPolicy,
    WebhookDeliveryInput,
    WebhookEvent,
)
from tests.orchestrators.replay import START, Failure, Replay, Task
from tests.orchestrators.test_job_replay import worker

INSTANCE = "webhook-msg_j_completed"
POLICY: RetryPolicy = {
    "first_interval_seconds": 1.0,
    "backoff_coefficient": 2.0,
    "max_interval_seconds": 60.0,
    "max_attempts": 3,
}
EVENT: WebhookEvent = {
    "webhook_id": "msg_j_completed",
    "job_id": "j",
    "kind": "simulate",
    "type": "job.completed",
    "url": "https://hooks.example.com/x",
    "payload": {"type": "job.completed", "timestamp": "t", "data": {"id": "j"}},
}


def verdict(
    outcome: str, status: int | None = None, retry_after: float | None = None, wait: float | None = None
) -> DeliverOutput:
    return {"outcome": outcome, "status": status, "retry_after": retry_after, "wait_seconds": wait, "reason": outcome}  # type: ignore[typeddict-item]


def delivery(answers: list[Any]) -> Replay:
    """Run a delivery whose attempts are answered in turn by `answers` (a DeliverOutput or a Failure)."""
    start: WebhookDeliveryInput = {"event": EVENT, "retry": POLICY}
    run = Replay(webhook_delivery_orchestration, start, instance_id=INSTANCE)
    queue = list(answers)

    def respond(task: Task) -> Any:
        if task.name == DELIVER_WEBHOOK:
            return queue.pop(0)
        assert task.name == DEAD_LETTER_WEBHOOK
        return task.input["record_id"]

    return run.drive(respond)


def _clean(run: Replay) -> None:
    assert run.done and run.error is None, run.error
    assert run.open_tasks() == []


def test_delivered_at_the_first_attempt() -> None:
    run = delivery([verdict("delivered", 204)])
    _clean(run)
    assert run.output == {"status": "delivered", "attempts": 1}
    assert run.activity_names() == [DELIVER_WEBHOOK] and run.timers() == []


def test_retryable_answers_back_off_with_the_projects_backoff_and_the_same_event() -> None:
    run = delivery([verdict("retry", 503), Failure("storage away"), verdict("delivered", 200)])
    _clean(run)
    assert run.output == {"status": "delivered", "attempts": 3}
    attempts = run.calls(DELIVER_WEBHOOK)
    assert [task.input["attempt"] for task in attempts] == [1, 2, 3]
    assert all(task.input["event"] == EVENT for task in attempts), "every attempt sends the same event"
    waits = [(timer.fire_at - timer.created_at).total_seconds() for timer in run.timers()]  # type: ignore[operator]
    expected = [backoff_seconds(POLICY, INSTANCE, "webhook", attempt) for attempt in (1, 2)]
    assert [round(w, 3) for w in waits] == [round(e, 3) for e in expected]


def test_retry_after_longer_than_the_backoff_wins() -> None:
    run = delivery([verdict("retry", 429, retry_after=120.0), verdict("delivered", 200)])
    _clean(run)
    (timer,) = run.timers()
    assert (timer.fire_at - timer.created_at).total_seconds() == 120.0  # type: ignore[operator]


def test_an_open_breaker_waits_on_a_timer_without_spending_an_attempt() -> None:
    run = delivery([verdict("breaker_open", wait=30.0), verdict("breaker_open", wait=12.5), verdict("delivered", 200)])
    _clean(run)
    assert [(t.fire_at - t.created_at).total_seconds() for t in run.timers()] == [30.0, 12.5]  # type: ignore[operator]
    assert [task.input["attempt"] for task in run.calls(DELIVER_WEBHOOK)] == [1, 1, 1]
    assert run.output == {"status": "delivered", "attempts": 1}


def test_a_4xx_or_a_refused_url_is_dead_lettered_at_once() -> None:
    for outcome, error_type in (("rejected", "webhook_rejected"), ("refused", "webhook_refused")):
        run = delivery([verdict(outcome, 400 if outcome == "rejected" else None)])
        _clean(run)
        assert run.activity_names() == [DELIVER_WEBHOOK, DEAD_LETTER_WEBHOOK] and run.timers() == []
        (dead,) = run.calls(DEAD_LETTER_WEBHOOK)
        assert dead.input["record_id"] == INSTANCE and dead.input["event"] == EVENT
        assert dead.input["error"]["type"] == error_type and dead.input["error"]["attempts"] == 1
        assert run.output == {"status": "dead_lettered", "attempts": 1, "reason": error_type}


def test_the_last_failed_attempt_is_dead_lettered() -> None:
    run = delivery([verdict("retry", 500)] * 3)
    _clean(run)
    assert run.activity_names() == [DELIVER_WEBHOOK] * 3 + [DEAD_LETTER_WEBHOOK]
    (dead,) = run.calls(DEAD_LETTER_WEBHOOK)
    assert dead.input["error"] == {"type": "webhook_retries_exhausted", "message": "retry", "attempts": 3}


def test_a_breaker_that_never_closes_ends_in_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "MAX_BREAKER_WAITS", 4)  # 100 in production: the same path, a shorter history
    run = delivery([verdict("breaker_open", wait=1.0)] * 5)
    _clean(run)
    (dead,) = run.calls(DEAD_LETTER_WEBHOOK)
    assert dead.input["error"]["type"] == "webhook_breaker_open"


# --- the job's side: announcing ---------------------------------------------------------------------


def _job_start(events: list[str] | None) -> JobStart:
    start: JobStart = {
        "job_id": "job-replay",
        "kind": "simulate",
        "input_ref": None,
        "input_content_type": None,
        "options": {},
        "deadline_at": None,
        "submitted_at": iso(START),
    }
    if events is not None:
        start["callback"] = {"url": "https://hooks.example.com/x", "events": events}
    return start


def _prepared(chunks: int, parallel: int, progress_seconds: float) -> Any:
    return {
        "retry": POLICY,
        "max_parallel_chunks": parallel,
        "chunks_per_sub_orchestration": 50,
        "chunk_count": chunks,
        "webhook_progress_seconds": progress_seconds,
    }


def test_the_job_announces_its_end_after_recording_it() -> None:
    run = Replay(job_orchestration, _job_start(["completed"]), instance_id="job-replay")
    run.drive(worker(chunks=2))
    assert run.done and run.error is None and run.open_tasks() == []
    assert run.activity_names()[-2:] == [FINALIZE_JOB, ANNOUNCE_JOB_EVENT]
    (announce,) = run.calls(ANNOUNCE_JOB_EVENT)
    assert announce.input["event"] == "completed" and announce.input["outcome"] == run.output
    assert announce.input["start"]["callback"]["url"] == "https://hooks.example.com/x"


def test_a_job_without_a_matching_subscription_announces_nothing() -> None:
    for events in (None, ["failed", "cancelled"]):
        run = Replay(job_orchestration, _job_start(events), instance_id="job-replay")
        run.drive(worker(chunks=2))
        assert ANNOUNCE_JOB_EVENT not in run.activity_names()
        assert run.output["status"] == "COMPLETED"


def test_a_failing_announcement_never_changes_the_jobs_outcome() -> None:
    run = Replay(job_orchestration, _job_start(["completed"]), instance_id="job-replay")
    run.drive(worker(chunks=2, steps={ANNOUNCE_JOB_EVENT: lambda task: Failure("queue away")}))
    assert run.done and run.error is None and run.open_tasks() == []
    assert run.output["status"] == "COMPLETED"
    assert len(run.calls(ANNOUNCE_JOB_EVENT)) == POLICY["max_attempts"]


def test_progress_events_are_throttled_by_the_orchestration_clock() -> None:
    """Five waves of one chunk: with a 0 s interval each wave announces; with an hour only the first does."""
    for interval, expected in ((0.0, [1, 2, 3, 4, 5]), (3600.0, [1])):
        run = Replay(job_orchestration, _job_start(["progress", "completed"]), instance_id="job-replay")
        run.drive(worker(chunks=5, prepared=_prepared(5, 1, interval)))
        assert run.done and run.error is None and run.open_tasks() == []
        progress = [t.input["completed"] for t in run.calls(ANNOUNCE_JOB_EVENT) if t.input["event"] == "progress"]
        assert progress == expected, interval
        names = run.activity_names()
        assert names[0] == PREPARE_OR_RUN_JOB and names.count(PROCESS_CHUNK) == 5 and MERGE_PARTIALS in names
        assert names[-1] == ANNOUNCE_JOB_EVENT
