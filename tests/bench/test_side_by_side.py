"""The side-by-side benchmark's CSV test: the stacks take turns, the first run of each is reported cold and
the median of the others warm, and memory is sampled over every process tree a stack names; its crash test
counts the jobs a client does not see finish within the window after the restart."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench import side_by_side
from bench.csv_report import MemorySampler
from bench.side_by_side import System, csv_runs

MIB = 2**20


class Scripted(System):
    """A stack whose CSV jobs finish at once after a scripted time; it logs the order it was asked in."""

    def __init__(self, name: str, seconds: list[float], order: list[str]) -> None:
        super().__init__("http://127.0.0.1:9")  # never called: submit and status are scripted
        self.name = name
        self.seconds = seconds
        self.order = order

    def submit_csv(self, path: Path) -> str:
        self.order.append(self.name)
        time.sleep(self.seconds[len([n for n in self.order if n == self.name]) - 1])
        return "job"

    def status(self, job_id: str) -> tuple[str, Any]:
        return "COMPLETED", {"rows": 7}

    def memory_roots(self) -> list[int]:
        return [psutil.Process().pid]


def test_stacks_take_turns_and_the_first_run_is_kept_apart(tmp_path: Path) -> None:
    order: list[str] = []
    scripts = [Scripted("a", [0.3, 0.05, 0.15], order), Scripted("b", [0.2, 0.1, 0.05], order)]
    systems: list[System] = list(scripts)

    figures = csv_runs(systems, tmp_path / "input.csv", runs=3, timeout=10)

    assert order == ["a", "b", "a", "b", "a", "b"]
    # Each run is timed from its submit to its completion: at least what it scripted, and not much more (a busy
    # machine oversleeps, so the bound is loose); the figures are derived from those runs exactly.
    for script in scripts:
        scripted, runs = script.seconds, figures[script.name]["runs_seconds"]
        assert all(want - 0.01 <= got < want + 0.5 for want, got in zip(scripted, runs, strict=True)), runs
        assert figures[script.name]["cold_seconds"] == runs[0]
        assert figures[script.name]["warm_seconds"] == round(statistics.median(runs[1:]), 2)
    assert figures["a"]["rows"] == 7 and figures["a"]["peak_pss_mib"] > 0


def test_one_run_has_no_warm_figure(tmp_path: Path) -> None:
    figures = csv_runs([Scripted("a", [0.0], [])], tmp_path / "input.csv", runs=1, timeout=10)

    assert figures["a"]["warm_seconds"] is None


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two processes holding 64 MiB of private memory each, until they are killed."""
    code = "import sys, time; block = bytearray(64 << 20); block[::4096] = b'x' * len(block[::4096]); "
    code += "print('ready', flush=True); time.sleep(60)"
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(2)]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_memory_is_the_sum_over_every_root_named(holders: list[subprocess.Popen[bytes]]) -> None:
    with MemorySampler((holders[0].pid,), interval=0.05) as one:
        time.sleep(0.3)
    with MemorySampler(tuple(process.pid for process in holders), interval=0.05) as both:
        time.sleep(0.3)

    assert one.peak_bytes >= 64 * MIB
    assert both.peak_bytes >= 128 * MIB
    assert both.peak_bytes >= one.peak_bytes + 60 * MIB  # the second tree counted, not the first twice


def test_runs_that_count_different_rows_fail_the_test(tmp_path: Path) -> None:
    class Drifting(Scripted):
        def status(self, job_id: str) -> tuple[str, Any]:
            return "COMPLETED", {"rows": len(self.order)}  # a different count each run

    with pytest.raises(RuntimeError, match="different rows"):
        csv_runs([Drifting("a", [0.0, 0.0], [])], tmp_path / "input.csv", runs=2, timeout=10)


class Crashing(System):
    """A stack whose jobs run only after its workers were killed and started again; some never finish."""

    def __init__(self, finishing: int, failing: int = 0) -> None:
        super().__init__("http://127.0.0.1:9")  # never called: everything is scripted
        self.finishing, self.failing = finishing, failing
        self.events: list[str] = []
        self.restarted_at: float | None = None
        self.submitted = 0

    def submit_small(self, chunks: int, seconds: float) -> str:
        assert (chunks, seconds) == (2, 1.0)
        self.events.append("submit")
        self.submitted += 1
        return f"j{self.submitted - 1}"

    def kill_workers(self) -> None:
        self.events.append("kill")

    def restart_workers(self) -> None:
        self.events.append("restart")
        self.restarted_at = time.monotonic()

    def status(self, job_id: str) -> tuple[str, Any]:
        number = int(job_id[1:])
        if self.restarted_at is None or time.monotonic() - self.restarted_at < 0.2:
            return "RUNNING", None
        if number < self.finishing:
            return "COMPLETED", None
        if number < self.finishing + self.failing:
            return "FAILED", None
        return "RUNNING", None  # its work was lost with the workers


def test_the_crash_test_counts_what_never_finishes_within_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(side_by_side, "CRASH_KILL_AFTER", 0.05)
    monkeypatch.setattr(side_by_side, "CRASH_DOWN", 0.05)
    monkeypatch.setattr(side_by_side, "CRASH_WINDOW", 2.5)
    system = Crashing(finishing=30, failing=5)

    figures = side_by_side.crash(system, jobs=40)

    assert system.events == ["submit"] * 40 + ["kill", "restart"]  # killed after the last submit
    assert figures == {"jobs": 40, "completed": 30, "lost": 5, "restart_to_last_s": None}


def test_the_crash_test_times_the_last_job_when_every_job_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(side_by_side, "CRASH_KILL_AFTER", 0.0)
    monkeypatch.setattr(side_by_side, "CRASH_DOWN", 0.0)
    figures = side_by_side.crash(Crashing(finishing=20), jobs=20)

    assert (figures["completed"], figures["lost"]) == (20, 0)
    assert 0.2 <= figures["restart_to_last_s"] < 2.5  # seen on the first sweep after the workers came back
