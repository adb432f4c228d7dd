"""The job resource: submit, poll, read the result, cancel, list.

Each route reads the request, asks the jobs layer and writes the answer; domain errors become
problems in `api.http.dispatch`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlencode

import azure.durable_functions as df
from azurefunctions.extensions.http.fastapi import Request, Response
from opentelemetry.trace import SpanKind

from api.app import blueprint
from api.http import (
    ROUTE_METHODS,
    body_within,
    dispatch,
    header,
    is_decimal,
    json_response,
    media_type,
    query_params,
    read_json,
    refuse_content_coding,
    route_param,
)
from api.links import base_url, jobs_page_url
from api.problems import Problem, validation_problem
from api.resource import (
    accepted_response,
    checked_job_id,
    job_resource,
    job_response,
    matching_versions,
    poll_seconds,
    view_resource,
)
from jobs import admission, cancel, events, query, recovery
from jobs.callbacks import checked_callback
from jobs.errors import NotReady, field_error
from jobs.query import state_from_record
from jobs.requests import (
    JSON_CONTENT_TYPE,
    MAX_DEADLINE_SECONDS,
    JobRequest,
    check_idempotency_key,
    parse_body_model,
)
from jobs.submit import (
    STREAMED_BODY_BYTES,
    Submitted,
    parse_options,
    raw_content_types,
    request_from_body,
    resolve_kind,
    submit_job,
)
from shared import tracing
from shared.clock import utc_now
from shared.settings import Settings, get_settings
from storage.clients import StorageClients, storage_clients

RESERVED_QUERY = ("kind", "deadline_seconds", "priority", "code", "callback_url", "callback_events")
"""Query parameters of a raw submit that are not the kind's options (`code` is the function key, which
the host passes on to the function; `callback_*` carry the webhook callback of a raw body)."""
DEFAULT_PAGE = 20
MAX_PAGE = 100
_INDEX_KEY = re.compile(r"\d{13}_[0-9a-f]{32}")


# --- routes ----------------------------------------------------------------------------------------


@blueprint.route(route="jobs", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def jobs_collection(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST: submit a job. GET: list jobs, newest first."""
    return await dispatch(req, {"GET": lambda: list_jobs(req, client), "POST": lambda: submit(req, client)})


@blueprint.route(route="jobs/{job_id}", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def job_item(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET: the job (202 while it runs). DELETE: ask for cancellation."""
    return await dispatch(req, {"GET": lambda: get_job(req, client), "DELETE": lambda: cancel_job(req, client)})


@blueprint.route(route="jobs/{job_id}/result", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def job_result(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET: the full result document once the job is COMPLETED."""
    return await dispatch(req, {"GET": lambda: get_result(req, client)})


# --- submit -----------------------------------------------------------------------------------------


async def submit(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST /api/jobs: a JSON envelope or a raw CSV/NDJSON body."""
    settings = get_settings()
    key = check_idempotency_key(header(req, "idempotency-key"))
    client_id = admission.client_from_header(header(req, settings.client_id_header), settings.client_id_header)
    content_type = media_type(req)
    raw_types = raw_content_types(settings)
    if content_type in raw_types:
        clients = await storage_clients(settings)
        callback = await raw_callback(req, settings)
        request = await raw_request(req, settings, content_type, key)
        request.client = client_id
        request.callback = callback
    elif content_type == JSON_CONTENT_TYPE:
        body = parse_body_model(await read_json(req, settings.max_json_body_bytes))
        clients = await storage_clients(settings)
        request = await request_from_body(
            body, settings=settings, clients=clients, idempotency_key=key, source="http", client=client_id
        )
    else:
        accepted = ", ".join((JSON_CONTENT_TYPE, *raw_types))
        raise Problem(
            415, f"Content-Type must be one of: {accepted}", errors=[field_error("Content-Type", f"one of: {accepted}")]
        )
    request.traceparent = header(req, "traceparent")  # the caller's trace context (W3C), if it sent one
    submitted = await submit_job(client, clients, request, answer_before_start=True)
    return await answer_submission(req, client, clients, submitted)


async def answer_submission(
    req: Request, client: df.DurableOrchestrationClient, clients: StorageClients, submitted: Submitted
) -> Response:
    """202 + Location for a new job, and the same for a repeated request naming an existing one."""
    base = base_url(req, get_settings())
    record = submitted.record
    if submitted.created:
        body = job_resource(record, state_from_record(record), record["updated_at"], base)
    else:
        body = view_resource(await query.load_job(client, clients.jobs, record["job_id"]), base)
    return accepted_response(body, record, base, waiting_to_begin=submitted.admitted)


async def raw_request(req: Request, settings: Settings, content_type: str, key: str | None) -> JobRequest:
    """A raw CSV/NDJSON body: the kind and options come from the query string.

    A large body is left for the submit, which puts it in its blob while it arrives
    (jobs.submit.stream_input); a small one is read whole first.
    """
    params = query_params(req)
    kind_name = params.get("kind")
    if not kind_name:
        raise validation_problem("the kind query parameter is required", [field_error("kind", "required")])
    kind = resolve_kind(kind_name, settings)
    if not kind.input_content_types:
        raise Problem(
            415,
            f"{kind_name} takes no input: submit it as JSON",
            errors=[field_error("Content-Type", "application/json")],
        )
    if content_type not in kind.input_content_types:
        accepted = ", ".join(kind.input_content_types)
        raise Problem(415, f"{kind_name} reads {accepted}", errors=[field_error("Content-Type", f"one of: {accepted}")])
    deadline = _deadline_param(params.get("deadline_seconds"))
    priority = admission.check_priority(params.get("priority"))
    options = parse_options(kind, {k: v for k, v in params.items() if k not in RESERVED_QUERY}, prefix="query")
    if header(req, "content-length") is None:
        # Without a length the size is unknown until the whole body has been read: a raw input must declare
        # it so that an over-limit body is refused before any of it is read (large inputs go through
        # /api/uploads). The classic host also handed a chunked body to the function empty.
        raise Problem(
            411,
            "send Content-Length, or upload through /api/uploads",
            errors=[field_error("Content-Length", "required for a raw body (no chunked transfer encoding)")],
        )
    request = JobRequest(
        kind=kind_name,
        options=options,
        deadline_seconds=deadline,
        input_bytes=None,
        input_ref=None,
        input_content_type=content_type,
        idempotency_key=key,
        source="http",
        priority=priority,
    )
    await refuse_content_coding(req)  # (body_within asks too, for the small bodies it reads)
    if STREAMED_BODY_BYTES < _declared_length(req) <= settings.max_raw_body_bytes:
        request.body = req.stream()  # the submit reads it, into the job's blob as it arrives (in its span)
        return request
    request.input_bytes = await body_within(req, settings.max_raw_body_bytes)
    if not request.input_bytes:
        raise validation_problem("the input is empty", [field_error("body", "must not be empty")])
    return request


def _declared_length(req: Request) -> int:
    """The body's Content-Length; -1 if it is missing or malformed (body_within refuses that)."""
    declared = (header(req, "content-length") or "").strip()
    return int(declared) if is_decimal(declared) else -1


async def raw_callback(req: Request, settings: Settings) -> dict[str, Any] | None:
    """The callback of a raw submit: `callback_url` and optional comma-separated `callback_events`."""
    params = query_params(req)
    url, events = params.get("callback_url"), params.get("callback_events")
    if url is None:
        if events is not None:
            raise validation_problem("callback_events needs callback_url", [field_error("callback_url", "required")])
        return None
    chosen = [event.strip() for event in events.split(",")] if events is not None else None
    callback = await checked_callback(url, chosen, settings, url_field="callback_url", events_field="callback_events")
    return dict(callback)


def _deadline_param(value: str | None) -> int | None:
    if value is None:
        return None
    if not is_decimal(value) or not 0 < int(value) <= MAX_DEADLINE_SECONDS:
        raise validation_problem(
            "invalid deadline_seconds",
            [field_error("deadline_seconds", f"an integer from 1 to {MAX_DEADLINE_SECONDS}")],
        )
    return int(value)


# --- poll, result, cancel ------------------------------------------------------------------------------


async def get_job(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET /api/jobs/{id}[?wait=N]: with wait and an If-None-Match naming the current state (long-poll), the
    answer waits until the state changes or N seconds pass."""
    settings = get_settings()
    job_id = checked_job_id(route_param(req, "job_id"))
    started = utc_now()
    wait = wait_param(query_params(req).get("wait"))
    clients = await storage_clients(settings)
    seen = matching_versions(header(req, "if-none-match"))
    long_poll = bool(wait and seen)
    # A long-poll compares with what Durable says (its refreshes do): its first read must too, or a state
    # Durable showed (RUNNING) would read as changed against the row's PENDING, and answer at once.
    view = await query.load_job(client, clients.jobs, job_id, pending_from_row=not long_poll)
    await recovery.start_if_stranded(client, clients, view)
    if long_poll:
        view = await events.wait_for_change(
            view,
            seen,
            wait,
            settings.sse_poll_seconds,
            refresh=events.status_refresh(client, clients.jobs, share_for=settings.sse_poll_seconds / 2),
            finish=events.resource_refresh(client, clients.jobs, share_for=settings.sse_poll_seconds / 2),
        )
    # The read joins the job's trace, so support sees the client's polls beside the job's steps.
    attributes = {"job.id": job_id, "job.status": view.state.status.value}
    tracing.record_span(
        "job status read",
        parent=view.record.get("traceparent"),
        span_id=None,
        start=started,
        end=utc_now(),
        attributes=attributes,
        kind=SpanKind.SERVER,
    )
    return job_response(view, base_url(req, settings), await query.queue_place(clients, view))


def wait_param(value: str | None) -> int:
    """The long-poll wait in seconds (0: answer at once); 400 outside 0..MAX_WAIT_SECONDS."""
    if value is None:
        return 0
    if not is_decimal(value) or int(value) > events.MAX_WAIT_SECONDS:
        raise Problem(
            400,
            f"wait must be an integer from 0 to {events.MAX_WAIT_SECONDS} (seconds)",
            errors=[field_error("wait", f"an integer from 0 to {events.MAX_WAIT_SECONDS}")],
        )
    return int(value)


async def get_result(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET /api/jobs/{id}/result[?format=]."""
    settings = get_settings()
    job_id = checked_job_id(route_param(req, "job_id"))
    clients = await storage_clients(settings)
    try:
        result = await query.get_result(client, clients, settings, job_id, query_params(req).get("format"))
    except NotReady as not_ready:
        headers = {} if not_ready.finished else {"Retry-After": str(poll_seconds(not_ready.created_at))}
        raise Problem(409, not_ready.detail, slug="result-not-ready", headers=headers) from None
    return Response(result.data, status_code=200, headers={"Content-Type": result.content_type})


async def cancel_job(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """DELETE /api/jobs/{id}: 202 when the cancel was requested, 200 for a job that had finished."""
    settings = get_settings()
    job_id = checked_job_id(route_param(req, "job_id"))
    clients = await storage_clients(settings)
    cancellation = await cancel.cancel_job(client, clients, job_id)
    base = base_url(req, settings)
    body = view_resource(cancellation.view, base)
    if not cancellation.requested:
        return json_response(body, 200)
    return accepted_response(body, cancellation.view.record, base)


# --- list -------------------------------------------------------------------------------------------


def encode_page_token(key: str) -> str:
    """An opaque continuation token for a page that ended at index RowKey `key`."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_page_token(token: str, shape: re.Pattern[str] = _INDEX_KEY) -> str:
    """The RowKey inside a token we issued; 422 for anything else."""
    try:
        key = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = ""
    if not shape.fullmatch(key):
        raise validation_problem("invalid continuation token", [field_error("continuation", "not a token we issued")])
    return key


def page_limit(value: str | None) -> int:
    """The page size asked for; 422 outside 1..MAX_PAGE."""
    if value is None:
        return DEFAULT_PAGE
    if not is_decimal(value) or not 1 <= int(value) <= MAX_PAGE:
        raise validation_problem("invalid limit", [field_error("limit", f"an integer from 1 to {MAX_PAGE}")])
    return int(value)


async def list_jobs(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """GET /api/jobs?status=&kind=&limit=&continuation=."""
    settings = get_settings()
    params = query_params(req)
    limit = page_limit(params.get("limit"))
    status = params.get("status") or None
    kind = params.get("kind") or None
    query.check_filters(settings, status=status, kind=kind)
    token = params.get("continuation")
    after = decode_page_token(token) if token else None
    clients = await storage_clients(settings)
    page = await query.list_jobs(client, clients, settings, limit=limit, status=status, kind=kind, after=after)
    base = base_url(req, settings)
    body: dict[str, Any] = {"items": [view_resource(view, base) for view in page.items], "continuation": None}
    if page.continuation:
        body["continuation"] = encode_page_token(page.continuation)
        query_string = {"status": status, "kind": kind, "limit": str(limit), "continuation": body["continuation"]}
        body["links"] = {"next": jobs_page_url(base, urlencode({k: v for k, v in query_string.items() if v}))}
    return json_response(body)
