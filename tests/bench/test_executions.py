"""Execution time read off the host's log (bench/executions.py): the lines devhost writes, the kinds they
name, and the time at least one execution ran, which Flex Consumption bills on demand."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.executions import ExecutionLog, Executions, kind_of, parse_line
from devhost.testing.harness import DevHost

FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


def line(at: str, name: str, ms: int, detail: str | None = None, outcome: str = "Succeeded") -> str:
    suffix = f", {detail}" if detail else ""
    return f"[{at}] Executed 'Functions.{name}' ({outcome}, Id=abc, Duration={ms}ms{suffix})"


def test_each_line_spans_its_duration_up_to_when_it_was_logged() -> None:
    item = parse_line(line("2026-12-02T08:00:01.500Z", "jobs_collection", 250, "POST /api/jobs"))
    assert item is not None
    assert (item.kind, item.name) == ("http", "jobs_collection")
    assert item.end - item.start == pytest.approx(0.25)
    assert parse_line("[2026-12-02T08:00:01.500Z] Host started in 1.2s") is None


def test_kinds_follow_the_detail_each_logger_writes() -> None:
    assert kind_of("HistoryEvents=8, NewTasks=0") == "episode"
    assert kind_of(None) == "activity"
    assert kind_of("queue=jobs-inbox, DequeueCount=1") == "queue"
    assert kind_of("timer") == "timer"
    assert kind_of("GET /api/jobs/x") == "http"


def test_overlapping_executions_count_once_and_timers_not_at_all() -> None:
    lines = [
        line("2026-12-02T08:00:01.000Z", "a", 1000),  # 0-1 s
        line("2026-12-02T08:00:01.500Z", "b", 1000, "HistoryEvents=3, NewTasks=1"),  # 0.5-1.5 s
        line("2026-12-02T08:00:01.200Z", "c", 100),  # 1.1-1.2 s, inside both
        line("2026-12-02T08:00:03.000Z", "d", 500, "GET /api/jobs"),  # 2.5-3 s
        line("2026-12-02T08:00:10.000Z", "sweep", 5000, "timer"),  # idle work
    ]
    executions = Executions([item for item in map(parse_line, lines) if item is not None])
    assert executions.active_seconds() == pytest.approx(1.5 + 0.5)
    totals = executions.seconds_by_kind()
    assert totals["activity"] == pytest.approx(1.1)
    assert totals["timer"] == pytest.approx(5.0)


def test_the_log_is_read_from_where_it_was_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "host.log"
    log.write_text(line("2026-12-02T08:00:01.000Z", "before", 10) + "\n")
    reader = ExecutionLog(log)
    with open(log, "a") as out:
        out.write(line("2026-12-02T08:00:02.000Z", "first", 10) + "\n" + line("2026-12-02T08:00:03.000Z", "half", 10))
    assert [item.name for item in reader.read().items] == ["first"]
    with open(log, "a") as out:
        out.write("\n")
    assert [item.name for item in reader.read().items] == ["half"]


def test_a_job_on_devhost_logs_its_submit_episodes_and_activity(devhost_factory: Callable[..., DevHost]) -> None:
    host = devhost_factory(args=["--log-episodes"])
    assert host.log_path is not None
    reader = ExecutionLog(host.log_path)
    response = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1, "chunk_seconds": 0.3}})
    assert response.status_code == 202
    job_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while host.client.get(f"/api/jobs/{job_id}").json()["status"] not in FINISHED:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # The job's row says it finished before its last episode has run and been logged: read until it has,
    # then once more a little later, so that an episode too many would be seen.
    executions = Executions()
    while [item.kind for item in executions.items].count("episode") < 2:
        assert time.monotonic() < deadline, executions
        executions.items.extend(reader.read().items)
        time.sleep(0.1)
    time.sleep(0.5)
    executions.items.extend(reader.read().items)
    kinds = [item.kind for item in executions.items]
    # One activity runs the one chunk; its two episodes schedule it and record its end; without
    # --log-episodes only the last episode would be logged.
    assert kinds.count("activity") == 1
    assert kinds.count("episode") == 2
    assert kinds.count("http") >= 2  # the submit and the polls
    activity = next(item for item in executions.items if item.kind == "activity")
    assert activity.end - activity.start >= 0.3  # the chunk's 0.3 s
    assert executions.active_seconds() <= sum(executions.seconds_by_kind().values()) + 1e-9
