"""The one client factory: every Azure Storage client the app uses is made here.

Sync clients serve activities and timers (they run on worker threads); async clients serve the
HTTP and queue triggers. Against Azurite the app uses a connection string; in Azure, service URIs
and a managed identity (never an account key).

The async clients are reused across invocations: opening a client per request costs a connection
pool and a TLS handshake in Azure, which the submit latency budget (p50 <= 30 ms) cannot afford; so
each event loop keeps one set. Locally (a connection string) the containers, queues and tables are
created on first use; in Azure the infrastructure creates them.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.data.tables.aio import TableClient as AsyncTableClient
from azure.data.tables.aio import TableServiceClient as AsyncTableServiceClient
from azure.storage.blob import BlobServiceClient, CorsRule
from azure.storage.blob import ExponentialRetry as BlobRetry
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from azure.storage.queue import ExponentialRetry as QueueRetry
from azure.storage.queue import QueueServiceClient
from azure.storage.queue.aio import QueueServiceClient as AsyncQueueServiceClient

from shared.settings import Settings
from storage.names import CONTAINERS, DEADLETTERS_TABLE, JOBS_TABLE, QUEUES, TABLES

# Azurite's well-known development account (public, documented, not a secret).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_CONNECTION_STRING = (
    f"DefaultEndpointsProtocol=http;AccountName={_DEV_ACCOUNT};AccountKey={_DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{_DEV_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{_DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{_DEV_ACCOUNT};"
)


# --- retries and timeouts, chosen deliberately --------------------------------------------------------
#
# The SDK defaults (a 15 s first backoff, three to ten retries, 20 s connect and 60+ s read timeouts)
# hold a request for minutes while storage is away. A client waiting on the API wants a 503 and a
# Retry-After within about two seconds, and retries the request itself; a background step (activity,
# timer) has no one waiting and is retried by its orchestration, so it may wait longer.

INTERACTIVE_CONNECT_SECONDS = 1.0
"""Connect timeout of the API's and the intake's clients: a reachable storage account connects in ms."""
INTERACTIVE_READ_SECONDS = 20.0
"""Read timeout of the API's clients: long enough for a 4 MiB block of a 100 MB raw submit."""
BACKGROUND_CONNECT_SECONDS = 10.0
BACKGROUND_READ_SECONDS = 60.0

SINGLE_GET_BYTES = 32 * 1024 * 1024
"""The SDK's max_single_get_size (its default): a blob download up to this size is one GET."""


# Storage is reached directly (or over the VNet's private endpoints), never through an environment proxy
# or with ~/.netrc credentials; with the transports' default (requests' and aiohttp's trust_env) every
# request looks both up again: two stat calls and the proxy variables per storage request, about 5 % of an
# activity's samples (docs/benchmarks.md, "devhost's own cost per job").
_TRANSPORT: dict[str, Any] = {"use_env_settings": False}


def _interactive_options(service: str) -> dict[str, Any]:
    """One immediate retry (a dropped pooled connection), no backoff: an outage answers 503 within ~2 s."""
    timeouts: dict[str, Any] = {
        **_TRANSPORT,
        "connection_timeout": INTERACTIVE_CONNECT_SECONDS,
        "read_timeout": INTERACTIVE_READ_SECONDS,
    }
    if service == "table":
        return {**timeouts, "retry_total": 1, "retry_backoff_factor": 0.0}
    # The async clients build their own (async) ExponentialRetry from these: no backoff before the retry.
    return {**timeouts, "retry_total": 1, "initial_backoff": 0, "increment_base": 0, "random_jitter_range": 0}


def _background_options(service: str) -> dict[str, Any]:
    """Five retries over about a minute (2+2, 2+4, 2+8, ... s): a storage restart is ridden out."""
    timeouts: dict[str, Any] = {
        **_TRANSPORT,
        "connection_timeout": BACKGROUND_CONNECT_SECONDS,
        "read_timeout": BACKGROUND_READ_SECONDS,
    }
    if service == "table":
        return {**timeouts, "retry_total": 5, "retry_backoff_factor": 1.0, "retry_backoff_max": 30}
    retry = BlobRetry if service == "blob" else QueueRetry
    options = {
        **timeouts,
        "retry_policy": retry(initial_backoff=2, increment_base=2, retry_total=5, random_jitter_range=1),
    }
    if service == "blob":
        # `chunks()` then hands a download of one GET over as the bytes it arrived in, not cut into copies of
        # the default 4 MiB: job inputs are streamed in pieces of 8-16 MiB (activities.blob_source).
        options.update(max_single_get_size=SINGLE_GET_BYTES, max_chunk_get_size=SINGLE_GET_BYTES)
    return options


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


Service = TypeVar("Service")
_ENDPOINTS = {"blob": "blob_service_uri", "queue": "queue_service_uri", "table": "table_service_uri"}


def _service(
    cls: type[Service], settings: Settings, service: str, *, interactive: bool, sync: bool | None = None
) -> Service:
    """A client of `service` ("blob", "queue", "table"): from the connection string locally, else from the
    service URI with a managed identity; with the interactive or the background retries and timeouts.
    Interactive clients are async unless `sync` says otherwise."""
    options = _interactive_options(service) if interactive else _background_options(service)
    factory: Any = cls
    conn = connection_string(settings)
    if conn:
        return cast(Service, factory.from_connection_string(conn, **options))
    uri = getattr(settings, _ENDPOINTS[service])
    if not uri:
        name = f"{service}ServiceUri"
        raise RuntimeError(f"storage is not configured: set AzureWebJobsStorage or AzureWebJobsStorage__{name}")
    is_async = interactive if sync is None else not sync
    credential = _async_credential(settings) if is_async else _credential(settings)
    return cast(Service, factory(uri, credential=credential, **options))


# --- sync: activities and timers ------------------------------------------------------------------


def blob_service(settings: Settings) -> BlobServiceClient:
    """A Blob service client."""
    return _service(BlobServiceClient, settings, "blob", interactive=False)


def queue_service(settings: Settings) -> QueueServiceClient:
    """A Queue service client."""
    return _service(QueueServiceClient, settings, "queue", interactive=False)


def table_service(settings: Settings) -> TableServiceClient:
    """A Table service client."""
    return _service(TableServiceClient, settings, "table", interactive=False)


def interactive_table_service(settings: Settings) -> TableServiceClient:
    """A sync Table client with the API's fail-fast retries: for table calls a request makes in a thread
    (the admission ledger), so an outage still answers 503 within ~2 s."""
    return _service(TableServiceClient, settings, "table", interactive=True, sync=True)


# --- async: HTTP and queue triggers, one set per event loop -------------------------------------------


@dataclass
class StorageClients:
    """One event loop's async clients: the three services and the two tables the app keeps."""

    blobs: AsyncBlobServiceClient
    queues: AsyncQueueServiceClient
    tables: AsyncTableServiceClient
    jobs: AsyncTableClient
    dead_letters: AsyncTableClient
    settings: Settings  # what they were made from (for the sync clients some steps run in a thread)
    ready: bool = False


UPLOAD_CORS_RULE = CorsRule(
    ["*"],
    ["PUT"],
    allowed_headers=["content-type", "x-ms-blob-type", "x-ms-version", "x-ms-client-request-id"],
    exposed_headers=["etag"],
    max_age_in_seconds=600,
)
"""Browser uploads to the valet-key URL, locally (any origin: Azurite on loopback holds nothing to protect)."""

_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StorageClients] = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _ensure_resources_async(clients: StorageClients) -> None:
    for container in CONTAINERS:
        try:
            await clients.blobs.create_container(container)
        except ResourceExistsError:
            pass
    for queue in QUEUES:
        try:
            await clients.queues.create_queue(queue)
        except ResourceExistsError:
            pass
    for table in TABLES:
        try:
            await clients.tables.create_table(table)
        except ResourceExistsError:
            pass
    # The dashboard PUTs uploads from the browser straight to the SAS URL (another origin): Blob storage
    # answers the preflight only under a CORS rule. In Azure infra/bicep/modules/storage.bicep sets it.
    await clients.blobs.set_service_properties(cors=[UPLOAD_CORS_RULE])


async def storage_clients(settings: Settings) -> StorageClients:
    """This event loop's clients (created, and locally the resources ensured, once)."""
    loop = asyncio.get_running_loop()
    clients = _by_loop.get(loop)
    if clients is not None and clients.ready:
        return clients
    lock = _locks.setdefault(loop, asyncio.Lock())
    async with lock:
        clients = _by_loop.get(loop)
        if clients is None:
            tables = _service(AsyncTableServiceClient, settings, "table", interactive=True)
            clients = StorageClients(
                blobs=_service(AsyncBlobServiceClient, settings, "blob", interactive=True),
                queues=_service(AsyncQueueServiceClient, settings, "queue", interactive=True),
                tables=tables,
                jobs=tables.get_table_client(JOBS_TABLE),
                dead_letters=tables.get_table_client(DEADLETTERS_TABLE),
                settings=settings,
            )
            _by_loop[loop] = clients
        if not clients.ready:
            if connection_string(settings):
                await _ensure_resources_async(clients)
            clients.ready = True
    return clients


async def close_storage_clients() -> None:
    """Close this event loop's clients (for short-lived loops such as scripts and tests)."""
    clients = _by_loop.pop(asyncio.get_running_loop(), None)
    if clients is not None:
        await clients.jobs.close()
        await clients.dead_letters.close()
        await clients.tables.close()
        await clients.blobs.close()
        await clients.queues.close()
