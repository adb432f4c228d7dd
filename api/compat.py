"""The reference design's routes (FastAPI + Celery), so that its clients work unchanged.

POST /api/tasks takes the reference's body and answers 202 `{"task_id", "status": "Processing"}` with a
Location; GET /api/tasks/{task_id} answers `{"task_id", "status", "result"}` with Celery's state names, and
GET /api/tasks/{task_id}/stream sends the same document as Server-Sent Events whenever it changes, ending
with the ready state, as the reference's stream does. They go through the jobs layer as POST /api/jobs and
GET /api/jobs/{id} do (`jobs.compat` maps the shapes); a task id is a job id, so /api/jobs/{task_id} shows
the same job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import azure.durable_functions as df
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

from api.app import blueprint
from api.http import ENDS_STREAM, ROUTE_METHODS, dispatch, header, json_response, read_json, route_param
from api.links import base_url
from api.resource import checked_job_id, retry_after_seconds
from jobs import compat, query, recovery
from jobs.errors import InvalidRequest
from jobs.requests import check_idempotency_key
from jobs.submit import request_from_body, submit_job
from shared.settings import get_settings
from shared.telemetry import log_event
from storage.clients import StorageClients, storage_clients

STREAM_POLL_SECONDS = 1.0
"""How often a stream reads the task, as the reference's stream loop does (`asyncio.sleep(1)`)."""
STREAM_HEARTBEAT_SECONDS = 15.0
"""A `: ping` comment after this long without an event, so gateways do not cut a quiet stream."""
STREAM_MAX_SECONDS = 90.0
"""A stream ends before gateway timeouts (120 s by default, docs/timeouts.md) and the 230 s the Functions
front end allows a response; a client that still waits reads the task again."""
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def task_url(base: str, task_id: str) -> str:
    """The task's URL (its Location)."""
    return f"{base}/api/tasks/{task_id}"


@blueprint.route(route="tasks", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def tasks_collection(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST: submit a task in the reference's shape."""
    return await dispatch(req, {"POST": lambda: submit_task(req, client)})


@blueprint.route(route="tasks/{task_id}", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def task_item(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET: the task's status in the reference's shape."""
    return await dispatch(req, {"GET": lambda: get_task(req, client)})


@blueprint.route(route="tasks/{task_id}/stream", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def task_stream(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET: the task's status document as Server-Sent Events until it is ready."""
    return await dispatch(req, {"GET": lambda: stream_task(req, client)})


async def submit_task(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST /api/tasks: 202 {"task_id", "status": "Processing"} + Location + Retry-After."""
    settings = get_settings()
    key = check_idempotency_key(header(req, "idempotency-key"))
    body = compat.submission(await read_json(req, settings.max_json_body_bytes))
    clients = await storage_clients(settings)
    try:
        request = await request_from_body(body, settings=settings, clients=clients, idempotency_key=key, source="http")
    except InvalidRequest as error:
        raise compat.as_task_fields(error) from None
    submitted = await submit_job(client, clients, request, answer_before_start=True)
    task_id = submitted.record["job_id"]
    headers = {
        "Location": task_url(base_url(req, settings), task_id),
        "Retry-After": str(retry_after_seconds(submitted.record)),
    }
    return json_response({"task_id": task_id, "status": "Processing"}, 202, headers)


async def get_task(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET /api/tasks/{task_id}: always 200 while the task exists, as the reference answers."""
    settings = get_settings()
    task_id = checked_job_id(route_param(req, "task_id"))
    clients = await storage_clients(settings)
    view = await query.load_job(client, clients.jobs, task_id, pending_from_row=True)
    await recovery.start_if_stranded(client, clients, view)
    body = await compat.task_status(clients, view)
    headers = {} if body["status"] in compat.READY_STATES else {"Retry-After": str(retry_after_seconds(view.record))}
    return json_response(body, 200, headers)


async def stream_task(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET /api/tasks/{task_id}/stream: 404 before the stream for an unknown task, else `text/event-stream`."""
    settings = get_settings()
    task_id = checked_job_id(route_param(req, "task_id"))
    clients = await storage_clients(settings)
    first = await compat.task_status(clients, await query.load_job(client, clients.jobs, task_id))
    return StreamingResponse(
        task_events(client, clients, task_id, first), media_type="text/event-stream", headers=STREAM_HEADERS
    )


async def task_events(
    client: df.DurableOrchestrationClient, clients: StorageClients, task_id: str, first: dict[str, Any]
) -> AsyncIterator[bytes]:
    """`data: <status document>` whenever it changes, heartbeats while it does not; ends once it is ready."""
    status = first
    sent: dict[str, Any] | None = None
    started = last_write = time.monotonic()
    while True:
        now = time.monotonic()
        if status != sent:
            # json.dumps escapes newlines inside strings, so the data is one line as SSE requires.
            yield f"data: {json.dumps(status, separators=(',', ':'))}\n\n".encode()
            sent, last_write = status, now
        elif now - last_write >= STREAM_HEARTBEAT_SECONDS:
            yield b": ping\n\n"
            last_write = now
        if status["status"] in compat.READY_STATES or now - started >= STREAM_MAX_SECONDS:
            return
        await asyncio.sleep(STREAM_POLL_SECONDS)
        try:
            status = await compat.task_status(clients, await query.load_job(client, clients.jobs, task_id))
        except ENDS_STREAM as exc:  # the status line is sent: end the stream, the client reads again
            log_event("api.stream_ended", level=logging.WARNING, route="tasks/stream", error=type(exc).__name__)
            return
