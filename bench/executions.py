"""Execution time from a host's log: what Azure Functions bills as GB-s, read off the "Executed" lines.

devhost logs one line per execution, as the Functions host does (`devhost/invoker.py` for HTTP, queue and
timer functions, `devhost/durable/activities.py` for activities, `devhost/durable/checkpoint.py` for
orchestrator episodes, every one with `--log-episodes`):

    [2026-12-02T08:40:01.123Z] Executed 'Functions.name' (Succeeded, Id=..., Duration=12ms, POST /api/jobs)

The line is written when the execution ends, so it spans [time - duration, time]. Two sums come out:
- seconds per kind of execution, each execution counted on its own (what the Consumption plan's per
  execution GB-s would count, at the instance's memory rather than the process's sampled memory);
- active seconds: how long at least one execution was running, overlaps counted once. Flex Consumption
  on demand bills an instance's memory for the time it is executing anything, so this is its figure for
  one instance (devhost is one instance with its worker processes).
Timer executions are the host's idle work, not a job's: they are counted apart and left out of both.
An episode's duration includes devhost's checkpoint after the replay, so episodes are an upper bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

EXECUTED = re.compile(
    r"^\[(?P<time>[^\]]+)\] Executed 'Functions\.(?P<name>[^']+)' \((?P<outcome>\w+), Id=[^,]*, "
    r"Duration=(?P<ms>\d+)ms(?:, (?P<detail>.*))?\)\s*$"
)
_HTTP_DETAIL = re.compile(r"^[A-Z]+ /")


@dataclass(frozen=True)
class Execution:
    """One execution: its kind (http, episode, activity, queue, timer), function, and when it ran."""

    kind: str
    name: str
    start: float  # seconds since the epoch
    end: float


def kind_of(detail: str | None) -> str:
    """The kind of execution a log line's trailing detail names."""
    if detail is None:
        return "activity"
    if detail.startswith("HistoryEvents="):
        return "episode"
    if detail == "timer":
        return "timer"
    if detail.startswith("queue="):
        return "queue"
    if _HTTP_DETAIL.match(detail):
        return "http"
    return "other"


def parse_line(line: str) -> Execution | None:
    """The execution a log line records, or None for any other line."""
    match = EXECUTED.match(line)
    if match is None:
        return None
    end = datetime.fromisoformat(match["time"].replace("Z", "+00:00")).timestamp()
    return Execution(kind_of(match["detail"]), match["name"], end - int(match["ms"]) / 1000, end)


@dataclass
class Executions:
    """Executions read from a log, with their sums."""

    items: list[Execution] = field(default_factory=list)

    def seconds_by_kind(self) -> dict[str, float]:
        """Summed duration per kind, each execution on its own (timers included, under "timer")."""
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.kind] = totals.get(item.kind, 0.0) + item.end - item.start
        return totals

    def active_seconds(self) -> float:
        """How long at least one execution other than a timer was running (overlaps counted once)."""
        spans = sorted((item.start, item.end) for item in self.items if item.kind != "timer")
        total, reach = 0.0, float("-inf")
        for start, end in spans:
            if end <= reach:
                continue
            total += end - max(start, reach)
            reach = end
        return total


class ExecutionLog:
    """The executions a log file gains from now on (`read` returns those since the last read)."""

    def __init__(self, path: Path) -> None:
        """Start at the log's current end."""
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read(self) -> Executions:
        """The executions logged since construction or the previous read (whole lines only)."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        lines = complete.decode(errors="replace").splitlines()
        return Executions([item for item in map(parse_line, lines) if item is not None])
