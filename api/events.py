"""GET /api/jobs/{id}/events: the job's events as Server-Sent Events (text/event-stream), streamed.

`jobs.events` decides what to send and when; this module writes it: one frame per event (`id`, `event`,
`data` as one line of JSON), `: ping` comments as heartbeats, and a `retry` hint first. The response is an
HTTP stream (`azurefunctions-extensions-http-fastapi`): the host passes each frame on as it is written.
When the client goes away the server cancels the body, and with it the feed's polling.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import azure.durable_functions as df
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

from api.app import blueprint
from api.http import ENDS_STREAM, ROUTE_METHODS, dispatch, header, is_decimal, route_param
from api.links import base_url
from api.problems import Problem
from api.resource import checked_job_id, view_resource
from jobs import events, recovery
from jobs.errors import field_error
from jobs.events import FeedTiming, Heartbeat, JobEvent
from jobs.query import JobView
from shared.settings import get_settings
from shared.telemetry import log_event
from storage.clients import storage_clients

EVENT_STREAM = "text/event-stream"
STREAM_HEADERS: Mapping[str, str] = {
    "Content-Type": f"{EVENT_STREAM}; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies that buffer responses (nginx and its kin) pass events on at once
}
HEARTBEAT_FRAME = b": ping\n\n"
MAX_EVENT_ID = 10**15


def last_event_id(value: str | None) -> int | None:
    """The Last-Event-ID a reconnecting client sends: one of our ids (decimal), else 400."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not is_decimal(text) or int(text) > MAX_EVENT_ID:
        raise Problem(
            400,
            "Last-Event-ID is not an event id of this stream",
            errors=[field_error("Last-Event-ID", "the id of an event this stream sent (a decimal integer)")],
        )
    return int(text)


def state_data(view: JobView) -> dict[str, Any]:
    """The data of a status or progress event: where the job is."""
    state = view.state
    return {
        "id": view.record["job_id"],
        "status": state.status.value,
        "phase": state.phase,
        "progress": {"completed": state.completed, "total": state.total, "percent": state.percent},
        "updated_at": view.updated_at,
    }


def event_frame(event: JobEvent, base: str) -> bytes:
    """One SSE event; a terminal event carries the job resource as GET /api/jobs/{id} gives it."""
    data = view_resource(event.view, base) if event.terminal else state_data(event.view)
    # json.dumps escapes newlines inside strings, so the data is one line as SSE requires.
    return f"id: {event.id}\nevent: {event.name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def retry_frame(seconds: float) -> bytes:
    """The reconnection delay the client should use (a frame with only a retry field dispatches no event)."""
    return f"retry: {max(1, round(seconds * 1000))}\n\n".encode()


async def event_stream(
    feed: AsyncIterator[JobEvent | Heartbeat], base: str, retry_seconds: float, route: str
) -> AsyncIterator[bytes]:
    """The stream body: the retry hint, then each event or heartbeat. A read that fails ends the stream
    (the status line is sent already); the client reconnects with Last-Event-ID and loses nothing."""
    yield retry_frame(retry_seconds)
    try:
        async for item in feed:
            yield HEARTBEAT_FRAME if isinstance(item, Heartbeat) else event_frame(item, base)
    except ENDS_STREAM as exc:
        log_event("api.stream_ended", level=logging.WARNING, route=route, error=type(exc).__name__)


@blueprint.route(route="jobs/{job_id}/events", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def job_events(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET: the job's status and progress as Server-Sent Events, until it finishes."""
    return await dispatch(req, {"GET": lambda: stream_job_events(req, client)})


async def stream_job_events(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """404/400 problems before the stream starts; 204 when the client saw the job's end already."""
    settings = get_settings()
    job_id = checked_job_id(route_param(req, "job_id"))
    last_seen = last_event_id(header(req, "last-event-id"))
    clients = await storage_clients(settings)
    share_for = settings.sse_poll_seconds / 2
    view = await events.watched_job(client, clients.jobs, job_id, share_for)
    await recovery.start_if_stranded(client, clients, view)
    if events.nothing_left(view, last_seen):
        return Response(status_code=204, headers={"Cache-Control": "no-cache"})
    feed = events.job_feed(
        view,
        last_seen,
        FeedTiming.from_settings(settings),
        refresh=events.status_refresh(client, clients.jobs, share_for=share_for),
        finish=events.resource_refresh(client, clients.jobs, share_for=share_for),
    )
    body = event_stream(feed, base_url(req, settings), settings.sse_poll_seconds, req.url.path)
    return StreamingResponse(body, status_code=200, headers=dict(STREAM_HEADERS))
