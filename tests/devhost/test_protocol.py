"""Fidelity: the history devhost writes and the actions the SDK answers have the real host's shapes."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient

from devhost.durable.history import parse_time
from devhost.durable.store import TaskHubStore, sanitize_key
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, SAMPLE_APP, start_orchestration, wait_status, wait_until


def history_rows(azurite: Azurite, host: DevHost, instance_id: str) -> list[dict[str, Any]]:
    """The current execution's rows of the History table, in order (what DTFx would read back)."""
    table = TableClient.from_connection_string(azurite.connection_string, f"{host.task_hub}History")
    rows = [dict(e) for e in table.query_entities(f"PartitionKey eq '{sanitize_key(instance_id)}'")]
    sentinel = next(r for r in rows if r["RowKey"] == "sentinel")
    mine = [r for r in rows if r["RowKey"] != "sentinel" and r["ExecutionId"] == sentinel["ExecutionId"]]
    return sorted(mine, key=lambda r: str(r["RowKey"]))[: int(sentinel["EventCount"])]


def types(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["EventType"]) for r in rows]


def decisions_and_completions(rows: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """(type, EventId, the id it completes) for every event but the episode markers and the start."""
    return [
        (r["EventType"], r.get("EventId"), r.get("TaskScheduledId", r.get("TimerId")))
        for r in rows
        if r["EventType"] not in ("OrchestratorStarted", "OrchestratorCompleted", "ExecutionStarted")
    ]


def sdk_handle(name: str) -> Any:
    if str(SAMPLE_APP) not in sys.path:  # as the worker does: the app's own modules import from its root
        sys.path.insert(0, str(SAMPLE_APP))
    spec = importlib.util.spec_from_file_location("sample_function_app", SAMPLE_APP / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(f for f in module.app.get_functions() if f.get_function_name() == name).get_user_function()


def test_sequence_history_has_the_hosts_episode_shape(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "sequence")
    assert wait_status(sample_host, instance_id)["output"] == ["Hello Tokyo!", "Hello Seattle!"]
    rows = history_rows(azurite, sample_host, instance_id)
    assert types(rows) == [
        "OrchestratorStarted", "ExecutionStarted", "TaskScheduled", "OrchestratorCompleted",
        "OrchestratorStarted", "TaskCompleted", "TaskScheduled", "OrchestratorCompleted",
        "OrchestratorStarted", "TaskCompleted", "ExecutionCompleted", "OrchestratorCompleted",
    ]  # fmt: skip
    scheduled = [r for r in rows if r["EventType"] == "TaskScheduled"]
    assert [(r["EventId"], r["Name"], r["Input"]) for r in scheduled] == [
        (0, "hello", '["\\"Tokyo\\""]'),
        (1, "hello", '["\\"Seattle\\""]'),
    ]
    completed = [r for r in rows if r["EventType"] == "TaskCompleted"]
    assert [(r["TaskScheduledId"], r["Result"]) for r in completed] == [(0, '"Hello Tokyo!"'), (1, '"Hello Seattle!"')]
    finished = next(r for r in rows if r["EventType"] == "ExecutionCompleted")
    assert (finished["EventId"], finished["OrchestrationStatus"], finished["Result"]) == (
        2, 1, '["Hello Tokyo!","Hello Seattle!"]',
    )  # fmt: skip
    instances = TableClient.from_connection_string(azurite.connection_string, f"{sample_host.task_hub}Instances")
    row = instances.get_entity(sanitize_key(instance_id), "")
    assert row["RuntimeStatus"] == "Completed" and row["Name"] == "sequence"


def test_recorded_history_replays_through_the_sdk_into_v3_actions(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "sequence")
    wait_status(sample_host, instance_id)
    events = [TaskHubStore._from_row(r) for r in history_rows(azurite, sample_host, instance_id)]
    # Replay everything but the final decision, as the host's last episode did.
    history = events[: events.index(next(e for e in events if e["EventType"] == 1))]
    context = {
        "history": history, "input": None, "instanceId": instance_id, "isReplaying": True,
        "parentInstanceId": None, "upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
        "longRunningTimerIntervalDuration": "3.00:00:00", "maximumShortTimerDuration": "6.00:00:00",
    }  # fmt: skip
    state = json.loads(sdk_handle("sequence")(json.dumps(context)))
    assert state["isDone"] is True and state["schemaVersion"] == 2
    assert state["actions"] == [[
        {"actionType": 0, "functionName": "hello", "input": '"Tokyo"'},
        {"actionType": 0, "functionName": "hello", "input": '"Seattle"'},
    ]]  # fmt: skip
    assert state["output"] == ["Hello Tokyo!", "Hello Seattle!"]


def test_fan_out_schedules_every_task_in_one_episode(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "fan_out", 20)
    assert wait_status(sample_host, instance_id)["output"] == sum(range(20))
    rows = history_rows(azurite, sample_host, instance_id)
    first_episode = types(rows)[: types(rows).index("OrchestratorCompleted")]
    assert first_episode == ["OrchestratorStarted", "ExecutionStarted"] + ["TaskScheduled"] * 20
    assert sorted(r["TaskScheduledId"] for r in rows if r["EventType"] == "TaskCompleted") == list(range(20))


def test_retry_exhausted_adds_the_extra_timer_before_failing(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "retry_exhausted")
    output = wait_status(sample_host, instance_id)["output"]
    assert output["caught"].startswith("Activity function 'fail_always' failed: ValueError: boom x")
    rows = history_rows(azurite, sample_host, instance_id)
    decisive = decisions_and_completions(rows)
    assert decisive == [
        ("TaskScheduled", 0, None), ("TaskFailed", -1, 0), ("TimerCreated", 1, None), ("TimerFired", -1, 1),
        ("TaskScheduled", 2, None), ("TaskFailed", -1, 2), ("TimerCreated", 3, None), ("TimerFired", -1, 3),
        ("ExecutionCompleted", 4, None),
    ]  # fmt: skip
    failed = next(r for r in rows if r["EventType"] == "TaskFailed")
    retry_timer = next(r for r in rows if r["EventType"] == "TimerCreated")
    # DTFx's RetryInterceptor: the timer fires firstRetryInterval (200 ms) after the episode that saw the failure
    # (its CurrentUtcDateTime, the timer row's own timestamp); timed from the failure itself, the delay would
    # also hold the failure's trip to that episode, which a busy machine stretches.
    assert retry_timer["_Timestamp"] >= failed["_Timestamp"]
    delay = retry_timer["FireAt"] - retry_timer["_Timestamp"]
    assert abs(delay.total_seconds() - 0.2) < 0.002
    last_timer = [r for r in rows if r["EventType"] == "TimerCreated"][1]
    assert last_timer["FireAt"] - last_timer["_Timestamp"] < timedelta(seconds=0.1)  # "dummy timer", fires at once


def test_durable_timer_fires_at_its_time(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "timer", 1)
    assert wait_status(sample_host, instance_id)["output"] == "fired"
    rows = history_rows(azurite, sample_host, instance_id)
    created = next(r for r in rows if r["EventType"] == "TimerCreated")
    fired = next(r for r in rows if r["EventType"] == "TimerFired")
    started = next(r for r in rows if r["EventType"] == "ExecutionStarted")
    assert fired["TimerId"] == created["EventId"] == 0
    # One second after the episode that created it (context.current_utc_datetime, the row's own timestamp),
    # which is not before the instance started.
    assert created["_Timestamp"] >= started["_Timestamp"]
    assert abs((created["FireAt"] - created["_Timestamp"]).total_seconds() - 1.0) < 0.002
    episode = rows[rows.index(fired) - 1]
    assert episode["EventType"] == "OrchestratorStarted" and episode["_Timestamp"] >= created["FireAt"]


def test_external_event_is_delivered_by_name(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "wait_event")
    response = sample_host.client.post(f"{MANAGEMENT}/instances/{instance_id}/raiseEvent/approval", json={"ok": True})
    assert response.status_code == 202
    assert wait_status(sample_host, instance_id)["output"] == {"approval": {"ok": True}}
    raised = next(r for r in history_rows(azurite, sample_host, instance_id) if r["EventType"] == "EventRaised")
    assert (raised["Name"], raised["Input"]) == ("approval", '{"ok":true}')


def test_sub_orchestrations_get_the_hosts_default_ids(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "parent")
    assert wait_status(sample_host, instance_id)["output"] == [["Hello Tokyo!", "Hello Seattle!"]] * 2
    rows = history_rows(azurite, sample_host, instance_id)
    execution_id = rows[1]["ExecutionId"]
    created = [r for r in rows if r["EventType"] == "SubOrchestrationInstanceCreated"]
    assert [r["InstanceId"] for r in created] == [f"{execution_id}:0", f"{instance_id}-child"]
    child_rows = history_rows(azurite, sample_host, f"{execution_id}:0")
    parent_ref = json.loads(next(r for r in child_rows if r["EventType"] == "ExecutionStarted")["ParentInstance"])
    assert parent_ref["TaskScheduleId"] == 0
    assert parent_ref["OrchestrationInstance"]["InstanceId"] == instance_id
    completions = [r for r in rows if r["EventType"] == "SubOrchestrationInstanceCompleted"]
    assert [r["TaskScheduledId"] for r in completions] == [0, 1]


def test_continue_as_new_starts_a_fresh_execution(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "counter", 0)
    assert wait_status(sample_host, instance_id)["output"] == 3
    rows = history_rows(azurite, sample_host, instance_id)
    started = next(r for r in rows if r["EventType"] == "ExecutionStarted")
    # Only the last execution is current; its input is the SDK's JSON text, serialized again by the host.
    assert started["Input"] == '"3"'
    assert types(rows).count("ExecutionStarted") == 1 and "ContinueAsNew" not in types(rows)
    instances = TableClient.from_connection_string(azurite.connection_string, f"{sample_host.task_hub}Instances")
    assert instances.get_entity(instance_id, "")["ExecutionId"] == rows[0]["ExecutionId"]


def test_terminate_records_the_reason(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "wait_event")
    wait_until(
        lambda: sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").json()["runtimeStatus"] == "Running"
    )
    assert (
        sample_host.client.post(f"{MANAGEMENT}/instances/{instance_id}/terminate", params={"reason": "bye"}).status_code
        == 202
    )
    status = wait_status(sample_host, instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Terminated", "bye")
    rows = history_rows(azurite, sample_host, instance_id)
    assert types(rows)[-3:] == ["ExecutionTerminated", "ExecutionCompleted", "OrchestratorCompleted"]
    assert rows[-2]["OrchestrationStatus"] == 5


def test_suspended_instances_hold_events_until_resumed(sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "wait_event")
    base = f"{MANAGEMENT}/instances/{instance_id}"
    wait_until(lambda: sample_host.client.get(base).json()["runtimeStatus"] == "Running")
    assert sample_host.client.post(f"{base}/suspend", params={"reason": "hold"}).status_code == 202
    wait_until(lambda: sample_host.client.get(base).json()["runtimeStatus"] == "Suspended")
    assert sample_host.client.post(f"{base}/raiseEvent/approval", json="later").status_code == 202
    # (give the event time to arrive: it must not complete the instance while suspended)
    import time

    time.sleep(1.0)
    assert sample_host.client.get(base).json()["runtimeStatus"] == "Suspended"
    assert sample_host.client.post(f"{base}/resume", params={"reason": "go"}).status_code == 202
    assert wait_status(sample_host, instance_id)["output"] == {"approval": "later"}


@pytest.mark.parametrize(
    ("orchestrator", "message"),
    [
        (
            "calls_missing",
            "The function 'no_such_activity' doesn't exist, is disabled, or is not an activity function.",
        ),
        ("huge_status", "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB."),
    ],
)
def test_host_side_failures_fail_the_instance(sample_host: DevHost, orchestrator: str, message: str) -> None:
    status = wait_status(sample_host, start_orchestration(sample_host, orchestrator))
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith(f"Orchestrator function '{orchestrator}' failed: {message}")


def test_non_determinism_fails_the_instance(sample_factory: Any, tmp_path: Path) -> None:
    marker = tmp_path / "drift"
    host = sample_factory(env={"DRIFT_MARKER": str(marker)})
    instance_id = start_orchestration(host, "drifting")
    wait_until(
        lambda: (
            "hello"
            in str(
                host.client.get(f"{MANAGEMENT}/instances/{instance_id}", params={"showHistory": "true"})
                .json()
                .get("historyEvents")
            )
        )
    )
    marker.write_text("changed")
    host.client.post(f"{MANAGEMENT}/instances/{instance_id}/raiseEvent/next", json=1)
    status = wait_status(host, instance_id)
    assert status["runtimeStatus"] == "Failed"
    assert "Non-Deterministic workflow detected" in status["output"]


def test_large_messages_spill_to_blobs(azurite: Azurite, sample_host: DevHost) -> None:
    from azure.storage.blob import ContainerClient

    instance_id = start_orchestration(sample_host, "big", 100_000)
    assert wait_status(sample_host, instance_id)["output"] == 100_000
    container = ContainerClient.from_connection_string(
        azurite.connection_string, f"{sample_host.task_hub.lower()}-largemessages"
    )
    names = [b.name for b in container.list_blobs(name_starts_with=instance_id)]
    assert any("/message-" in n and "TaskScheduled" in n for n in names), names  # the 100 KB work item
    assert any("/history-" in n and n.endswith("-Result.json.gz") for n in names), names


def test_client_binding_works_with_the_unmodified_sdk_client(sample_host: DevHost) -> None:
    report = sample_host.client.post("/api/client/client-ops-1").json()
    assert report == {
        "started": "client-ops-1",
        "status_input": '{"n": 1}',  # the SDK double-encodes start input, so the host reports a string
        "runtime_status": "Completed",
        "output": {"approval": '{"ok": true}'},  # and raise_event data arrives as a JSON string
        "listed": True,
        "missing_status": None,
        "terminated": "Terminated",
        "purged": 1,
    }


def test_history_timestamps_use_dotnet_precision(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "sequence")
    status = wait_status(sample_host, instance_id, showHistory="true", showHistoryOutput="true")
    stamps = [e["Timestamp"] for e in status["historyEvents"]]
    assert all(s.endswith("Z") and len(s.split(".")[-1]) <= 8 for s in stamps)
    assert [parse_time(s) for s in stamps] == sorted(parse_time(s) for s in stamps)
    assert [e["EventType"] for e in status["historyEvents"]] == [
        "ExecutionStarted", "TaskCompleted", "TaskCompleted", "ExecutionCompleted"
    ]  # fmt: skip
    assert status["historyEvents"][1]["FunctionName"] == "hello"
    assert status["historyEvents"][1]["Result"] == '"Hello Tokyo!"'


def test_sub_orchestration_retries_follow_the_retry_interceptor(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "parent_retry")
    caught = wait_status(sample_host, instance_id)["output"]["caught"]
    assert caught.startswith("Orchestrator function 'failing_child' failed: child broke")
    rows = history_rows(azurite, sample_host, instance_id)
    decisive = decisions_and_completions(rows)
    assert decisive == [
        ("SubOrchestrationInstanceCreated", 0, None), ("SubOrchestrationInstanceFailed", -1, 0),
        ("TimerCreated", 1, None), ("TimerFired", -1, 1),
        ("SubOrchestrationInstanceCreated", 2, None), ("SubOrchestrationInstanceFailed", -1, 2),
        ("TimerCreated", 3, None), ("TimerFired", -1, 3), ("ExecutionCompleted", 4, None),
    ]  # fmt: skip
    execution_id = rows[1]["ExecutionId"]
    children = [r["InstanceId"] for r in rows if r["EventType"] == "SubOrchestrationInstanceCreated"]
    assert children == [f"{execution_id}:0", f"{execution_id}:2"]  # each attempt is a new child instance


def test_task_any_completes_on_the_first_child(azurite: Azurite, sample_host: DevHost) -> None:
    instance_id = start_orchestration(sample_host, "event_or_timeout")
    wait_until(
        lambda: sample_host.client.get(f"{MANAGEMENT}/instances/{instance_id}").json()["runtimeStatus"] == "Running"
    )
    sample_host.client.post(f"{MANAGEMENT}/instances/{instance_id}/raiseEvent/go", json=1)
    assert wait_status(sample_host, instance_id)["output"] == "event"
    rows = history_rows(azurite, sample_host, instance_id)
    assert [r["EventType"] for r in rows if r["EventType"] in ("TimerCreated", "EventRaised", "TimerFired")] == [
        "TimerCreated",
        "EventRaised",
    ]  # fmt: skip  (the 30 s timer was cancelled: the instance finished without waiting for it)
