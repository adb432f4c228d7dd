"""The job resource: submit, poll, read the result, cancel, list."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import urlencode

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError

from api.app import blueprint
from api.http import ROUTE_METHODS, body_within, dispatch, is_decimal, json_response, media_type, read_json
from api.links import base_url, jobs_page_url
from api.resource import (
    accepted_response,
    checked_job_id,
    job_resource,
    job_response,
    live_state,
    load_job,
    retry_after_seconds,
    state_from_record,
)
from shared.clock import parse_iso, utc_now
from shared.contracts import CANCEL_EVENT, FINISHED_STATUSES, JobStatus
from shared.problems import Problem, field_error, validation_problem
from shared.settings import Settings, get_settings
from shared.submission import (
    JSON_CONTENT_TYPE,
    MAX_DEADLINE_SECONDS,
    JobRequest,
    check_idempotency_key,
    parse_body_model,
    parse_options,
    request_from_body,
    resolve_kind,
    submit_job,
)
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import StorageClients, storage_clients
from storage.names import RESULTS_CONTAINER, stop_marker_blob_name

RAW_CONTENT_TYPES = ("text/csv", "application/x-ndjson")
RESERVED_QUERY = ("kind", "deadline_seconds")
DEFAULT_PAGE = 20
MAX_PAGE = 100
_INDEX_KEY = re.compile(r"\d{13}_[0-9a-f]{32}")
STALE_PENDING_SECONDS = 60  # a cancel of an instance still Pending after this long terminates it


# --- routes ----------------------------------------------------------------------------------------


@blueprint.route(route="jobs", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def jobs_collection(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST: submit a job. GET: list jobs, newest first."""
    return await dispatch(req, {"GET": lambda: list_jobs(req, client), "POST": lambda: submit(req, client)})


@blueprint.route(route="jobs/{job_id}", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def job_item(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET: the job (202 while it runs). DELETE: ask for cancellation."""
    return await dispatch(req, {"GET": lambda: get_job(req, client), "DELETE": lambda: cancel_job(req, client)})


@blueprint.route(route="jobs/{job_id}/result", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def job_result(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET: the full result document once the job is COMPLETED."""
    return await dispatch(req, {"GET": lambda: get_result(req, client)})


# --- submit -----------------------------------------------------------------------------------------


async def submit(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = get_settings()
    key = check_idempotency_key(req.headers.get("idempotency-key"))
    content_type = media_type(req)
    if content_type in RAW_CONTENT_TYPES:
        clients = await storage_clients(settings)
        request = raw_request(req, settings, content_type, key)
    elif content_type == JSON_CONTENT_TYPE:
        body = parse_body_model(read_json(req, settings.max_json_body_bytes))
        clients = await storage_clients(settings)
        request = await request_from_body(body, settings=settings, clients=clients, idempotency_key=key, source="http")
    else:
        accepted = ", ".join((JSON_CONTENT_TYPE, *RAW_CONTENT_TYPES))
        raise Problem(
            415, f"Content-Type must be one of: {accepted}", errors=[field_error("Content-Type", f"one of: {accepted}")]
        )
    return await answer_submission(req, client, clients, request)


async def answer_submission(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, clients: StorageClients, request: JobRequest
) -> func.HttpResponse:
    """202 + Location for a new job, and the same for a repeated request naming an existing one."""
    submitted = await submit_job(client, clients, request)
    base = base_url(req, get_settings())
    if submitted.created:
        record = submitted.record
        body = job_resource(record, state_from_record(record), record["updated_at"], base)
    else:
        record, state, updated = await load_job(client, clients.jobs, submitted.record["job_id"])
        body = job_resource(record, state, updated, base)
    return accepted_response(body, record, base)


def raw_request(req: func.HttpRequest, settings: Settings, content_type: str, key: str | None) -> JobRequest:
    """A raw CSV/NDJSON body: the kind and options come from the query string."""
    params = dict(req.params)
    kind_name = params.get("kind")
    if not kind_name:
        raise validation_problem("the kind query parameter is required", [field_error("kind", "required")])
    kind = resolve_kind(kind_name, settings)
    if content_type not in kind.input_content_types:
        accepted = ", ".join(kind.input_content_types)
        raise Problem(415, f"{kind_name} reads {accepted}", errors=[field_error("Content-Type", f"one of: {accepted}")])
    deadline = _deadline_param(params.get("deadline_seconds"))
    options = parse_options(kind, {k: v for k, v in params.items() if k not in RESERVED_QUERY}, prefix="query")
    body = body_within(req, settings.max_raw_body_bytes)
    if not body:
        raise validation_problem("the input is empty", [field_error("body", "must not be empty")])
    return JobRequest(
        kind=kind_name,
        options=options,
        deadline_seconds=deadline,
        input_bytes=body,
        input_ref=None,
        input_content_type=content_type,
        idempotency_key=key,
        source="http",
    )


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


async def get_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = get_settings()
    job_id = checked_job_id(req.route_params.get("job_id"))
    clients = await storage_clients(settings)
    record, state, updated = await load_job(client, clients.jobs, job_id)
    return job_response(record, state, updated, base_url(req, settings))


async def get_result(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = get_settings()
    job_id = checked_job_id(req.route_params.get("job_id"))
    fmt = req.params.get("format")
    clients = await storage_clients(settings)
    record, state, _ = await load_job(client, clients.jobs, job_id)
    if state.status is not JobStatus.COMPLETED or not state.result_ref:
        raise Problem(
            409,
            f"the job is {state.status.value}; its result exists once it is COMPLETED",
            slug="result-not-ready",
            headers={"Retry-After": str(retry_after_seconds(record))} if state.status not in FINISHED_STATUSES else {},
        )
    blob = clients.blobs.get_blob_client(RESULTS_CONTAINER, state.result_ref)
    try:
        data = await (await blob.download_blob()).readall()
    except ResourceNotFoundError:
        raise Problem(404, "the job's result is no longer available") from None
    content_type = state.content_type or "application/json"
    if fmt is None or fmt == "json":
        return func.HttpResponse(data, status_code=200, headers={"Content-Type": content_type})
    rendered = _render(record["kind"], data, fmt, settings)
    return func.HttpResponse(rendered[0], status_code=200, headers={"Content-Type": rendered[1]})


def _render(kind_name: str, data: bytes, fmt: str, settings: Settings) -> tuple[bytes, str]:
    kind = resolve_kind(kind_name, settings)
    rendered = kind.render(json.loads(data), fmt) if fmt.isalnum() else None
    if rendered is None:
        raise validation_problem(
            f"format {fmt!r} is not available for {kind_name}", [field_error("format", "unsupported for this kind")]
        )
    return bytes(rendered[0]), str(rendered[1])


async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Cooperative cancel: a marker the activities check, and an event the orchestrator waits for."""
    settings = get_settings()
    job_id = checked_job_id(req.route_params.get("job_id"))
    clients = await storage_clients(settings)
    record, state, updated = await load_job(client, clients.jobs, job_id)
    base = base_url(req, settings)
    if state.status in FINISHED_STATUSES:
        return json_response(job_resource(record, state, updated, base), 200)
    marker = clients.blobs.get_blob_client(RESULTS_CONTAINER, stop_marker_blob_name(job_id))
    await marker.upload_blob(b"", overwrite=True)
    try:
        await client.raise_event(job_id, CANCEL_EVENT, {"reason": "client"})
    except Exception:
        # No instance yet (its submitter is still starting it): the marker is seen when it starts.
        pass
    await _terminate_if_stuck(client, record, job_id)
    log_event("job.cancel_requested", job_id=job_id, kind=record["kind"])
    return accepted_response(job_resource(record, state, updated, base), record, base)


async def _terminate_if_stuck(client: df.DurableOrchestrationClient, record: job_store.JobRecord, job_id: str) -> None:
    """An instance still Pending long after submission will not see the event soon: terminate it."""
    age = (utc_now() - parse_iso(record["created_at"])).total_seconds()
    if age < STALE_PENDING_SECONDS:
        return
    status = await client.get_status(job_id)
    runtime = getattr(status, "runtime_status", None)
    if getattr(runtime, "value", runtime) == "Pending":
        try:
            await client.terminate(job_id, "cancelled by the client before it started")
        except Exception:
            pass


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
    if value is None:
        return DEFAULT_PAGE
    if not is_decimal(value) or not 1 <= int(value) <= MAX_PAGE:
        raise validation_problem("invalid limit", [field_error("limit", f"an integer from 1 to {MAX_PAGE}")])
    return int(value)


async def list_jobs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = get_settings()
    limit = page_limit(req.params.get("limit"))
    status = req.params.get("status") or None
    if status is not None and status not in JobStatus.__members__:
        names = ", ".join(JobStatus.__members__)
        raise validation_problem("invalid status filter", [field_error("status", f"one of: {names}")])
    kind = req.params.get("kind") or None
    if kind is not None:
        resolve_kind(kind, settings)
    token = req.params.get("continuation")
    after = decode_page_token(token) if token else None
    clients = await storage_clients(settings)
    page = await job_store.list_jobs(clients.jobs, limit=limit, status=status, kind=kind, after=after)
    base = base_url(req, settings)
    # Finished jobs read from their rows; pending and running ones ask Durable, so their status and
    # progress are as fresh as GET /api/jobs/{id} (at most one status call per item of the page).
    states = await asyncio.gather(*(live_state(client, clients.jobs, record) for record in page.items))
    items = [job_resource(r, state, updated, base) for r, (state, updated) in zip(page.items, states, strict=True)]
    body: dict[str, Any] = {"items": items, "continuation": None}
    if page.continuation:
        body["continuation"] = encode_page_token(page.continuation)
        query = {"status": status, "kind": kind, "limit": str(limit), "continuation": body["continuation"]}
        body["links"] = {"next": jobs_page_url(base, urlencode({k: v for k, v in query.items() if v}))}
    return json_response(body)
