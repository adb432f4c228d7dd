"""Health: storage reachability, queue depths, job counts and webhook breakers, answered within a few seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError
from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import OUTAGE_RETRY_AFTER_SECONDS, ROUTE_METHODS, dispatch, json_response
from jobs.query import job_counts
from shared.settings import get_settings
from storage import breakers
from storage import jobs as job_store
from storage.clients import StorageClients, storage_clients
from storage.names import QUEUES, WEBHOOK_BREAKERS_TABLE

STORAGE_TIMEOUT_SECONDS = 1.5  # a probe must answer even when storage hangs (503 within ~2 s)
DETAIL_TIMEOUT_SECONDS = 3.0
DETAILS_TTL_SECONDS = 5.0  # an anonymous route: frequent probes reuse the last counts instead of rescanning

_cached: tuple[float, dict[str, Any]] | None = None


async def _queue_depth(clients: StorageClients, name: str) -> int | None:
    try:
        properties = await clients.queues.get_queue_client(name).get_queue_properties()
    except AzureError:
        return None
    return int(properties.approximate_message_count or 0)


async def _details(clients: StorageClients) -> dict[str, Any]:
    depths = await asyncio.gather(*(_queue_depth(clients, name) for name in QUEUES))
    counts, truncated = await job_counts(clients)
    return {
        "queues": dict(zip(QUEUES, depths, strict=True)),
        "jobs": counts,
        "jobs_counted_up_to": job_store.COUNT_CAP if truncated else None,
        # Webhook circuit breakers that are open, half-open or counting failures, by callback host.
        "webhook_breakers": await breakers.list_breakers(clients.tables.get_table_client(WEBHOOK_BREAKERS_TABLE)),
    }


async def _storage_clients() -> StorageClients:
    clients = await storage_clients(get_settings())
    await clients.blobs.get_service_properties()
    return clients


@blueprint.route(route="health", methods=ROUTE_METHODS, auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: Request) -> Response:
    """GET: 200 when storage answers (with queue depths and job counts); 503 when it does not."""
    return await dispatch(req, {"GET": _health})


async def _health() -> Response:
    try:
        clients = await asyncio.wait_for(_storage_clients(), STORAGE_TIMEOUT_SECONDS)
    except (AzureError, TimeoutError) as exc:
        unavailable = {"status": "unavailable", "storage": type(exc).__name__}
        return json_response(unavailable, 503, headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)})
    body: dict[str, Any] = {"status": "ok", "storage": "ok"}
    global _cached
    now = time.monotonic()
    if _cached is not None and now - _cached[0] < DETAILS_TTL_SECONDS:
        body.update(_cached[1])
        return json_response(body, 200)
    try:
        details = await asyncio.wait_for(_details(clients), DETAIL_TIMEOUT_SECONDS)
    except (AzureError, TimeoutError) as exc:
        body["details_error"] = type(exc).__name__
    else:
        _cached = (now, details)
        body.update(details)
    return json_response(body, 200)
