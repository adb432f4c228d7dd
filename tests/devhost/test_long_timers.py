"""Long timers: the SDK's LongTimerTask path, exercised in seconds with devhost's timer limits shrunk.

The extension sends the provider's limits to the SDK in the orchestration context
(`OrchestrationTriggerAttributeBindingProvider`: `maximumShortTimerDuration`,
`longRunningTimerIntervalDuration`, from `AzureStorageDurabilityProvider.MaximumDelayTime` = 6 days and
`LongRunningTimerIntervalLength` = 3 days). With schema V3 the SDK (`DurableOrchestrationContext.create_timer`,
`Task.LongTimerTask`) splits a longer timer into legs: the first inside a WhenAll, each later one added as a
new top-level action when the previous leg fires. devhost keeps Azure's limits unless a test shrinks them
(`DEVHOST_MAXIMUM_SHORT_TIMER`, `DEVHOST_LONG_TIMER_INTERVAL`).
"""

from __future__ import annotations

import time
from typing import Any

from devhost.durable.history import parse_time
from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, start_orchestration, wait_status, wait_until

SHRUNK = {"DEVHOST_MAXIMUM_SHORT_TIMER": "00:00:04", "DEVHOST_LONG_TIMER_INTERVAL": "00:00:02"}


def history(host: DevHost, instance_id: str) -> list[dict[str, Any]]:
    response = host.client.get(f"{MANAGEMENT}/instances/{instance_id}", params={"showHistory": "true"})
    return list(response.json().get("historyEvents") or [])


def timers_created(host: DevHost, instance_id: str) -> list[Any]:
    return [parse_time(str(e["FireAt"])) for e in history(host, instance_id) if e["EventType"] == "TimerCreated"]


def test_a_timer_over_the_short_limit_runs_in_legs(sample_factory: Any) -> None:
    host = sample_factory(env=SHRUNK)
    began = time.monotonic()
    instance_id = start_orchestration(host, "long_timer", 12)
    final = wait_status(host, instance_id, timeout=90)
    assert time.monotonic() - began >= 12
    assert final["runtimeStatus"] == "Completed" and final["output"]["after"] == "Hello after!"
    legs = timers_created(host, instance_id)
    started = parse_time(str(history(host, instance_id)[0]["Timestamp"]))
    # 12 s > 4 s: a 2 s leg; each time one fires with more than 4 s left, another 2 s leg; then the rest.
    # (How many legs depends on how late each fires on a busy machine: at least three.)
    assert len(legs) >= 3, legs
    assert legs == sorted(legs)
    # The first leg (one interval) and the requested time are both counted from the first episode's
    # current_utc_datetime, so they lie exactly 10 s apart; that episode ran soon after the start.
    assert abs((legs[-1] - legs[0]).total_seconds() - 10) < 0.001, legs
    assert -0.001 < (legs[0] - started).total_seconds() - 2 < 5, (started, legs)


def test_azure_limits_keep_a_timer_whole_by_default(sample_factory: Any) -> None:
    host = sample_factory()
    instance_id = start_orchestration(host, "long_timer", 7)
    wait_status(host, instance_id, timeout=60)
    assert len(timers_created(host, instance_id)) == 1  # 7 s is far below 6 days


def test_cancelling_a_long_timer_leaves_its_first_leg_open(sample_factory: Any) -> None:
    """LongTimerTask.cancel marks the long timer's own action, which the SDK never sends: the leg's
    CreateTimer goes out without `isCanceled`, so the host keeps the leg open until it fires. The SDK stops
    reading history once the orchestrator has returned (TaskOrchestrationExecutor.execute), so no later leg
    is added: in Azure a cancelled 30-day timer keeps the instance Running for its first 3-day leg."""
    host = sample_factory(env={"DEVHOST_MAXIMUM_SHORT_TIMER": "00:00:12", "DEVHOST_LONG_TIMER_INTERVAL": "00:00:08"})
    began = time.monotonic()
    instance_id = start_orchestration(host, "raced_timer", [20, True])
    wait_until(lambda: any(e["EventType"] == "TaskCompleted" for e in history(host, instance_id)), timeout=30)
    time.sleep(1.0)
    assert time.monotonic() - began < 8
    response = host.client.get(f"{MANAGEMENT}/instances/{instance_id}")
    assert response.json()["runtimeStatus"] == "Running", response.text
    final = wait_status(host, instance_id, timeout=60)
    assert 8 <= time.monotonic() - began < 20  # the first leg fired; the 20 s timer as a whole did not
    assert final["runtimeStatus"] == "Completed" and final["output"] == {"winner": "work"}
    assert len(timers_created(host, instance_id)) == 1
