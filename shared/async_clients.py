"""Async storage clients for the HTTP and queue triggers, reused across invocations.

Opening a client per request costs a connection pool and a TLS handshake in Azure, which the submit
latency budget (p50 <= 30 ms) cannot afford; so each event loop keeps one set. Locally (a connection
string) the containers, queues and tables the API uses are created on first use; in Azure the
infrastructure creates them.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from shared.settings import Settings
from shared.storage import (
    CONTAINERS,
    DEADLETTERS_TABLE,
    JOBS_TABLE,
    QUEUES,
    TABLES,
    async_blob_service,
    async_queue_service,
    async_table_service,
    connection_string,
)


@dataclass
class StorageClients:
    blobs: BlobServiceClient
    queues: QueueServiceClient
    tables: TableServiceClient
    jobs: TableClient
    dead_letters: TableClient
    ready: bool = False


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StorageClients] = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _ensure_resources(clients: StorageClients) -> None:
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
            tables = async_table_service(settings)
            clients = StorageClients(
                blobs=async_blob_service(settings),
                queues=async_queue_service(settings),
                tables=tables,
                jobs=tables.get_table_client(JOBS_TABLE),
                dead_letters=tables.get_table_client(DEADLETTERS_TABLE),
            )
            _by_loop[loop] = clients
        if not clients.ready:
            if connection_string(settings):
                await _ensure_resources(clients)
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
