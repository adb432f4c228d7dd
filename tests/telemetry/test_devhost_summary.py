"""`python -m devhost` with DEVHOST_TRACE_SUMMARY (or --verbose) prints each job's trace: the workers export
OTLP to a receiver devhost runs on loopback, and devhost prints the spans as a tree with durations. Without
the setting nothing is printed, so test and `make run` output stays quiet."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from devhost.testing.harness import DevHost


def run_simulate(host: DevHost) -> dict[str, str]:
    response = host.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 2}})
    assert response.status_code == 202, response.text
    final = host.wait_for_job(response.headers["location"], timeout=60)
    assert final.json()["status"] == "COMPLETED", final.text
    return dict(final.json())


def test_devhost_prints_a_summary_of_each_jobs_trace(devhost_factory: Callable[..., DevHost]) -> None:
    host = devhost_factory(env={"DEVHOST_TRACE_SUMMARY": "true"})
    job = run_simulate(host)
    header = f"trace {job['trace_id']}: job {job['id']} (simulate) COMPLETED in "
    deadline = time.monotonic() + 20
    while header not in host.logs() and time.monotonic() < deadline:
        time.sleep(0.2)
    logs = host.logs()
    assert header in logs, logs[-3000:]
    summary = logs[logs.index(header) :]
    for line in (
        "job submit",
        "job ",
        "step prepare",
        "activity prepare_or_run_job",
        "step chunk-1",
        "activity complete_job",
    ):
        assert re.search(rf"^\s+{re.escape(line)}.*\d+\.\d ms", summary, re.MULTILINE), (line, summary[:2000])


def test_without_the_setting_devhost_prints_no_traces(devhost_factory: Callable[..., DevHost]) -> None:
    host = devhost_factory()
    run_simulate(host)
    time.sleep(3)
    assert "Trace summaries on" not in host.logs() and "trace " not in host.logs()
