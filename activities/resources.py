"""What every step reads and writes through: the cached blob containers, the job kind, write-once blobs.

Clients are cached per Settings (one per worker), so a chunk does not build a client per call. Locally
(a connection string: Azurite) the steps also create the containers, queues and tables they use; in
Azure the infrastructure does.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient, ContentSettings

from kinds import get_kind
from kinds.base import JobKind
from shared.failures import NonRetryableError
from shared.settings import Settings
from storage.clients import blob_service, connection_string, queue_service, table_service
from storage.names import (
    CONTAINERS,
    PAYLOADS_CONTAINER,
    QUEUES,
    RESULTS_CONTAINER,
    TABLES,
    job_prefix,
    result_blob_name,
    stop_marker_blob_name,
)

JSON_CONTENT_TYPE = "application/json"
"""Content type of every blob the steps write (plan, partials, result, outcome)."""


@lru_cache(maxsize=4)
def _containers(settings: Settings) -> tuple[ContainerClient, ContainerClient]:
    service = blob_service(settings)
    return service.get_container_client(PAYLOADS_CONTAINER), service.get_container_client(RESULTS_CONTAINER)


def payloads(settings: Settings) -> ContainerClient:
    """The payloads container (job inputs, uploads)."""
    return _containers(settings)[0]


def results(settings: Settings) -> ContainerClient:
    """The results container (plans, partials, results, markers)."""
    return _containers(settings)[1]


def job_kind(settings: Settings, name: str) -> JobKind:
    """The kind named `name`; an unknown kind is non-retryable."""
    kind = get_kind(name, simulate_enabled=settings.enable_simulate_kind)
    if kind is None:
        raise NonRetryableError("unknown_kind", f"unknown job kind {name!r}")
    return kind


def write_once(container: ContainerClient, name: str, body: bytes, content_type: str = JSON_CONTENT_TYPE) -> bool:
    """Create a blob unless it exists (then the first write wins); True if this call wrote it."""
    try:
        container.get_blob_client(name).upload_blob(
            body, overwrite=False, content_settings=ContentSettings(content_type=content_type)
        )
    except ResourceExistsError:
        return False
    return True


def plan_blob_name(job_id: str) -> str:
    """Name of the job's plan blob in the results container."""
    return f"{job_prefix(job_id)}plan.json"


def job_has_ended(container: ContainerClient, job_id: str) -> bool:
    """Whether the job got past its work: its result exists (merged) or its stop marker does (stopped).

    A step redelivered after a later step ran (at-least-once delivery) asks this before failing on a
    missing plan, so it returns quietly instead of failing, or of writing outputs nothing will read.
    """
    return any(
        container.get_blob_client(name).exists() for name in (result_blob_name(job_id), stop_marker_blob_name(job_id))
    )


def upload_json(container: ContainerClient, name: str, document: Any, metadata: dict[str, str] | None = None) -> None:
    """Write (or overwrite) a JSON blob."""
    upload_json_text(container, name, json.dumps(document), metadata)


def upload_json_text(container: ContainerClient, name: str, text: str, metadata: dict[str, str] | None = None) -> None:
    """Write (or overwrite) a blob of JSON already serialized."""
    container.get_blob_client(name).upload_blob(
        text.encode(),
        overwrite=True,
        metadata=metadata,
        content_settings=ContentSettings(content_type=JSON_CONTENT_TYPE),
    )


@lru_cache(maxsize=4)
def ensure_local_resources(settings: Settings) -> None:
    """Locally (a connection string: Azurite) create what the steps write to; in Azure the infrastructure does."""
    if not connection_string(settings):
        return
    for container in CONTAINERS:
        try:
            blob_service(settings).create_container(container)
        except ResourceExistsError:
            pass
    for queue in QUEUES:
        try:
            queue_service(settings).create_queue(queue)
        except ResourceExistsError:
            pass
    for table in TABLES:
        try:
            table_service(settings).create_table(table)
        except ResourceExistsError:
            pass
