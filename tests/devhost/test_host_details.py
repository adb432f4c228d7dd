"""Smaller places where devhost now behaves as the real host: failure texts, credentials in errors, start
of an active id, the custom status limit, bulk purge, terminating a Pending instance."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost, unique_hub
from tests.devhost.conftest import MANAGEMENT, SAMPLE_APP, sample_env, start_orchestration, wait_status


def test_a_timed_out_activity_fails_without_an_exception_type(azurite: Azurite, tmp_path: Path) -> None:
    """TaskActivityShim.RunAsync: a FunctionTimeoutError reports `exceptionToReport.Message`, the host's
    FunctionTimeoutException text, which (unlike a worker's RpcException) carries no `Type: ` prefix."""
    app = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, app)
    host_json = json.loads((app / "host.json").read_text())
    host_json["functionTimeout"] = "00:00:02"
    (app / "host.json").write_text(json.dumps(host_json))
    host = DevHost(azurite.connection_string, env=sample_env(), args=["--app-dir", str(app)]).start()
    try:
        output = wait_status(host, start_orchestration(host, "times_out", 30))["output"].rstrip()
    finally:
        host.stop(timeout=20)
    assert output == (
        "Activity function 'overrun' failed: Timeout value of 00:00:02 was exceeded by function: Functions.overrun"
    )


def test_credentials_in_worker_errors_are_hidden(sample_host: DevHost) -> None:
    """The host's RpcException runs the worker's message through Sanitizer.Sanitize (azure-functions-host,
    src/WebJobs.Script/Workers/Rpc/RpcException.cs and Sanitizer.cs): from a credential token such as
    `AccountKey=` or `password=` up to the next quote or `<`, the text becomes `[Hidden Credential]`."""
    activity = wait_status(sample_host, start_orchestration(sample_host, "leaky_activity", "AccountKey=s3cr3t;x"))
    assert activity["runtimeStatus"] == "Failed"
    assert "s3cr3t" not in activity["output"]  # (the input still holds it: it never went through a worker)
    assert "Activity function 'fail_always' failed: ValueError: boom [Hidden Credential]" in activity["output"]
    orchestrator = wait_status(sample_host, start_orchestration(sample_host, "leaky_orchestrator", "password=hunter2"))
    assert orchestrator["runtimeStatus"] == "Failed"
    assert "hunter2" not in orchestrator["output"]
    assert "[Hidden Credential]" in orchestrator["output"]


def test_starting_an_id_that_is_still_active_is_500(sample_host: DevHost) -> None:
    """DurableClient.StartNewAsync passes the dedupe statuses of OverridableExistingInstanceStates
    (default NonRunningStates: Running, ContinuedAsNew, Pending, Suspended); the Azure Storage provider
    throws OrchestrationAlreadyExistsException, which HttpApiHandler does not catch: 500."""
    instance_id = start_orchestration(sample_host, "wait_event")
    again = sample_host.client.post(f"{MANAGEMENT}/orchestrators/wait_event/{instance_id}")
    assert again.status_code == 500
    body = again.json()
    assert body["Message"] == "Something went wrong while processing your request"
    assert body["ExceptionMessage"].startswith("An Orchestration instance with the status ")
    assert body["ExceptionMessage"].endswith(" already exists.")


def test_the_custom_status_limit_is_17_kib_of_utf16(sample_host: DevHost) -> None:
    """MessagePayloadDataConverter.Serialize: `(int)(UTF-16 bytes / 1024.0) > 16` fails, so 16.9 KiB passes."""
    just_under = 8640  # + 2 quotes = 8642 characters = 17284 bytes of UTF-16 (16.9 KiB)
    status = wait_status(sample_host, start_orchestration(sample_host, "status_of_size", just_under))
    assert status["runtimeStatus"] == "Completed" and status["customStatus"] == "x" * just_under
    at_limit = 8702  # 8704 characters = 17408 bytes = 17 KiB
    failed = wait_status(sample_host, start_orchestration(sample_host, "status_of_size", at_limit))
    assert failed["runtimeStatus"] == "Failed"
    assert failed["output"] == (
        "Orchestrator function 'status_of_size' failed: The UTF-16 size of the JSON-serialized payload must "
        "not exceed 16 KB. The current payload size is 17 KB."
    )


def test_a_bulk_purge_without_a_status_filter_purges_every_status(sample_host: DevHost) -> None:
    """HttpApiHandler.HandleDeleteHistoryWithFiltersRequestAsync passes `runtimeStatus` only when given;
    without it the Azure Storage provider purges instances of any status, running ones too."""
    time.sleep(0.1)  # instances of earlier tests were created before `since`
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    finished = start_orchestration(sample_host, "sequence")
    wait_status(sample_host, finished)
    running = start_orchestration(sample_host, "wait_event")
    only_completed = sample_host.client.delete(
        f"{MANAGEMENT}/instances", params={"createdTimeFrom": since, "runtimeStatus": "Completed"}
    )
    assert only_completed.status_code == 200 and only_completed.json() == {"instancesDeleted": 1}
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{running}").status_code == 202
    again = start_orchestration(sample_host, "sequence")
    wait_status(sample_host, again)
    everything = sample_host.client.delete(f"{MANAGEMENT}/instances", params={"createdTimeFrom": since})
    assert everything.status_code == 200 and everything.json() == {"instancesDeleted": 2}
    assert sample_host.client.get(f"{MANAGEMENT}/instances/{running}").status_code == 404
    missing = sample_host.client.delete(f"{MANAGEMENT}/instances")
    assert missing.status_code == 400 and missing.json() == "Please provide value for 'createdTimeFrom' parameter."


def _hold_partitions(azurite: Azurite, hub: str) -> list[Any]:
    """Take every partition lease of a hub, as another (live) host would."""
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        f"{hub.lower()}-leases"
    )
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    leases = []
    for partition in range(4):
        blob = container.get_blob_client(f"default/{hub.lower()}-control-{partition:02d}")
        blob.upload_blob(b"", overwrite=True)
        lease = BlobLeaseClient(blob)
        lease.acquire(lease_duration=-1)
        leases.append(lease)
    return leases


def test_terminating_a_pending_instance_runs_its_first_episode_then_terminates(azurite: Azurite) -> None:
    """TaskOrchestrationExecutor.ExecuteCore processes the batch's events in order: ExecutionStarted runs
    the orchestrator (its actions become decisions and messages), ExecutionTerminated then completes the
    instance as Terminated (TaskOrchestrationContext.HandleExecutionTerminatedEvent)."""
    hub = unique_hub()
    leases = _hold_partitions(azurite, hub)  # the start and the terminate wait in the queue together
    host = DevHost(azurite.connection_string, env=sample_env(), args=["--app-dir", str(SAMPLE_APP)], task_hub=hub)
    try:
        host.start()
        instance_id = start_orchestration(host, "sequence")
        assert host.client.get(f"{MANAGEMENT}/instances/{instance_id}").json()["runtimeStatus"] == "Pending"
        terminate = host.client.post(f"{MANAGEMENT}/instances/{instance_id}/terminate", params={"reason": "early"})
        assert terminate.status_code == 202
        for lease in leases:
            lease.release()
        status = wait_status(host, instance_id, timeout=60)
        assert (status["runtimeStatus"], status["output"]) == ("Terminated", "early")
        history = TableClient.from_connection_string(azurite.connection_string, f"{hub}History")
        rows = sorted(
            (r for r in history.query_entities(f"PartitionKey eq '{instance_id}'") if r["RowKey"] != "sentinel"),
            key=lambda r: r["RowKey"],
        )
        assert [r["EventType"] for r in rows] == [
            "OrchestratorStarted",
            "ExecutionStarted",
            "ExecutionTerminated",
            "TaskScheduled",
            "ExecutionCompleted",
            "OrchestratorCompleted",
        ]
        assert rows[-2]["OrchestrationStatus"] == 5 and rows[-2]["EventId"] == 1
    finally:
        host.stop(timeout=20)


def test_the_host_is_starting_until_a_worker_has_imported_the_app(azurite: Azurite, tmp_path: Path) -> None:
    """ScriptHostState (Azure/azure-functions-host, src/WebJobs.Script/ScriptHostState.cs): Initialized means all
    functions are indexed, and with worker indexing they are what a worker reports after importing the app. So
    /admin/host/status says Starting while the workers import (slowly, here), and a request sent then waits for
    a worker instead of failing; Running comes once a worker has the app."""
    app = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, app)
    source = (app / "function_app.py").read_text()
    slow_import = (
        "import multiprocessing as _mp\nimport time as _time\n\n"
        "if _mp.current_process().name == 'python-worker':  # the workers' import, not the host's indexing\n"
        "    _time.sleep(4)\n\n"
    )
    (app / "function_app.py").write_text(slow_import + source)
    host = DevHost(azurite.connection_string, env=sample_env(), args=["--app-dir", str(app)]).start(wait=False)
    try:
        states: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Running" not in states:
            try:
                answer = host.client.get("/admin/host/status", timeout=1.0)
            except httpx.HTTPError:
                time.sleep(0.05)  # not listening yet
                continue
            states.append(answer.json()["state"])
            if states == ["Starting"]:
                sent = time.monotonic()
                item = host.client.get("/api/items/7")  # reaches a worker once one has the app
                waited = time.monotonic() - sent
                assert item.status_code == 200, item.text
            time.sleep(0.05)
    finally:
        host.stop(timeout=20)
    assert states[0] == "Starting", states
    assert states[-1] == "Running", states
    assert waited > 1.0, waited  # the request was held while the workers imported, not answered by a half-started host
