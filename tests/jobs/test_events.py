"""The job event feed and the long-poll wait over scripted job states, on a virtual clock.

The feed's reads are injected (jobs.events.Refresh); here they replay a script of states, so every
timing rule (poll interval, heartbeat, max duration) is checked exactly and in milliseconds. The same
feed runs against a real devhost in tests/api/test_job_events.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from jobs.events import (
    FeedTiming,
    Heartbeat,
    JobEvent,
    job_feed,
    next_event,
    nothing_left,
    state_version,
    wait_for_change,
)
from jobs.query import JobView
from shared.clock import utc_now
from shared.contracts import JobStatus
from shared.status import JobState
from storage import jobs as job_store

RECORD = job_store.new_job_record(
    job_id="b" * 32, kind="simulate", created=utc_now(), input_ref=None, input_content_type=None, options={},
    deadline_at=None, idempotency_key_hash=None, fingerprint="f", source="http",
)  # fmt: skip
TIMING = FeedTiming(poll_seconds=1.0, heartbeat_seconds=3.0, max_seconds=20.0)


def view(status: JobStatus, seq: int = 0, completed: int = 0, total: int = 0, phase: str | None = None) -> JobView:
    return JobView(RECORD, JobState(status, completed, total, phase=phase, seq=seq), RECORD["updated_at"])


PENDING = view(JobStatus.PENDING)
RUNNING = [view(JobStatus.RUNNING, seq, completed, 4, phase) for seq, completed, phase in
           [(1, 0, "preparing"), (2, 0, "processing"), (3, 1, "processing"), (4, 2, "processing"),
            (5, 4, "processing"), (6, 4, "merging")]]  # fmt: skip
DONE = view(JobStatus.COMPLETED, 7, 4, 4, "done")


class Script:
    """The job's state as of each poll (the last one repeats), read on a virtual clock."""

    def __init__(self, states: Iterable[JobView]) -> None:
        self.states = list(states)
        self.now = 0.0
        self.reads: list[float] = []
        self.finished = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    async def refresh(self, _: JobView) -> JobView:
        self.reads.append(self.now)
        return self.states[min(len(self.reads), len(self.states) - 1)]

    async def finish(self, current: JobView) -> JobView:
        self.finished += 1
        return current


def run_feed(script: Script, last_seen: int | None, timing: FeedTiming = TIMING) -> list[tuple[float, Any]]:
    async def collect() -> list[tuple[float, Any]]:
        feed = job_feed(
            script.states[0], last_seen, timing, script.refresh, script.finish, clock=script.clock, sleep=script.sleep
        )
        return [(script.now, item) async for item in feed]

    return asyncio.run(collect())


def events_of(items: list[tuple[float, Any]]) -> list[tuple[str, int]]:
    return [(item.name, item.id) for _, item in items if isinstance(item, JobEvent)]


def test_versions_grow_with_every_observable_state() -> None:
    versions = [state_version(v.state) for v in [PENDING, *RUNNING, DONE]]
    assert versions == sorted(set(versions)) and versions[0] == 0
    # A job terminated before its orchestrator ever ran still ends after every state it showed.
    assert state_version(view(JobStatus.CANCELLED).state) > state_version(view(JobStatus.RUNNING).state)


def test_a_fresh_stream_reports_the_state_then_each_change_then_the_end() -> None:
    script = Script([PENDING, PENDING, RUNNING[0], RUNNING[1], RUNNING[3], RUNNING[3], RUNNING[5], DONE])
    items = run_feed(script, None)
    assert events_of(items) == [("status", 0), ("status", 2), ("progress", 3), ("progress", 5), ("progress", 7),
                                ("completed", 9)]  # fmt: skip
    assert script.finished == 1  # the terminal event carries the job as GET reads it
    assert items[-1][1].view is DONE
    # one read per poll interval, and nothing more
    assert script.reads == pytest.approx([1.0 * n for n in range(1, len(script.reads) + 1)])


def test_a_resumed_stream_neither_repeats_nor_skips() -> None:
    states = [PENDING, RUNNING[0], RUNNING[2], RUNNING[4], DONE]
    full = events_of(run_feed(Script(states), None))
    for cut in range(1, len(full)):
        seen_id = full[cut - 1][1]
        # the reconnect reads the job afresh: its first state is wherever the job is now
        resumed = events_of(run_feed(Script(states[cut:]), seen_id))
        assert full[:cut] + resumed == full, (cut, resumed)


def test_a_resumed_stream_that_missed_states_reports_the_latest_one_as_progress() -> None:
    resumed = events_of(run_feed(Script([RUNNING[4], DONE]), state_version(RUNNING[0].state)))
    assert resumed == [("progress", 6), ("completed", 9)]
    # A client that saw only PENDING learns of the status change first.
    assert events_of(run_feed(Script([RUNNING[4], DONE]), 0))[0] == ("status", 6)


def test_a_quiet_stream_sends_heartbeats_and_ends_at_its_maximum_duration() -> None:
    script = Script([RUNNING[1]])
    items = run_feed(script, None)
    assert events_of(items) == [("status", 3)]
    beats = [at for at, item in items if isinstance(item, Heartbeat)]
    assert beats == pytest.approx([3.0, 6.0, 9.0, 12.0, 15.0, 18.0])
    assert script.now == pytest.approx(20.0)  # ended on its own at max_seconds
    assert len(script.reads) == 20  # one status read a second, no more


def test_an_event_resets_the_heartbeat() -> None:
    script = Script([RUNNING[0], RUNNING[0], RUNNING[0], RUNNING[1], RUNNING[1], RUNNING[1], RUNNING[1], RUNNING[1]])
    items = run_feed(script, None, FeedTiming(1.0, 3.0, 8.0))
    assert [(at, getattr(item, "name", "ping")) for at, item in items] == [
        (0.0, "status"), (3.0, "progress"), (6.0, "ping")]  # fmt: skip


def test_a_client_that_saw_the_end_gets_nothing_more() -> None:
    done_id = state_version(DONE.state)
    assert nothing_left(DONE, done_id)
    assert not nothing_left(DONE, done_id - 1) and not nothing_left(RUNNING[0], 10**6)
    assert next_event(DONE, done_id) is None
    finished = next_event(DONE, done_id - 1)
    assert finished is not None and finished.name == "completed"


@pytest.mark.parametrize(("status", "name"), [(JobStatus.FAILED, "failed"), (JobStatus.CANCELLED, "cancelled")])
def test_failed_and_cancelled_jobs_end_with_their_own_event(status: JobStatus, name: str) -> None:
    assert events_of(run_feed(Script([RUNNING[2], view(status, 5)]), 4)) == [(name, 7)]


def run_wait(script: Script, seen: set[int], wait: float) -> JobView:
    return asyncio.run(
        wait_for_change(script.states[0], seen, wait, 1.0, script.refresh, script.finish, script.clock, script.sleep)
    )


def test_long_poll_answers_on_the_first_change() -> None:
    script = Script([RUNNING[1], RUNNING[1], RUNNING[1], RUNNING[2]])
    assert run_wait(script, {state_version(RUNNING[1].state)}, 30) is RUNNING[2]
    assert script.now == pytest.approx(3.0) and script.finished == 1


def test_long_poll_answers_after_the_wait_without_a_change() -> None:
    script = Script([RUNNING[1]])
    assert run_wait(script, {state_version(RUNNING[1].state)}, 5) is RUNNING[1]
    assert script.now == pytest.approx(5.0) and len(script.reads) == 5


def test_long_poll_does_not_wait_for_a_state_the_client_has_not_seen_or_a_finished_job() -> None:
    for states, seen in (([RUNNING[2], RUNNING[3]], {2}), ([DONE], {state_version(DONE.state)})):
        script = Script(states)
        assert run_wait(script, seen, 30) is states[0]
        assert script.now == 0 and script.reads == []
