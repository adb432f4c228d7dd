"""Every branch of the job and chunk batch orchestrations, replayed in-process by the Durable SDK.

Fast (milliseconds a test) beside the devhost end-to-end tests in test_job_orchestration.py: the
history is scripted (tests/orchestrators/replay.py), the assertions are on the actions the SDK returns
and on what is left open when the orchestration returns. DurableTask ends an instance only when it
has no open tasks (TaskOrchestrationExecutor.ExecuteCore: `if (!context.HasOpenTasks)`), so a timer
still waiting when the job returns would keep it Running in Azure until the timer fires (issue #9).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from orchestrators.chunk_batch import chunk_batch_orchestration
from orchestrators.job import chunk_batch_instance_id, job_orchestration
from orchestrators.retry import backoff_seconds
from orchestrators.steps import WATCH_FROM_SECONDS
from shared.clock import iso
from shared.contracts import (
    CANCEL_EVENT,
    CHUNK_BATCH_ORCHESTRATOR,
    DEAD_LETTER_JOB,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    PREPARE_OR_RUN_JOB,
    PROCESS_CHUNK,
    REQUEST_STOP,
    WATCH_FOR_STOP,
    ChunkBatchInput,
    JobStart,
    PrepareOutput,
    RetryPolicy,
)
from shared.failures import non_retryable_message
from tests.orchestrators.replay import START, Failure, Replay, Respond, Task

JOB_ID = "job-replay"
POLICY: RetryPolicy = {
    "first_interval_seconds": 1.0,
    "backoff_coefficient": 2.0,
    "max_interval_seconds": 60.0,
    "max_attempts": 3,
}
MERGED = {"result_ref": f"jobs/{JOB_ID}/result.json", "content_type": "application/json", "summary": {"rows": 5}}


def _start(deadline: timedelta | None = None) -> JobStart:
    return {
        "job_id": JOB_ID,
        "kind": "simulate",
        "input_ref": None,
        "input_content_type": None,
        "options": {},
        "deadline_at": iso(START + deadline) if deadline is not None else None,
        "submitted_at": iso(START),
    }


def _prepared(chunks: int, parallel: int = 2, per_batch: int = 50, policy: RetryPolicy = POLICY) -> PrepareOutput:
    return {
        "retry": policy,
        "max_parallel_chunks": parallel,
        "chunks_per_sub_orchestration": per_batch,
        "chunk_count": chunks,
    }


def worker(
    chunks: int = 5, prepared: PrepareOutput | None = None, steps: dict[str, Callable[[Task], Any]] | None = None
) -> Respond:
    """Answers every step as a healthy worker would; `steps` replace the answer of a named step."""
    plan = prepared or _prepared(chunks)
    steps = steps or {}

    def respond(task: Task) -> Any:
        if task.name in steps:
            return steps[task.name](task)
        if task.name == PREPARE_OR_RUN_JOB:
            return plan
        if task.name == PROCESS_CHUNK:
            return {"index": task.input["index"], "partial_ref": f"p{task.input['index']}"}
        if task.name == MERGE_PARTIALS:
            return MERGED
        if task.name == WATCH_FOR_STOP:
            return {"stopped": False}
        if task.name == CHUNK_BATCH_ORCHESTRATOR:
            return {"completed": task.input["count"]}
        return 0 if task.name == FINALIZE_JOB else True

    return respond


def _job(deadline: timedelta | None = None, timer_limits: tuple[str, str] | None = None) -> Replay:
    if timer_limits is None:
        return Replay(job_orchestration, _start(deadline), instance_id=JOB_ID)
    short, interval = timer_limits
    return Replay(
        job_orchestration,
        _start(deadline),
        instance_id=JOB_ID,
        maximum_short_timer=short,
        long_timer_interval=interval,
    )


def _finalized(run: Replay) -> dict[str, Any]:
    (finalize,) = run.calls(FINALIZE_JOB)
    assert finalize.input["job_id"] == JOB_ID
    outcome: dict[str, Any] = finalize.input["outcome"]
    assert run.output == outcome  # what is recorded is what Durable reports
    return outcome


def _chunk_attempts(run: Replay, index: int) -> list[int]:
    return [task.input["attempt"] for task in run.calls(PROCESS_CHUNK) if task.input["index"] == index]


def _ends_clean(run: Replay) -> None:
    assert run.done and run.error is None, run.error
    assert run.open_tasks() == [], "an open task would keep the instance Running in Azure"


# --- the happy path -----------------------------------------------------------------------------------


def test_a_job_prepares_processes_in_waves_merges_and_finalizes() -> None:
    run = _job()
    in_flight: list[int] = []

    def chunk(task: Task) -> Any:
        in_flight.append(len([t for t in run.open_tasks() if t.name == PROCESS_CHUNK]))
        return {"index": task.input["index"], "partial_ref": "p"}

    run.drive(worker(chunks=5, steps={PROCESS_CHUNK: chunk}))
    _ends_clean(run)
    assert run.activity_names() == [PREPARE_OR_RUN_JOB, *[PROCESS_CHUNK] * 5, MERGE_PARTIALS, FINALIZE_JOB]
    assert run.calls(PREPARE_OR_RUN_JOB)[0].input == _start()
    assert [(t.input["index"], t.input["attempt"]) for t in run.calls(PROCESS_CHUNK)] == [(n, 1) for n in range(5)]
    assert max(in_flight) == 2  # waves of max_parallel_chunks
    assert run.calls(MERGE_PARTIALS)[0].input == {"job_id": JOB_ID, "chunk_count": 5}
    assert _finalized(run) == {"status": "COMPLETED", **MERGED, "error": None}
    assert run.custom_status == {"phase": "done", "completed": 5, "total": 5, "seq": 8}
    assert run.timers() == []


def test_a_chunk_that_finds_the_job_merged_counts_as_done_not_as_a_cancel() -> None:
    """A chunk re-run after the job's last step merged it (devhost re-runs an activity whose completion a
    crashed episode never recorded) answers `merged`: the job goes on to its last step, which finds the
    result and records the same outcome, instead of winding down as if it had been cancelled."""
    run = _job()

    def chunk(task: Task) -> Any:
        index = task.input["index"]
        return {"index": index, "merged": True} if index == 2 else {"index": index, "partial_ref": "p"}

    run.drive(worker(chunks=3, steps={PROCESS_CHUNK: chunk}))
    _ends_clean(run)
    assert REQUEST_STOP not in run.activity_names()
    assert _finalized(run) == {"status": "COMPLETED", **MERGED, "error": None}


@pytest.mark.parametrize("limits", [None, ("0.00:00:02", "0.00:00:01")])
def test_a_thirty_day_deadline_leaves_nothing_open_when_the_job_is_done(limits: tuple[str, str] | None) -> None:
    """Issue #9: a job that finishes in a second is Completed in a second, whatever its deadline.

    With the SDK's long-timer limits shrunk (second case) a deadline timer would be a chain of
    1 s legs that every later action waits behind and that cannot be cancelled; there is none.
    """
    run = _job(deadline=timedelta(days=30), timer_limits=limits).drive(worker(chunks=3))
    _ends_clean(run)
    assert run.timers() == []
    assert _finalized(run)["status"] == "COMPLETED"
    assert run.now - START < timedelta(seconds=1)


# --- retries --------------------------------------------------------------------------------------------


def test_transient_failures_back_off_on_deterministic_timers() -> None:
    failures = {"prepare": 1, "chunk": 2}

    def prepare(task: Task) -> Any:
        if failures["prepare"]:
            failures["prepare"] -= 1
            return Failure("storage hiccup", "ConnectionError")
        return _prepared(3)

    def chunk(task: Task) -> Any:
        if task.input["index"] == 1 and failures["chunk"]:
            failures["chunk"] -= 1
            return Failure("flaky", "TimeoutError")
        return {"index": task.input["index"], "partial_ref": "p"}

    run = _job().drive(worker(steps={PREPARE_OR_RUN_JOB: prepare, PROCESS_CHUNK: chunk}))
    _ends_clean(run)
    assert _finalized(run)["status"] == "COMPLETED"
    assert _chunk_attempts(run, 1) == [1, 2, 3] and _chunk_attempts(run, 0) == [1]
    # The default policy backs prepare off (settings arrive with its output); then the configured one.
    expected = [
        backoff_seconds({**POLICY, "max_attempts": 5}, JOB_ID, "prepare", 1),
        backoff_seconds(POLICY, JOB_ID, "chunk-1", 1),
        backoff_seconds(POLICY, JOB_ID, "chunk-1", 2),
    ]
    delays = [(t.fire_at - t.created_at).total_seconds() for t in run.timers() if t.fire_at and t.created_at]
    assert delays == pytest.approx(expected, abs=1e-3)
    assert all(delay < WATCH_FROM_SECONDS for delay in delays) and run.calls(WATCH_FOR_STOP) == []


def test_a_transient_failure_of_a_cleanup_step_is_retried_too() -> None:
    """Steps not raced against the cancel event (finalize) are retried as well, not thrown into the job."""
    failed_once: list[bool] = []

    def finalize(task: Task) -> Any:
        if not failed_once:
            failed_once.append(True)
            return Failure("table busy", "HttpResponseError")
        return 1

    run = _job().drive(worker(chunks=1, steps={FINALIZE_JOB: finalize}))
    _ends_clean(run)
    assert run.activity_names()[-2:] == [FINALIZE_JOB, FINALIZE_JOB]
    assert run.output["status"] == "COMPLETED" and len(run.timers()) == 1


def test_retries_exhausted_fail_the_job_and_dead_letter_it() -> None:
    run = _job().drive(worker(chunks=2, steps={PROCESS_CHUNK: lambda task: Failure("boom")}))
    _ends_clean(run)
    error = {"type": "retries_exhausted", "message": "chunk 0 failed 3 times: boom", "attempts": 3}
    assert _finalized(run) == {"status": "FAILED", "error": error}
    assert _chunk_attempts(run, 0) == [1, 2, 3]
    assert run.calls(REQUEST_STOP)[0].input == {"job_id": JOB_ID, "reason": "failed"}
    assert run.calls(DEAD_LETTER_JOB)[0].input == {"start": _start(), "error": error}
    assert run.activity_names()[-3:] == [REQUEST_STOP, FINALIZE_JOB, DEAD_LETTER_JOB]


def test_a_non_retryable_failure_fails_at_once() -> None:
    marked = non_retryable_message("invalid_input", "row 7 is not valid UTF-8")

    def chunk(task: Task) -> Any:
        return Failure(marked, "NonRetryableError") if task.input["index"] == 1 else {"index": 0, "partial_ref": "p"}

    run = _job().drive(worker(chunks=4, steps={PROCESS_CHUNK: chunk}))
    _ends_clean(run)
    error = {"type": "invalid_input", "message": "row 7 is not valid UTF-8", "attempts": 1}
    assert _finalized(run) == {"status": "FAILED", "error": error}
    assert run.timers() == [] and _chunk_attempts(run, 1) == [1]
    assert [t.input["index"] for t in run.calls(PROCESS_CHUNK)] == [0, 1]  # no wave after the failure
    assert run.calls(DEAD_LETTER_JOB)[0].input["error"] == error


def test_a_non_retryable_prepare_failure_names_the_step() -> None:
    marked = non_retryable_message("unknown_column", "unknown column(s) 'price'")
    run = _job().drive(worker(steps={PREPARE_OR_RUN_JOB: lambda task: Failure(marked, "NonRetryableError")}))
    _ends_clean(run)
    error = {"type": "unknown_column", "message": "prepare: unknown column(s) 'price'", "attempts": 1}
    assert _finalized(run) == {"status": "FAILED", "error": error}
    assert run.calls(PROCESS_CHUNK) == [] and run.timers() == []


# --- cancel -----------------------------------------------------------------------------------------------


def test_a_cancel_during_a_wave_waits_for_the_running_chunks_then_cleans_up() -> None:
    """The host awaits the wave before the next action, as the extension's shim awaits each action in order.

    So the stop marker the API writes before raising the event is what ends the chunks early; the
    orchestration's stop request follows once they returned.
    """
    run = _job()
    run.drive(worker(chunks=4), until=lambda r: bool(r.calls(PROCESS_CHUNK)))
    assert [t.name for t in run.open_tasks()] == [PROCESS_CHUNK, PROCESS_CHUNK]
    run.episode(run.raise_event(CANCEL_EVENT, {"reason": "client"}))
    assert run.custom_status["phase"] == "cleaning_up"
    assert run.calls(REQUEST_STOP) == []  # not scheduled while the wave runs: nothing can overtake it
    run.drive(worker(chunks=4, steps={PROCESS_CHUNK: lambda task: {"index": task.input["index"], "stopped": True}}))
    _ends_clean(run)
    assert run.activity_names() == [PREPARE_OR_RUN_JOB, PROCESS_CHUNK, PROCESS_CHUNK, REQUEST_STOP, FINALIZE_JOB]
    assert run.calls(REQUEST_STOP)[0].input == {"job_id": JOB_ID, "reason": "cancelled"}
    assert _finalized(run) == {"status": "CANCELLED", "error": None}


def test_a_cancel_during_a_short_backoff_cancels_the_timer() -> None:
    run = _job()
    run.drive(worker(chunks=1, steps={PROCESS_CHUNK: lambda task: Failure("flaky")}), until=lambda r: bool(r.timers()))
    (backoff,) = run.timers()
    run.episode(run.raise_event(CANCEL_EVENT))
    assert backoff.cancelled, "a timer that lost the race must be cancelled, or it holds the instance open"
    run.drive(worker(chunks=1))
    _ends_clean(run)
    assert _finalized(run)["status"] == "CANCELLED"
    assert run.now - START < timedelta(seconds=backoff_seconds(POLICY, JOB_ID, "chunk-0", 1))


def test_a_cancel_during_a_long_backoff_ends_the_job_without_waiting_for_the_timer() -> None:
    """What Azure does: the watcher sees the stop marker, the timer is cancelled, nothing waits 20 s+.

    Replaces a devhost test that passed only because devhost ended instances with timers still open.
    """
    slow: RetryPolicy = {**POLICY, "first_interval_seconds": 40.0}
    plan = _prepared(2, policy=slow)
    respond = worker(prepared=plan, steps={PROCESS_CHUNK: lambda task: Failure("flaky")})
    run = _job().drive(respond, until=lambda r: bool(r.calls(WATCH_FOR_STOP)))
    backoffs = run.timers()
    (watch,) = run.calls(WATCH_FOR_STOP)
    delays = [(t.fire_at - t.created_at).total_seconds() for t in backoffs if t.fire_at and t.created_at]
    assert len(delays) == 2 and min(delays) >= 20  # one per failed chunk, each with its own jitter
    assert watch.input == {"job_id": JOB_ID, "seconds": pytest.approx(max(delays), abs=1e-3)}
    run.episode(run.answer(watch, {"stopped": True}))  # the API wrote the stop marker
    assert all(t.cancelled for t in backoffs)
    run.drive(respond)
    _ends_clean(run)
    assert _finalized(run) == {"status": "CANCELLED", "error": None}
    assert run.now - START < timedelta(seconds=min(delays))


def test_a_cancel_event_winning_over_a_watched_backoff_cancels_the_timer_and_waits_for_the_watcher() -> None:
    slow: RetryPolicy = {**POLICY, "first_interval_seconds": 40.0}
    respond = worker(prepared=_prepared(1, policy=slow), steps={PROCESS_CHUNK: lambda task: Failure("flaky")})
    run = _job().drive(respond, until=lambda r: bool(r.calls(WATCH_FOR_STOP)))
    (backoff,) = run.timers()
    run.episode(run.raise_event(CANCEL_EVENT))
    assert backoff.cancelled
    assert [t.name for t in run.open_tasks()] == [WATCH_FOR_STOP, REQUEST_STOP]
    run.drive(worker(steps={WATCH_FOR_STOP: lambda task: {"stopped": True}}))
    _ends_clean(run)
    assert _finalized(run)["status"] == "CANCELLED"


def test_a_job_cancelled_before_it_was_planned_runs_no_chunk() -> None:
    stopped = {**_prepared(0), "stopped": True}
    run = _job().drive(worker(steps={PREPARE_OR_RUN_JOB: lambda task: stopped}))
    _ends_clean(run)
    assert _finalized(run) == {"status": "CANCELLED", "error": None}
    assert run.calls(PROCESS_CHUNK) == [] and run.calls(MERGE_PARTIALS) == []


# --- deadline ---------------------------------------------------------------------------------------------


def test_chunks_stopped_by_the_deadline_fail_the_job_as_deadline_exceeded() -> None:
    run = _job(deadline=timedelta(seconds=10))

    def chunk(task: Task) -> Any:
        run.now = max(run.now, START + timedelta(seconds=10))  # the chunk ran into the deadline
        return {"index": task.input["index"], "stopped": True}

    run.drive(worker(chunks=4, steps={PROCESS_CHUNK: chunk}))
    _ends_clean(run)
    error = {"type": "deadline_exceeded", "message": "the job did not finish before its deadline", "attempts": 1}
    assert _finalized(run) == {"status": "FAILED", "error": error}
    assert run.calls(REQUEST_STOP)[0].input["reason"] == "deadline"
    assert run.calls(DEAD_LETTER_JOB)[0].input["error"] == error
    assert run.timers() == []


def test_no_wave_starts_once_the_deadline_has_passed() -> None:
    run = _job(deadline=timedelta(milliseconds=300))
    respond = worker(chunks=4, steps={PROCESS_CHUNK: lambda task: Failure("flaky")})
    run.drive(respond)  # the first wave fails; its backoff ends after the deadline
    _ends_clean(run)
    assert len(run.calls(PROCESS_CHUNK)) == 2
    assert _finalized(run)["error"]["type"] == "deadline_exceeded"


def test_a_step_that_ends_after_the_deadline_fails_the_job() -> None:
    run = _job(deadline=timedelta(seconds=5))

    def merge(task: Task) -> Any:
        run.now = START + timedelta(seconds=6)
        return MERGED

    run.drive(worker(chunks=1, steps={MERGE_PARTIALS: merge}))
    _ends_clean(run)
    assert _finalized(run)["error"]["type"] == "deadline_exceeded"


# --- batches as sub-orchestrations ----------------------------------------------------------------------


def test_large_plans_run_in_chunk_batch_sub_orchestrations_one_after_another() -> None:
    run = _job()
    in_flight: list[int] = []

    def batch(task: Task) -> Any:
        in_flight.append(len([t for t in run.open_tasks() if t.kind == "sub"]))
        return {"completed": task.input["count"]}

    run.drive(worker(prepared=_prepared(5, per_batch=2), steps={CHUNK_BATCH_ORCHESTRATOR: batch}))
    _ends_clean(run)
    subs = run.sub_orchestrations()
    assert [t.instance_id for t in subs] == [chunk_batch_instance_id(JOB_ID, n) for n in range(3)]
    expected: list[ChunkBatchInput] = [
        {"job_id": JOB_ID, "first": first, "count": count, "retry": POLICY, "max_parallel_chunks": 2}
        for first, count in ((0, 2), (2, 2), (4, 1))
    ]
    assert [t.input for t in subs] == expected
    assert in_flight == [1, 1, 1] and run.calls(PROCESS_CHUNK) == []
    assert _finalized(run)["status"] == "COMPLETED"
    assert run.custom_status == {"phase": "done", "completed": 5, "total": 5, "seq": 8}


@pytest.mark.parametrize(
    ("answer", "status", "error_type"),
    [
        ({"failure": {"type": "invalid_input", "message": "bad", "attempts": 1}}, "FAILED", "invalid_input"),
        (Failure("the batch crashed"), "FAILED", "orchestration_failed"),
        ({"stopped": True}, "CANCELLED", None),
    ],
)
def test_a_batch_that_failed_or_stopped_ends_the_job(answer: Any, status: str, error_type: str | None) -> None:
    run = _job().drive(worker(prepared=_prepared(5, per_batch=2), steps={CHUNK_BATCH_ORCHESTRATOR: lambda t: answer}))
    _ends_clean(run)
    outcome = _finalized(run)
    assert outcome["status"] == status
    assert (outcome["error"] or {}).get("type") == error_type
    assert len(run.sub_orchestrations()) == 1
    assert bool(run.calls(DEAD_LETTER_JOB)) is (status == "FAILED")


def _batch(first: int = 0, count: int = 3, policy: RetryPolicy = POLICY) -> Replay:
    batch: ChunkBatchInput = {
        "job_id": JOB_ID,
        "first": first,
        "count": count,
        "retry": policy,
        "max_parallel_chunks": 2,
    }
    return Replay(chunk_batch_orchestration, batch, instance_id=chunk_batch_instance_id(JOB_ID, 1))


def test_a_chunk_batch_processes_its_slice_and_reports_the_count() -> None:
    run = _batch(first=4, count=3).drive(worker())
    _ends_clean(run)
    assert run.output == {"completed": 3}
    assert [t.input for t in run.calls(PROCESS_CHUNK)] == [
        {"job_id": JOB_ID, "index": n, "attempt": 1} for n in (4, 5, 6)
    ]


def test_a_chunk_batch_that_fails_stops_the_job_and_reports_the_failure() -> None:
    marked = non_retryable_message("invalid_input", "bad row")
    run = _batch().drive(worker(steps={PROCESS_CHUNK: lambda task: Failure(marked)}))
    _ends_clean(run)
    assert run.output == {"failure": {"type": "invalid_input", "message": "bad row", "attempts": 1}}
    assert run.calls(REQUEST_STOP)[0].input == {"job_id": JOB_ID, "reason": "failed"}


def test_a_chunk_batch_whose_watcher_sees_the_stop_marker_cancels_its_backoff() -> None:
    slow: RetryPolicy = {**POLICY, "first_interval_seconds": 40.0}
    respond = worker(
        steps={PROCESS_CHUNK: lambda task: Failure("flaky"), WATCH_FOR_STOP: lambda task: {"stopped": True}}
    )
    run = _batch(policy=slow).drive(respond)
    _ends_clean(run)
    assert run.output == {"stopped": True}
    assert [t.cancelled for t in run.timers()] == [True, True]


# --- a one-chunk job run whole in its first step (issue #15) ---------------------------------------------

WHOLE_OUTCOME = {"status": "COMPLETED", **MERGED, "error": None}


def _whole() -> dict[str, Any]:
    return {**_prepared(1), "outcome": WHOLE_OUTCOME}


def test_a_job_run_whole_in_its_first_step_ends_with_that_outcome_and_no_other_step() -> None:
    """One activity and two episodes instead of four and five: the step recorded the outcome itself."""
    run = _job().drive(worker(steps={PREPARE_OR_RUN_JOB: lambda task: _whole()}))
    _ends_clean(run)
    assert run.activity_names() == [PREPARE_OR_RUN_JOB]
    assert run.output == WHOLE_OUTCOME
    assert run.custom_status == {"phase": "done", "completed": 1, "total": 1, "seq": 2}  # preparing, done


def test_a_cancel_that_wins_over_a_whole_run_which_completed_keeps_the_completed_outcome() -> None:
    """The step recorded COMPLETED before the cancel was heard: the job must not turn CANCELLED afterwards."""
    run = _job()
    run.drive(worker(), until=lambda r: bool(r.calls(PREPARE_OR_RUN_JOB)))
    run.episode(run.raise_event(CANCEL_EVENT))
    assert run.custom_status["phase"] == "cleaning_up"
    run.drive(worker(steps={PREPARE_OR_RUN_JOB: lambda task: _whole()}))
    _ends_clean(run)
    assert run.output == WHOLE_OUTCOME
    assert run.custom_status == {"phase": "done", "completed": 1, "total": 1, "seq": 3}  # preparing, cleaning_up, done
    assert run.calls(FINALIZE_JOB) == [] and run.calls(DEAD_LETTER_JOB) == []


def test_a_cancel_that_wins_over_a_whole_run_which_stopped_cancels_the_job() -> None:
    run = _job()
    run.drive(worker(), until=lambda r: bool(r.calls(PREPARE_OR_RUN_JOB)))
    run.episode(run.raise_event(CANCEL_EVENT))
    run.drive(worker(steps={PREPARE_OR_RUN_JOB: lambda task: {**_prepared(0), "stopped": True}}))
    _ends_clean(run)
    assert _finalized(run) == {"status": "CANCELLED", "error": None}


def test_a_whole_run_completed_as_the_deadline_passed_stays_completed() -> None:
    """The activity checked the deadline before writing; its completion arriving later must not fail the job."""
    run = _job(deadline=timedelta(seconds=10))

    def whole(task: Task) -> Any:
        run.now = max(run.now, START + timedelta(seconds=11))
        return _whole()

    run.drive(worker(steps={PREPARE_OR_RUN_JOB: whole}))
    _ends_clean(run)
    assert run.output == WHOLE_OUTCOME and run.calls(FINALIZE_JOB) == []


def test_a_staged_answer_past_the_deadline_still_fails_the_job_as_deadline_exceeded() -> None:
    run = _job(deadline=timedelta(seconds=10))

    def prepare(task: Task) -> Any:
        run.now = max(run.now, START + timedelta(seconds=11))
        return _prepared(3)

    run.drive(worker(steps={PREPARE_OR_RUN_JOB: prepare}))
    _ends_clean(run)
    assert _finalized(run)["error"]["type"] == "deadline_exceeded"
    assert run.calls(PROCESS_CHUNK) == []
