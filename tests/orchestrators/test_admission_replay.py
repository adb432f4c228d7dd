"""The job orchestration's wait for admission, replayed in-process by the Durable SDK (tests/orchestrators/replay.py).

A job admitted at submit goes straight to prepare; a job that must wait claims its place, then waits
for its admitted event, its cancel event or a recheck timer bounded by its deadline. Whatever wins,
nothing is left open (DTFx keeps an instance Running while a task is open:
TaskOrchestrationExecutor.ExecuteCore, `if (!context.HasOpenTasks)`), and every path hands its
admission ticket to finalize, which releases it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrators.job import job_orchestration
from shared.contracts import (
    ADMITTED_EVENT,
    CANCEL_EVENT,
    CLAIM_ADMISSION,
    DEAD_LETTER_JOB,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    PREPARE_OR_RUN_JOB,
    PROCESS_CHUNK,
    REQUEST_STOP,
    AdmissionTicket,
    JobStart,
)
from shared.status import job_state
from tests.orchestrators.replay import START, Replay, Task
from tests.orchestrators.test_job_replay import JOB_ID, worker
from tests.orchestrators.test_job_replay import _start as job_replay_start

RECHECK = 60


def _ticket(admitted: bool) -> AdmissionTicket:
    return {"lane": "low", "client": "c1", "key": f"q_low_0000000000001_{JOB_ID}", "admitted": admitted}


def _start(admitted: bool, deadline: timedelta | None = None) -> JobStart:
    return {**job_replay_start(deadline), "admission": _ticket(admitted)}


def _claims(answers: list[bool]) -> Any:
    remaining = list(answers)

    def claim(task: Task) -> Any:
        assert task.input == {"job_id": JOB_ID, "ticket": _ticket(False)}
        return {"admitted": remaining.pop(0) if remaining else True, "recheck_seconds": RECHECK}

    return claim


def _waiting(run: Replay) -> bool:
    return bool(run.calls(CLAIM_ADMISSION)) and all(t.done for t in run.calls()) and not run.calls(PREPARE_OR_RUN_JOB)


def _ends_clean(run: Replay) -> None:
    assert run.done and run.error is None, run.error
    assert run.open_tasks() == [], "an open task would keep the instance Running in Azure"


def _finalize_input(run: Replay) -> dict[str, Any]:
    (finalize,) = run.calls(FINALIZE_JOB)
    return dict(finalize.input)


def test_a_job_admitted_at_submit_prepares_at_once_and_releases_its_place_at_the_end() -> None:
    run = Replay(job_orchestration, _start(admitted=True), instance_id=JOB_ID).drive(worker(chunks=2))
    _ends_clean(run)
    assert run.activity_names() == [PREPARE_OR_RUN_JOB, PROCESS_CHUNK, PROCESS_CHUNK, MERGE_PARTIALS, FINALIZE_JOB]
    assert _finalize_input(run)["admission"] == _ticket(True)


def test_a_waiting_job_is_pending_until_its_admitted_event_then_runs_and_cancels_its_recheck_timer() -> None:
    run = Replay(job_orchestration, _start(admitted=False), instance_id=JOB_ID)
    respond = worker(chunks=2, steps={CLAIM_ADMISSION: _claims([False])})
    run.drive(respond, until=lambda r: bool(r.timers()))
    assert run.activity_names() == [CLAIM_ADMISSION]
    assert run.custom_status["phase"] == "queued"
    assert job_state("Running", None, run.custom_status).status.value == "PENDING"
    (timer,) = run.timers()
    assert timer.fire_at is not None and timer.created_at is not None
    assert (timer.fire_at - timer.created_at).total_seconds() == RECHECK
    run.episode(run.raise_event(ADMITTED_EVENT, {}))
    run.drive(respond)
    _ends_clean(run)
    assert timer.cancelled
    assert run.activity_names() == [
        CLAIM_ADMISSION,
        PREPARE_OR_RUN_JOB,
        PROCESS_CHUNK,
        PROCESS_CHUNK,
        MERGE_PARTIALS,
        FINALIZE_JOB,
    ]
    assert _finalize_input(run)["outcome"]["status"] == "COMPLETED"
    assert _finalize_input(run)["admission"] == _ticket(False)


def test_a_lost_notice_costs_one_recheck_interval_the_job_claims_again() -> None:
    run = Replay(job_orchestration, _start(admitted=False), instance_id=JOB_ID)
    run.drive(worker(chunks=1, steps={CLAIM_ADMISSION: _claims([False, False, True])}))
    _ends_clean(run)
    assert run.activity_names()[:4] == [CLAIM_ADMISSION, CLAIM_ADMISSION, CLAIM_ADMISSION, PREPARE_OR_RUN_JOB]
    assert len(run.timers()) == 2 and run.now - START >= timedelta(seconds=2 * RECHECK)


def test_an_event_raised_before_the_claim_answers_is_not_lost() -> None:
    """The admitted event may arrive while the claim runs (another instance admitted the job): one waiter
    for the whole wait receives it (a recheck timer, if created, loses the race and is cancelled)."""
    run = Replay(job_orchestration, _start(admitted=False), instance_id=JOB_ID)
    run.episode()
    (claim,) = run.calls(CLAIM_ADMISSION)
    run.episode(run.raise_event(ADMITTED_EVENT, {}), run.answer(claim, {"admitted": False, "recheck_seconds": RECHECK}))
    run.drive(worker(chunks=1))
    _ends_clean(run)
    assert all(timer.cancelled for timer in run.timers()) and run.calls(PREPARE_OR_RUN_JOB)
    assert run.activity_names().count(CLAIM_ADMISSION) == 1


def test_cancel_while_waiting_ends_cancelled_without_preparing_and_releases_the_place() -> None:
    run = Replay(job_orchestration, _start(admitted=False), instance_id=JOB_ID)
    respond = worker(chunks=2, steps={CLAIM_ADMISSION: _claims([False])})
    run.drive(respond, until=lambda r: bool(r.timers()))
    run.episode(run.raise_event(CANCEL_EVENT, {"reason": "client"}))
    run.drive(respond)
    _ends_clean(run)
    assert PREPARE_OR_RUN_JOB not in run.activity_names() and REQUEST_STOP in run.activity_names()
    assert run.timers()[0].cancelled
    finalize = _finalize_input(run)
    assert finalize["outcome"] == {"status": "CANCELLED", "error": None}
    assert finalize["admission"] == _ticket(False)


def test_the_deadline_counts_from_submit_and_ends_the_wait_on_time() -> None:
    """The recheck timer never runs past the deadline: a 90 s deadline with a 60 s recheck waits 60 s, claims
    again, then waits the remaining 30 s and fails the job deadline_exceeded (and dead-letters it)."""
    run = Replay(job_orchestration, _start(admitted=False, deadline=timedelta(seconds=90)), instance_id=JOB_ID)
    run.drive(worker(chunks=2, steps={CLAIM_ADMISSION: _claims([False, False, False])}))
    _ends_clean(run)
    fires = [t.fire_at for t in run.timers()]
    assert fires[-1] == START + timedelta(seconds=90)
    assert PREPARE_OR_RUN_JOB not in run.activity_names()
    outcome = _finalize_input(run)["outcome"]
    assert outcome["status"] == "FAILED" and outcome["error"]["type"] == "deadline_exceeded"
    assert run.calls(DEAD_LETTER_JOB)
