"""Timings as in Azure: queue visibilities and partition leases (DurableTask.AzureStorage), test overrides.

Defaults from `AzureStorageOrchestrationServiceSettings` (Azure/durabletask, src/DurableTask.AzureStorage):
`ControlQueueVisibilityTimeout` and `WorkItemQueueVisibilityTimeout` 5 min, `LeaseInterval` 30 s; the
extension's `AzureStorageOptions.Validate` keeps the visibilities within 1-60 minutes. A host works on a
control-queue partition only while it holds its lease, so after a crash nobody takes the partition over
before the dead host's lease expires.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from devhost.config import ConfigError
from devhost.durable.timings import FAST_TEST_TIMINGS, DurableTimings
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost, unique_hub
from tests.devhost.conftest import MANAGEMENT, SAMPLE_APP, sample_env, start_orchestration, wait_status


def test_the_defaults_are_azures() -> None:
    timings = DurableTimings.load({}, {})
    assert (timings.control_queue_visibility, timings.work_item_visibility, timings.partition_lease) == (300, 300, 30)
    assert timings.maximum_short_timer == timedelta(days=6)
    assert timings.long_timer_interval == timedelta(days=3)


def test_host_json_sets_the_visibilities_within_the_extensions_range() -> None:
    def host_json(**provider: str) -> dict[str, object]:
        return {"extensions": {"durableTask": {"storageProvider": provider}}}

    timings = DurableTimings.load(host_json(controlQueueVisibilityTimeout="00:02:00"), {})
    assert timings.control_queue_visibility == 120
    with pytest.raises(ConfigError, match="between 1 and 60 minutes"):
        DurableTimings.load(host_json(workItemQueueVisibilityTimeout="00:00:30"), {})
    overridden = DurableTimings.load(host_json(controlQueueVisibilityTimeout="00:02:00"), FAST_TEST_TIMINGS)
    assert overridden.control_queue_visibility == 15  # the test-only override wins
    with pytest.raises(ConfigError, match="15-60"):
        DurableTimings.load({}, {"DEVHOST_PARTITION_LEASE": "5"})  # blob leases last 15-60 s


def test_a_second_host_on_the_hub_waits_for_the_partition_leases(azurite: Azurite) -> None:
    hub = unique_hub()
    args = ["--app-dir", str(SAMPLE_APP)]
    first = DevHost(azurite.connection_string, env=sample_env(), args=args, task_hub=hub).start()
    second = DevHost(azurite.connection_string, env=sample_env(), args=args, task_hub=hub)
    try:
        second.start()
        # Started through the second host, run by the first: it holds every partition.
        assert wait_status(second, start_orchestration(second, "sequence"))["runtimeStatus"] == "Completed"
        assert "Executed 'Functions.sequence' (Completed" in first.logs()
        assert "Executed 'Functions.sequence' (Completed" not in second.logs()
        first.kill()
        crashed = time.monotonic()
        instance_id = start_orchestration(second, "sequence")
        assert wait_status(second, instance_id, timeout=60)["output"] == ["Hello Tokyo!", "Hello Seattle!"]
        # Leases of 15 s renewed every 5 s: the dead host's leases outlive it by 10-15 s.
        assert time.monotonic() - crashed >= 9
        assert "Executed 'Functions.sequence' (Completed" in second.logs()
        response = second.client.get(f"{MANAGEMENT}/instances/{instance_id}")
        assert response.status_code == 200
    finally:
        first.stop(timeout=20)
        second.stop(timeout=20)
