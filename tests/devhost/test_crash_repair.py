"""A crash between a final checkpoint's history write and its instance-row write is repaired."""

from __future__ import annotations

import asyncio

from azure.data.tables import TableClient, UpdateMode

from devhost.durable.history import EventType, event, utcnow
from devhost.durable.store import TaskHubStore
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, start_orchestration, wait_status, wait_until


async def _redeliver_completion(azurite: Azurite, host: DevHost, instance_id: str, execution_id: str) -> None:
    """The crashed host's undeleted message comes back: a completion the history already holds."""
    store = TaskHubStore(azurite.connection_string, host.task_hub, 4)
    try:
        duplicate = event(EventType.TaskCompleted, utcnow(), TaskScheduledId=1, Result='"Hello Seattle!"')
        await store.send_control(instance_id, execution_id, duplicate)
    finally:
        await store.close()


def test_a_row_left_running_under_a_finished_history_is_completed(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "sequence")
    assert wait_status(sample_host, instance_id)["runtimeStatus"] == "Completed"
    # What a SIGKILL after the history (ending in ExecutionCompleted) and before the row leaves behind.
    rows = TableClient.from_connection_string(azurite.connection_string, f"{sample_host.task_hub}Instances")
    execution_id = rows.get_entity(instance_id, "")["ExecutionId"]
    rows.upsert_entity(
        {"PartitionKey": instance_id, "RowKey": "", "RuntimeStatus": "Running", "Output": "null"}, mode=UpdateMode.MERGE
    )
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 202
    asyncio.run(_redeliver_completion(azurite, sample_host, instance_id, execution_id))
    wait_until(lambda: sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 200, timeout=30)
    status = wait_status(sample_host, instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", ["Hello Tokyo!", "Hello Seattle!"])


async def _start_message_only(azurite: Azurite, host: DevHost, instance_id: str) -> None:
    """What a SIGKILL between a start's two writes leaves: the start message, and no Instances row yet."""
    store = TaskHubStore(azurite.connection_string, host.task_hub, 4)
    try:
        started = event(
            EventType.ExecutionStarted,
            utcnow(),
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": "e" * 32},
            ParentInstance=None,
            Name="sequence",
            Version="",
            Input="null",
            Tags=None,
            ScheduledStartTime=None,
        )
        await store.send_control(instance_id, "e" * 32, started)
    finally:
        await store.close()


def test_a_start_message_without_its_row_still_runs_the_instance(azurite: Azurite, sample_host: DevHost) -> None:
    """DTFx sends the start message before it writes the row (AzureStorageOrchestrationService.
    CreateTaskOrchestrationAsync: SendTaskOrchestrationMessageInternalAsync, then SetNewExecutionAsync), so a
    crash between them leaves only the message, and the instance must run from it: never a Pending row that
    nothing starts (which devhost produced while it wrote both at once)."""
    instance_id = "start-message-only"
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 404
    asyncio.run(_start_message_only(azurite, sample_host, instance_id))
    wait_until(lambda: sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 200, timeout=30)
    status = wait_status(sample_host, instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", ["Hello Tokyo!", "Hello Seattle!"])
