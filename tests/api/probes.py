"""Look at what the app stored and started, straight from Azurite and the Durable management API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.testing.harness import DevHost
from storage.names import JOBS_TABLE, PAYLOADS_CONTAINER

FUNCTION_KEY = "local-function-key"  # local.settings.sample.json DevHost.FunctionKeys.default
SYSTEM_KEY = "local-system-key"


def count_blobs(conn: str, container: str = PAYLOADS_CONTAINER, prefix: str | None = None) -> int:
    with BlobServiceClient.from_connection_string(conn) as service:
        try:
            return sum(1 for _ in service.get_container_client(container).list_blobs(name_starts_with=prefix))
        except ResourceNotFoundError:
            return 0


def count_job_rows(conn: str) -> int:
    """Job and index rows in the Jobs table (uploads and the admission ledger excluded)."""
    with TableServiceClient.from_connection_string(conn) as service:
        try:
            rows = service.get_table_client(JOBS_TABLE).query_entities(
                "PartitionKey ne 'uploads' and (PartitionKey lt 'admission-' or PartitionKey ge 'admission.')",
                select=["RowKey"],
            )
            return sum(1 for _ in rows)
        except ResourceNotFoundError:
            return 0


def instances(host: DevHost, **query: str) -> list[dict[str, Any]]:
    """Every orchestration instance of the host's task hub (Durable's HTTP management API)."""
    params = {"code": SYSTEM_KEY, **query}
    response = host.client.get("/runtime/webhooks/durabletask/instances", params=params)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


def footprint(host: DevHost, conn: str) -> tuple[int, int, int]:
    """What a request could leave behind: payload blobs, job rows, orchestration instances."""
    return count_blobs(conn), count_job_rows(conn), len(instances(host))


def queue_messages(conn: str, queue: str) -> int:
    with QueueServiceClient.from_connection_string(conn) as service:
        try:
            return int(service.get_queue_client(queue).get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0


def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """The first truthy value of check() within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
