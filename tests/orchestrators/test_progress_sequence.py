"""The sequence number in a job's custom status: the source of its event ids (jobs/events.py).

Every app instance that reads the status must compute the same event id for the same state, so the
number is derived from the history alone: one more on every change a client can see (phase, completed,
total), the same on every replay, never more for an episode that changed nothing visible.
"""

from __future__ import annotations

from typing import Any

from shared.contracts import CANCEL_EVENT, PROCESS_CHUNK
from tests.orchestrators.replay import Failure, Replay, Task
from tests.orchestrators.test_job_replay import _job, _prepared, worker


def _watch(run: Replay, seen: list[dict[str, Any]]) -> bool:
    """Record the custom status after each episode (used as drive's `until`, so never stops it)."""
    seen.append(dict(run.custom_status or {}))
    return False


def _visible(status: dict[str, Any]) -> tuple[Any, ...]:
    return status.get("phase"), status.get("completed"), status.get("total")


def test_the_sequence_grows_by_one_per_visible_change_and_only_then() -> None:
    flaky = {"left": 2}

    def chunk(task: Task) -> Any:
        if task.input["index"] == 1 and flaky["left"]:
            flaky["left"] -= 1
            return Failure("flaky", "TimeoutError")  # backoff timers: episodes that change nothing visible
        return {"index": task.input["index"], "partial_ref": "p"}

    run = _job()
    seen: list[dict[str, Any]] = []
    run.drive(worker(chunks=4, steps={PROCESS_CHUNK: chunk}), until=lambda r: _watch(r, seen))
    assert run.done and run.output["status"] == "COMPLETED"
    assert run.timers(), "the script must include episodes without a visible change"
    for before, after in zip(seen, seen[1:], strict=False):
        if _visible(after) == _visible(before):
            assert after["seq"] == before["seq"], (before, after)
        else:
            assert after["seq"] > before["seq"], (before, after)
    assert seen[0]["seq"] >= 1
    final = run.custom_status
    assert _visible(final) == ("done", 4, 4)
    # preparing, processing 0..4 (one chunk at a time or in pairs: at most 5 values), merging, finalizing, done
    assert 5 <= final["seq"] <= 9


def test_two_runs_of_the_same_history_number_the_same_states() -> None:
    """Deterministic: the number is a function of the history, not of the process that replays it."""
    runs: list[list[dict[str, Any]]] = []
    for _ in range(2):
        seen: list[dict[str, Any]] = []
        runs.append(seen)
        _job().drive(worker(chunks=5), until=lambda r: _watch(r, runs[-1]))
    assert runs[0] == runs[1]
    assert [s["seq"] for s in runs[0]] == sorted(s["seq"] for s in runs[0])


def test_a_cancelled_job_numbers_its_clean_up_and_its_end() -> None:
    run = _job()
    run.drive(worker(chunks=4), until=lambda r: bool(r.calls(PROCESS_CHUNK)))
    running = run.custom_status
    run.episode(run.raise_event(CANCEL_EVENT, {"reason": "client"}))
    cleaning = run.custom_status
    assert cleaning["phase"] == "cleaning_up" and cleaning["seq"] == running["seq"] + 1
    run.drive(worker(chunks=4, steps={PROCESS_CHUNK: lambda task: {"index": task.input["index"], "stopped": True}}))
    assert run.output["status"] == "CANCELLED"
    assert run.custom_status["phase"] == "done" and run.custom_status["seq"] == cleaning["seq"] + 1


def test_batched_plans_are_numbered_too() -> None:
    seen: list[dict[str, Any]] = []
    run = _job().drive(worker(prepared=_prepared(5, per_batch=2)), until=lambda r: _watch(r, seen))
    assert run.output["status"] == "COMPLETED"
    processing = [s for s in seen if s["phase"] == "processing"]
    assert [s["completed"] for s in processing] == sorted(s["completed"] for s in processing)
    assert len({s["seq"] for s in seen}) == len({_visible(s) for s in seen})
