"""The reference design's routes (FastAPI + Celery), so that its clients work unchanged.

POST /api/tasks takes the reference's body and answers 202 `{"task_id", "status": "Processing"}` with a
Location; GET /api/tasks/{task_id} answers `{"task_id", "status", "result"}` with Celery's state names. Both
go through the jobs layer as POST /api/jobs and GET /api/jobs/{id} do (`jobs.compat` maps the shapes); a
task id is a job id, so /api/jobs/{task_id} shows the same job.
"""

from __future__ import annotations

import azure.durable_functions as df
from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, header, json_response, read_json, route_param
from api.links import base_url
from api.resource import checked_job_id, retry_after_seconds
from jobs import compat, query
from jobs.errors import InvalidRequest
from jobs.requests import check_idempotency_key
from jobs.submit import request_from_body, submit_job
from shared.settings import get_settings
from storage.clients import storage_clients


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
    submitted = await submit_job(client, clients, request)
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
    view = await query.load_job(client, clients.jobs, task_id)
    body = await compat.task_status(clients, view)
    headers = {} if body["status"] in compat.READY_STATES else {"Retry-After": str(retry_after_seconds(view.record))}
    return json_response(body, 200, headers)
