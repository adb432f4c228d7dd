"""Open tasks keep an orchestration running, as in DurableTask.Core.

`TaskOrchestrationExecutor.ExecuteCore` (Azure/durabletask, src/DurableTask.Core) completes or fails an
orchestration only `if (!this.context.HasOpenTasks)`: a timer is open until it fires or the shim cancels it
(`OutOfProcOrchestrationShim.InvokeAPIFromAction` cancels the timer's CancellationTokenSource when the SDK
sends `isCanceled`; `TaskOrchestrationContext.CreateTimer` then removes it from `openTasks`); an activity
or sub-orchestration is open until its completion arrives, even if it lost a `task_any`. A pending
`wait_for_external_event` is not an open task: the extension keeps it in
`DurableOrchestrationContext.pendingExternalEvents`, outside DTFx.
"""

from __future__ import annotations

import time
from typing import Any

from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, start_orchestration, wait_status, wait_until


def status_of(host: DevHost, instance_id: str) -> dict[str, Any]:
    response = host.client.get(f"{MANAGEMENT}/instances/{instance_id}", params={"showHistory": "true"})
    return dict(response.json())


def event_types(status: dict[str, Any]) -> list[str]:
    return [str(e["EventType"]) for e in status.get("historyEvents") or []]


def wait_for_event(host: DevHost, instance_id: str, event_type: str) -> dict[str, Any]:
    """Wait until the history holds `event_type` and the episode that consumed it was checkpointed."""
    wait_until(lambda: event_type in event_types(status_of(host, instance_id)), timeout=30)
    time.sleep(1.0)  # the episode after it has long been written
    return status_of(host, instance_id)


def test_a_timer_left_running_keeps_the_instance_running_until_it_fires(sample_host: DevHost) -> None:
    began = time.monotonic()
    instance_id = start_orchestration(sample_host, "raced_timer", [8, False])
    during = wait_for_event(sample_host, instance_id, "TaskCompleted")  # the activity won the race
    assert time.monotonic() - began < 8
    assert during["runtimeStatus"] == "Running", during
    assert during["output"] is None
    final = wait_status(sample_host, instance_id)
    assert time.monotonic() - began >= 8  # not before the timer fired
    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == {"winner": "work"}  # the output the SDK gave when the activity won
    assert event_types(status_of(sample_host, instance_id))[-2:] == ["TimerFired", "ExecutionCompleted"]


def test_a_cancelled_timer_does_not_keep_the_instance_running(sample_host: DevHost) -> None:
    began = time.monotonic()
    instance_id = start_orchestration(sample_host, "raced_timer", [60, True])
    final = wait_status(sample_host, instance_id, timeout=30)
    assert time.monotonic() - began < 30
    assert final["runtimeStatus"] == "Completed" and final["output"] == {"winner": "work"}
    assert "TimerFired" not in event_types(status_of(sample_host, instance_id))


def test_a_failing_orchestrator_with_an_open_timer_stays_running_until_it_fires(sample_host: DevHost) -> None:
    began = time.monotonic()
    instance_id = start_orchestration(sample_host, "failing_with_open_timer", 8)
    during = wait_for_event(sample_host, instance_id, "TaskCompleted")
    assert time.monotonic() - began < 8
    assert during["runtimeStatus"] == "Running", during
    final = wait_status(sample_host, instance_id)
    assert time.monotonic() - began >= 8
    assert final["runtimeStatus"] == "Failed"
    assert "broke with a timer still open" in str(final["output"])


def test_an_activity_that_lost_a_race_stays_open_until_it_ends(sample_host: DevHost) -> None:
    began = time.monotonic()
    instance_id = start_orchestration(sample_host, "raced_activity", 8)
    during = wait_for_event(sample_host, instance_id, "TaskCompleted")  # hello("fast") is done
    assert time.monotonic() - began < 8
    assert during["runtimeStatus"] == "Running", during
    final = wait_status(sample_host, instance_id)
    assert time.monotonic() - began >= 8  # sleep_for(8) had to finish first
    assert final["runtimeStatus"] == "Completed" and final["output"] == "Hello fast!"


def test_a_pending_external_event_is_not_an_open_task(sample_host: DevHost) -> None:
    began = time.monotonic()
    final = wait_status(sample_host, start_orchestration(sample_host, "raced_event"), timeout=30)
    assert final["runtimeStatus"] == "Completed" and final["output"] == "Hello event!"
    assert time.monotonic() - began < 10
