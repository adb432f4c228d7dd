"""Drive the job orchestration through a devhost: start it by the Durable management API, read its
status, its history (HTTP and the raw History table) and its blobs."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devhost.testing.harness import DevHost
from shared.contracts import JOB_ORCHESTRATOR, JobStart
from shared.storage import PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_input_blob_name

WEBHOOKS = "/runtime/webhooks/durabletask"
FINISHED = {"Completed", "Failed", "Terminated", "Canceled"}


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_start(
    job_id: str,
    kind: str,
    options: dict[str, Any],
    input_ref: str | None = None,
    deadline_seconds: float | None = None,
) -> JobStart:
    now = datetime.now(UTC)
    return {
        "job_id": job_id,
        "kind": kind,
        "input_ref": input_ref,
        "input_content_type": "text/csv" if input_ref else None,
        "options": options,
        "deadline_at": iso(now + timedelta(seconds=deadline_seconds)) if deadline_seconds is not None else None,
        "submitted_at": iso(now),
    }


def put_input(host: DevHost, job_id: str, data: bytes) -> str:
    """Upload a job's input blob the way the API does; returns its name."""
    name = job_input_blob_name(job_id)
    service = BlobServiceClient.from_connection_string(host.connection_string)
    container = service.get_container_client(PAYLOADS_CONTAINER)
    if not container.exists():
        container.create_container()
    container.upload_blob(name, data, overwrite=True)
    return name


def start_orchestration(host: DevHost, start: JobStart) -> None:
    response = host.client.post(f"{WEBHOOKS}/orchestrators/{JOB_ORCHESTRATOR}/{start['job_id']}", json=start)
    assert response.status_code == 202, response.text


def instance(host: DevHost, instance_id: str, history: bool = False) -> dict[str, Any]:
    params = {"showHistory": "true", "showHistoryOutput": "true"} if history else {}
    response = host.client.get(f"{WEBHOOKS}/instances/{instance_id}", params=params)
    assert response.status_code in (200, 202), response.text
    status: dict[str, Any] = response.json()
    return status


def wait_finished(host: DevHost, instance_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = instance(host, instance_id)
        if status.get("runtimeStatus") in FINISHED:
            return instance(host, instance_id, history=True)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{instance_id} still {status.get('runtimeStatus')} after {timeout} s:\n{status}")
        time.sleep(0.1)


def wait_custom_status(host: DevHost, instance_id: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = instance(host, instance_id)
        custom = status.get("customStatus")
        if isinstance(custom, dict) and predicate(custom):
            return custom
        time.sleep(0.05)
    raise TimeoutError(f"custom status of {instance_id} never matched")


def raise_cancel(host: DevHost, job_id: str) -> None:
    """Cancel as the API does: write the stop marker, then raise the cancel event."""
    from shared.contracts import CANCEL_EVENT
    from shared.storage import cancel_marker_blob_name

    service = BlobServiceClient.from_connection_string(host.connection_string)
    service.get_container_client(RESULTS_CONTAINER).upload_blob(
        cancel_marker_blob_name(job_id), b"cancelled", overwrite=True
    )
    response = host.client.post(f"{WEBHOOKS}/instances/{job_id}/raiseEvent/{CANCEL_EVENT}", json={})
    assert response.status_code == 202, response.text


def history_rows(host: DevHost, instance_id: str) -> list[dict[str, Any]]:
    """The raw History table rows of one instance, in order (current execution only)."""
    service = TableServiceClient.from_connection_string(host.connection_string)
    table = service.get_table_client(f"{host.task_hub}History")
    rows = [dict(row) for row in table.query_entities(f"PartitionKey eq '{instance_id}'")]
    sentinel = next((row for row in rows if row["RowKey"] == "sentinel"), None)
    execution = sentinel.get("ExecutionId") if sentinel else None
    events = [row for row in rows if row["RowKey"] != "sentinel" and row.get("ExecutionId", execution) == execution]
    return sorted(events, key=lambda row: str(row["RowKey"]))


def history_bytes(host: DevHost, instance_prefix: str) -> int:
    """Bytes of the History table rows whose PartitionKey starts with the prefix (a job and its batches)."""
    service = TableServiceClient.from_connection_string(host.connection_string)
    table = service.get_table_client(f"{host.task_hub}History")
    query = f"PartitionKey ge '{instance_prefix}' and PartitionKey lt '{instance_prefix}\uffff'"
    total = 0
    for row in table.query_entities(query):
        total += len(json.dumps({key: str(value) for key, value in dict(row).items()}).encode())
    return total


def list_blobs(host: DevHost, container: str, prefix: str) -> list[str]:
    service = BlobServiceClient.from_connection_string(host.connection_string)
    client = service.get_container_client(container)
    if not client.exists():
        return []
    return [blob.name for blob in client.list_blobs(name_starts_with=prefix)]


def read_json_blob(host: DevHost, container: str, name: str) -> Any:
    service = BlobServiceClient.from_connection_string(host.connection_string)
    return json.loads(service.get_blob_client(container, name).download_blob().readall())
