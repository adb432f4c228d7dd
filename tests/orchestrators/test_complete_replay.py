"""The staged job's one tail step (complete_job), replayed in-process by the Durable SDK (issue #15).

A prepare that answers `tail: "complete"` (this code's activities/plan.prepared_output) ends a staged
job in one complete_job step instead of merge_partials + finalize_job. A history whose prepare answered
without it (recorded before complete_job existed) must replay the actions it recorded: the Durable rule
is that an orchestrator's sequence of actions may not change under an instance in flight (the SDK's
TaskOrchestrationExecutor replays the recorded TaskScheduled events in order against the new code's
actions; docs.microsoft.com "Orchestrator code constraints", versioning). The other replay tests of
test_job_replay.py answer without `tail` and so keep proving the old tail.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrators.retry import backoff_seconds
from shared.contracts import (
    CANCEL_EVENT,
    COMPLETE_JOB,
    DEAD_LETTER_JOB,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    PREPARE_OR_RUN_JOB,
    PROCESS_CHUNK,
    REQUEST_STOP,
    PrepareOutput,
)
from tests.orchestrators.replay import START, Failure, Replay, Task
from tests.orchestrators.test_job_replay import JOB_ID, MERGED, POLICY, _job, _prepared, worker

OUTCOME = {"status": "COMPLETED", **MERGED, "error": None}


def _tailed(chunks: int, **kwargs: Any) -> PrepareOutput:
    return {**_prepared(chunks, **kwargs), "tail": "complete"}


def _completes(task: Task) -> Any:
    return {"outcome": OUTCOME}


def _respond(chunks: int = 5, steps: dict[str, Any] | None = None) -> Any:
    return worker(prepared=_tailed(chunks), steps={COMPLETE_JOB: _completes, **(steps or {})})


def _ends_clean(run: Replay) -> None:
    assert run.done and run.error is None, run.error
    assert run.open_tasks() == [], "an open task would keep the instance Running in Azure"


def test_a_staged_job_ends_in_one_complete_step() -> None:
    run = _job().drive(_respond(chunks=5))
    _ends_clean(run)
    assert run.activity_names() == [PREPARE_OR_RUN_JOB, *[PROCESS_CHUNK] * 5, COMPLETE_JOB]
    assert run.calls(COMPLETE_JOB)[0].input == {"job_id": JOB_ID, "chunk_count": 5}
    assert run.output == OUTCOME  # what complete_job recorded is what Durable reports
    # preparing, processing 0, 2, 4, 5, merging, done: one state fewer than with finalize ("finalizing").
    assert run.custom_status == {"phase": "done", "completed": 5, "total": 5, "seq": 7}
    assert run.timers() == []


def test_a_history_recorded_before_complete_job_replays_merge_then_finalize() -> None:
    """The same code, replaying a prepare answer without `tail`, schedules what that history scheduled."""
    run = _job().drive(worker(chunks=2))
    _ends_clean(run)
    assert run.activity_names() == [PREPARE_OR_RUN_JOB, PROCESS_CHUNK, PROCESS_CHUNK, MERGE_PARTIALS, FINALIZE_JOB]
    assert "progress" not in run.calls(FINALIZE_JOB)[0].input  # its recorded input, unchanged


def test_the_admission_ticket_travels_to_complete_job() -> None:
    ticket = {"lane": "low", "client": "c1", "key": f"q_low_0000000000001_{JOB_ID}", "admitted": True}
    start = {**_job().input, "admission": ticket}
    run = Replay(_job().orchestrator, start, instance_id=JOB_ID).drive(_respond(chunks=2))
    _ends_clean(run)
    assert run.calls(COMPLETE_JOB)[0].input == {"job_id": JOB_ID, "chunk_count": 2, "admission": ticket}
    assert run.output == OUTCOME and run.calls(FINALIZE_JOB) == []


def test_a_transient_failure_of_complete_backs_off_and_retries() -> None:
    failures = [Failure("table busy", "HttpResponseError")]

    def complete(task: Task) -> Any:
        return failures.pop() if failures else {"outcome": OUTCOME}

    run = _job().drive(_respond(chunks=2, steps={COMPLETE_JOB: complete}))
    _ends_clean(run)
    assert run.activity_names()[-2:] == [COMPLETE_JOB, COMPLETE_JOB]
    delays = [(t.fire_at - t.created_at).total_seconds() for t in run.timers() if t.fire_at and t.created_at]
    assert delays == pytest.approx([backoff_seconds(POLICY, JOB_ID, "complete", 1)], abs=1e-3)
    assert run.output == OUTCOME


def test_complete_exhausting_its_retries_fails_and_dead_letters_the_job() -> None:
    run = _job().drive(_respond(chunks=2, steps={COMPLETE_JOB: lambda task: Failure("boom")}))
    _ends_clean(run)
    assert len(run.calls(COMPLETE_JOB)) == POLICY["max_attempts"]
    assert run.output["status"] == "FAILED" and run.output["error"]["type"] == "retries_exhausted"
    assert run.activity_names()[-3:] == [REQUEST_STOP, FINALIZE_JOB, DEAD_LETTER_JOB]
    # No final progress for a failure: its row must not read as finished before the dead letter exists.
    assert "progress" not in run.calls(FINALIZE_JOB)[0].input


def test_complete_that_saw_the_stop_marker_cancels_the_job_with_its_final_progress() -> None:
    run = _job().drive(_respond(chunks=3, steps={COMPLETE_JOB: lambda task: {"stopped": True}}))
    _ends_clean(run)
    assert run.calls(REQUEST_STOP)[0].input == {"job_id": JOB_ID, "reason": "cancelled"}
    (finalize,) = run.calls(FINALIZE_JOB)
    assert finalize.input["outcome"] == {"status": "CANCELLED", "error": None} == run.output
    assert finalize.input["progress"] == [3, 3]  # recorded with the outcome: reads need not ask Durable
    assert run.calls(DEAD_LETTER_JOB) == []


def test_a_cancel_that_wins_over_complete_which_completed_keeps_the_completed_outcome() -> None:
    """complete_job recorded COMPLETED before the cancel was heard: the job must not turn CANCELLED."""
    run = _job()
    run.drive(_respond(chunks=2), until=lambda r: bool(r.calls(COMPLETE_JOB)))
    run.episode(run.raise_event(CANCEL_EVENT))
    assert run.custom_status["phase"] == "cleaning_up"
    run.drive(_respond(chunks=2))
    _ends_clean(run)
    assert run.output == OUTCOME
    assert run.custom_status["phase"] == "done" and run.custom_status["completed"] == 2
    assert run.calls(FINALIZE_JOB) == [] and run.calls(DEAD_LETTER_JOB) == []


def test_a_cancel_that_wins_over_complete_which_stopped_cancels_the_job() -> None:
    run = _job()
    run.drive(_respond(chunks=2), until=lambda r: bool(r.calls(COMPLETE_JOB)))
    run.episode(run.raise_event(CANCEL_EVENT))
    run.drive(_respond(chunks=2, steps={COMPLETE_JOB: lambda task: {"stopped": True}}))
    _ends_clean(run)
    assert run.output == {"status": "CANCELLED", "error": None}
    assert run.calls(FINALIZE_JOB)[0].input["outcome"] == run.output


def test_complete_answering_after_the_deadline_keeps_its_completed_outcome() -> None:
    """The activity checked the deadline before writing the result; its answer arriving late changes nothing."""
    run = _job(deadline=timedelta(seconds=10))

    def complete(task: Task) -> Any:
        run.now = max(run.now, START + timedelta(seconds=11))
        return {"outcome": OUTCOME}

    run.drive(_respond(chunks=2, steps={COMPLETE_JOB: complete}))
    _ends_clean(run)
    assert run.output == OUTCOME and run.calls(FINALIZE_JOB) == []


def test_complete_stopped_by_the_deadline_fails_the_job_as_deadline_exceeded() -> None:
    run = _job(deadline=timedelta(seconds=10))

    def complete(task: Task) -> Any:
        run.now = max(run.now, START + timedelta(seconds=11))
        return {"stopped": True}

    run.drive(_respond(chunks=2, steps={COMPLETE_JOB: complete}))
    _ends_clean(run)
    assert run.output["status"] == "FAILED" and run.output["error"]["type"] == "deadline_exceeded"
    assert run.calls(DEAD_LETTER_JOB)[0].input["error"]["type"] == "deadline_exceeded"
