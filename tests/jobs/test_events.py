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
    FINISHED_VERSION,
    FeedTiming,
    Heartbeat,
    JobEvent,
    SharedReads,
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
    # A job terminated before its orchestrator ever ran still ends after every state it showed, and a
    # finished job read from its row alone (no sequence there) has the version it had from Durable.
    assert state_version(view(JobStatus.CANCELLED).state) > state_version(view(JobStatus.RUNNING).state)
    assert state_version(view(JobStatus.COMPLETED, 0).state) == state_version(DONE.state) == FINISHED_VERSION


def test_a_fresh_stream_reports_the_state_then_each_change_then_the_end() -> None:
    script = Script([PENDING, PENDING, RUNNING[0], RUNNING[1], RUNNING[3], RUNNING[3], RUNNING[5], DONE])
    items = run_feed(script, None)
    assert events_of(items) == [("status", 0), ("status", 2), ("progress", 3), ("progress", 5), ("progress", 7),
                                ("completed", FINISHED_VERSION)]  # fmt: skip
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
    assert resumed == [("progress", 6), ("completed", FINISHED_VERSION)]
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


def test_a_stream_resumed_with_the_end_while_running_ends_when_the_job_does() -> None:
    # A Last-Event-ID no running job has given yet: nothing to send, and no stream left once the job ends.
    script = Script([RUNNING[1], RUNNING[2], DONE])
    items = run_feed(script, FINISHED_VERSION)
    assert events_of(items) == [] and script.now == pytest.approx(2.0)  # not held open until max_seconds


@pytest.mark.parametrize(("status", "name"), [(JobStatus.FAILED, "failed"), (JobStatus.CANCELLED, "cancelled")])
def test_failed_and_cancelled_jobs_end_with_their_own_event(status: JobStatus, name: str) -> None:
    assert events_of(run_feed(Script([RUNNING[2], view(status, 5)]), 4)) == [(name, FINISHED_VERSION)]


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


# --- shared status reads: many watchers of one job, one read --------------------------------------------


class DurableClient:
    """Stands in for the Durable client (Azure's): counts get_status calls, each taking `delay` seconds."""

    def __init__(self, delay: float = 0.05, fail: bool = False) -> None:
        self.delay, self.fail, self.calls = delay, fail, 0

    async def get_status(self, instance_id: str) -> Any:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("storage away")
        return type("Status", (), {"runtime_status": "Running", "output": None, "custom_status": {"seq": self.calls},
                                   "last_updated_time": None})()  # fmt: skip


def test_watchers_of_one_job_share_a_read_and_read_again_once_it_is_old() -> None:
    now = [0.0]
    shared = SharedReads(clock=lambda: now[0])
    client = DurableClient()

    async def scenario() -> list[Any]:
        first = await asyncio.gather(*(shared.status(client, "job", 1.0) for _ in range(50)))
        assert client.calls == 1 and {i.custom_status["seq"] for i in first if i} == {1}
        now[0] = 0.5
        await shared.status(client, "job", 1.0)
        assert client.calls == 1  # still fresh
        await shared.status(client, "other", 1.0)
        assert client.calls == 2  # another job has its own read
        now[0] = 1.2
        again = await asyncio.gather(*(shared.status(client, "job", 1.0) for _ in range(10)))
        return again

    again = asyncio.run(scenario())
    assert client.calls == 3 and all(i is not None and i.custom_status["seq"] == 3 for i in again)


def test_a_watcher_that_leaves_does_not_cancel_the_read_of_the_others() -> None:
    shared = SharedReads()
    client = DurableClient(delay=1.0)  # far longer than the two 0.05 s steps below, on a busy machine too

    async def scenario() -> Any:
        leaving = asyncio.create_task(shared.status(client, "job", 1.0))
        await asyncio.sleep(0.05)
        staying = asyncio.create_task(shared.status(client, "job", 1.0))
        await asyncio.sleep(0.05)
        leaving.cancel()
        return await staying

    assert asyncio.run(scenario()).runtime_status == "Running" and client.calls == 1


def test_a_failed_read_reaches_its_watchers_and_is_not_reused() -> None:
    shared = SharedReads()
    client = DurableClient(fail=True)

    async def scenario() -> None:
        results = await asyncio.gather(*(shared.status(client, "job", 10.0) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(result, ConnectionError) for result in results) and client.calls == 1
        client.fail = False
        assert (await shared.status(client, "job", 10.0)) is not None and client.calls == 2

    asyncio.run(scenario())
