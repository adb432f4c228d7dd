"""Crashes and races between a checkpoint's or a start's writes: repaired, or never run twice."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from devhost.durable.checkpoint import InstanceState
from devhost.durable.episode import redundant_start
from devhost.durable.history import EventType, event, utcnow
from devhost.durable.store import QueuedMessage, TaskHubStore
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


def _start_event(instance_id: str, execution_id: str, generation: int = 0) -> dict[str, Any]:
    return event(
        EventType.ExecutionStarted,
        utcnow(),
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=None,
        Name="sequence",
        Version="",
        Input="null",
        Tags=None,
        ScheduledStartTime=None,
        Generation=generation,
    )


def _row(execution_id: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "Name": "sequence",
        "Version": "",
        "Input": "null",
        "CustomStatus": "null",
        "RuntimeStatus": "Pending",
        "CreatedTime": now,
        "LastUpdatedTime": now,
        "ExecutionId": execution_id,
        "Generation": 0,
    }


async def _send_start(azurite: Azurite, host: DevHost, instance_id: str, execution_id: str) -> None:
    """A start's first write (its message), as a start that has not written its Instances row yet leaves it."""
    store = TaskHubStore(azurite.connection_string, host.task_hub, 4)
    try:
        await store.send_control(instance_id, execution_id, _start_event(instance_id, execution_id))
    finally:
        await store.close()


async def _write_start_row(azurite: Azurite, host: DevHost, instance_id: str, execution_id: str) -> bool:
    """A start's second write: its row, created only if no other start created one first."""
    store = TaskHubStore(azurite.connection_string, host.task_hub, 4)
    try:
        return await store.create_execution(instance_id, _row(execution_id), etag=None)
    finally:
        await store.close()


def _history_starts(host: DevHost, instance_id: str) -> list[dict[str, Any]]:
    status = wait_status(host, instance_id, showHistory="true")
    return [e for e in status["historyEvents"] if e["EventType"] == "ExecutionStarted"]


def test_a_start_message_waits_for_its_row(azurite: Azurite, sample_host: DevHost) -> None:
    """DTFx sends the start message before it writes the row (AzureStorageOrchestrationService.
    CreateTaskOrchestrationAsync: SendTaskOrchestrationMessageInternalAsync, then SetNewExecutionAsync), and
    runs a top-level start only once the Instances row names its execution: until then the message is
    deferred (OrchestrationSessionManager.DedupeExecutionStartedMessagesAsync). devhost once ran it at once."""
    instance_id = "start-message-first"
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 404
    asyncio.run(_send_start(azurite, sample_host, instance_id, "e" * 32))
    time.sleep(3.0)  # delivered and deferred at least once
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").status_code == 404
    assert asyncio.run(_write_start_row(azurite, sample_host, instance_id, "e" * 32))
    status = wait_status(sample_host, instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", ["Hello Tokyo!", "Hello Seattle!"])


def test_two_concurrent_starts_of_one_id_run_one_execution(azurite: Azurite, sample_host: DevHost) -> None:
    """A start that read no row sends its message, another start of the same id creates the row and runs, then
    the first writes its row: the insert fails (SetNewExecutionAsync: InsertEntityAsync, 409 ignored) and
    its message is a duplicate that is never run. devhost once replaced the row and ran the second execution
    over the first, which failed a chaos-suite job whose plan the second execution found deleted."""
    instance_id = "two-starts"
    late = "b" * 32
    asyncio.run(_send_start(azurite, sample_host, instance_id, late))
    time.sleep(1.0)
    response = sample_host.client.post(f"{MANAGEMENT}/orchestrators/sequence/{instance_id}")
    assert response.status_code == 202, response.text
    assert asyncio.run(_write_start_row(azurite, sample_host, instance_id, late)) is False
    status = wait_status(sample_host, instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", ["Hello Tokyo!", "Hello Seattle!"])
    time.sleep(8.0)  # the late start's message comes back (deferred 2 s, then 4 s) and is dropped
    rows = TableClient.from_connection_string(azurite.connection_string, f"{sample_host.task_hub}Instances")
    row = rows.get_entity(instance_id, "")
    assert (row["RuntimeStatus"], row["ExecutionId"] != late) == ("Completed", True)
    starts = _history_starts(sample_host, instance_id)
    assert len(starts) == 1


def _queued(event_: dict[str, Any], dequeue_count: int) -> QueuedMessage:
    return QueuedMessage(None, "m", "r", dequeue_count, "i", event_["OrchestrationInstance"]["ExecutionId"], event_)  # type: ignore[arg-type]


def test_start_dedupe_follows_dtfx() -> None:
    """OrchestrationSessionManager.DedupeExecutionStartedMessagesAsync and IsScheduledAfterInstanceUpdate."""
    earlier = utcnow() - timedelta(seconds=1)
    pending = InstanceState("i", "a" * 32, "sequence", [], 0, "Pending", earlier)
    sent_after_row = _queued(_start_event("i", "b" * 32), 1)
    assert redundant_start(pending, sent_after_row)  # the row it lost to was written before it was sent
    sent_before_row = _queued(_start_event("i", "b" * 32), 1)
    later_row = InstanceState("i", "a" * 32, "sequence", [], 0, "Pending", utcnow() + timedelta(seconds=1))
    assert not redundant_start(later_row, sent_before_row)  # may still be the winner's: wait
    assert redundant_start(later_row, _queued(_start_event("i", "b" * 32), 10))  # its row never came
    finished = InstanceState("i", "a" * 32, "sequence", [], 0, "Completed", earlier)
    assert not redundant_start(finished, _queued(_start_event("i", "b" * 32, generation=1), 3))  # a restart
    assert redundant_start(finished, _queued(_start_event("i", "b" * 32), 2))  # back after the row was written
