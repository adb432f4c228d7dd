"""The job state clients see for each Durable runtime status and JobOutcome the orchestrator returns."""

from __future__ import annotations

import pytest

from shared.contracts import JobStatus
from shared.status import job_state

PROGRESS = {"phase": "processing", "completed": 3, "total": 8}


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [(None, JobStatus.PENDING), ("Pending", JobStatus.PENDING), ("Running", JobStatus.RUNNING),
     ("ContinuedAsNew", JobStatus.RUNNING), ("Suspended", JobStatus.RUNNING), ("Terminated", JobStatus.CANCELLED)],
)  # fmt: skip
def test_runtime_statuses_map_onto_job_states(runtime: str | None, expected: JobStatus) -> None:
    state = job_state(runtime, None, PROGRESS)
    assert state.status is expected
    if expected is JobStatus.RUNNING:
        assert (state.completed, state.total, state.percent) == (3, 8, 37.5)


def test_a_completed_outcome_carries_result_reference_and_summary() -> None:
    outcome = {"status": "COMPLETED", "result_ref": "jobs/j/result.json", "content_type": "application/json",
               "summary": {"rows": 10}, "error": None}  # fmt: skip
    state = job_state("Completed", outcome, {"phase": "done", "completed": 8, "total": 8})
    assert state.status is JobStatus.COMPLETED and state.percent == 100.0
    assert (state.result_ref, state.summary, state.error) == ("jobs/j/result.json", {"rows": 10}, None)


@pytest.mark.parametrize("error_type", ["retries_exhausted", "unknown_column", "deadline_exceeded"])
def test_a_failed_outcome_carries_the_failing_steps_error(error_type: str) -> None:
    error = {"type": error_type, "message": "chunk 2 failed 5 times: storage hiccup", "attempts": 5}
    state = job_state("Completed", {"status": "FAILED", "error": error}, PROGRESS)
    assert state.status is JobStatus.FAILED and state.error == error
    assert state.completed == 3  # how far it got


def test_a_cancelled_outcome_is_cancelled() -> None:
    assert job_state("Completed", {"status": "CANCELLED", "error": None}, PROGRESS).status is JobStatus.CANCELLED


def test_an_orchestrator_crash_is_a_failure_without_stack_trace() -> None:
    output = "Orchestrator function 'job_orchestrator' failed: boom\n  File \"x.py\", line 1\nTraceback ..."
    state = job_state("Failed", output, PROGRESS)
    assert state.status is JobStatus.FAILED
    assert state.error == {"type": "orchestration_failed", "message": output.splitlines()[0], "attempts": 1}
