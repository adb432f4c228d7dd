"""Storage names and clients: one place for every container, queue and table the app uses."""

from __future__ import annotations

from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables import TableServiceClient
from azure.data.tables.aio import TableServiceClient as AsyncTableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from azure.storage.queue import QueueServiceClient
from azure.storage.queue.aio import QueueServiceClient as AsyncQueueServiceClient

from shared.settings import Settings

# Containers
PAYLOADS_CONTAINER = "payloads"  # uploads/{upload_id}, jobs/{job_id}/input
RESULTS_CONTAINER = "results"  # jobs/{job_id}/partials/{n}, jobs/{job_id}/result.json, markers

# Queues
INBOX_QUEUE = "jobs-inbox"
INBOX_POISON_QUEUE = "jobs-inbox-poison"
DEADLETTER_QUEUE = "jobs-deadletter"

# Tables
JOBS_TABLE = "Jobs"
DEADLETTERS_TABLE = "DeadLetters"

CONTAINERS = (PAYLOADS_CONTAINER, RESULTS_CONTAINER)
QUEUES = (INBOX_QUEUE, INBOX_POISON_QUEUE, DEADLETTER_QUEUE)
TABLES = (JOBS_TABLE, DEADLETTERS_TABLE)

# Azurite's well-known development account (public, documented, not a secret).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={_DEV_ACCOUNT};AccountKey={_DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{_DEV_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{_DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{_DEV_ACCOUNT};"
)


def upload_blob_name(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def job_input_blob_name(job_id: str) -> str:
    return f"jobs/{job_id}/input"


def partial_blob_name(job_id: str, chunk_index: int) -> str:
    return f"jobs/{job_id}/partials/{chunk_index:06d}"


def result_blob_name(job_id: str) -> str:
    return f"jobs/{job_id}/result.json"


def cancel_marker_blob_name(job_id: str) -> str:
    return f"jobs/{job_id}/cancel"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def connection_string(settings: Settings) -> str | None:
    """The connection string to use, with `UseDevelopmentStorage=true` expanded for Azurite."""
    value = settings.storage_connection_string
    if value and value.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
        return DEVELOPMENT_CONNECTION_STRING
    return value or None


def _credential(settings: Settings) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if settings.storage_client_id:
        return ManagedIdentityCredential(client_id=settings.storage_client_id)
    return DefaultAzureCredential()


def _async_credential(settings: Settings) -> AsyncTokenCredential:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if settings.storage_client_id:
        return ManagedIdentityCredential(client_id=settings.storage_client_id)
    return DefaultAzureCredential()


def _require(uri: str | None, name: str) -> str:
    if not uri:
        raise RuntimeError(f"storage is not configured: set AzureWebJobsStorage or AzureWebJobsStorage__{name}")
    return uri


def blob_service(settings: Settings) -> BlobServiceClient:
    conn = connection_string(settings)
    if conn:
        return BlobServiceClient.from_connection_string(conn)
    return BlobServiceClient(_require(settings.blob_service_uri, "blobServiceUri"), credential=_credential(settings))


def queue_service(settings: Settings) -> QueueServiceClient:
    conn = connection_string(settings)
    if conn:
        return QueueServiceClient.from_connection_string(conn)
    return QueueServiceClient(_require(settings.queue_service_uri, "queueServiceUri"), credential=_credential(settings))


def table_service(settings: Settings) -> TableServiceClient:
    conn = connection_string(settings)
    if conn:
        return TableServiceClient.from_connection_string(conn)
    return TableServiceClient(
        endpoint=_require(settings.table_service_uri, "tableServiceUri"), credential=_credential(settings)
    )


def async_blob_service(settings: Settings) -> AsyncBlobServiceClient:
    conn = connection_string(settings)
    if conn:
        return AsyncBlobServiceClient.from_connection_string(conn)
    return AsyncBlobServiceClient(
        _require(settings.blob_service_uri, "blobServiceUri"), credential=_async_credential(settings)
    )


def async_queue_service(settings: Settings) -> AsyncQueueServiceClient:
    conn = connection_string(settings)
    if conn:
        return AsyncQueueServiceClient.from_connection_string(conn)
    return AsyncQueueServiceClient(
        _require(settings.queue_service_uri, "queueServiceUri"), credential=_async_credential(settings)
    )


def async_table_service(settings: Settings) -> AsyncTableServiceClient:
    conn = connection_string(settings)
    if conn:
        return AsyncTableServiceClient.from_connection_string(conn)
    return AsyncTableServiceClient(
        endpoint=_require(settings.table_service_uri, "tableServiceUri"), credential=_async_credential(settings)
    )
