"""Bulk submission: `POST /api/jobs/batch`, up to 1,000 job requests, one result per item, in order."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, header, json_response, read_json
from api.links import base_url, job_url
from api.problems import problem_from
from api.resource import job_resource, view_resource
from jobs import admission, batch, query
from jobs.query import state_from_record
from shared.settings import get_settings
from storage.clients import StorageClients, storage_clients

MAX_BATCH_BODY_BYTES = 32 * 1024 * 1024
"""A batch body's limit: 1,000 small requests fit with room to spare; big inputs belong in uploads."""


@blueprint.route(route="jobs/batch", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def jobs_batch(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST: submit many jobs at once."""
    return await dispatch(req, {"POST": lambda: submit_batch(req, client)})


async def submit_batch(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """200 with {"items": [...]}: per item {"status": 202, "location", "job"} or {"status": 4xx/5xx, "problem"}."""
    settings = get_settings()
    client_id = admission.client_from_header(header(req, settings.client_id_header), settings.client_id_header)
    items = batch.check_items(await read_json(req, MAX_BATCH_BODY_BYTES))
    clients = await storage_clients(settings)
    results = await batch.submit_batch(client, clients, items, client_id)
    base = base_url(req, settings)
    answers = [await _answer(n, result, client, clients, base) for n, result in enumerate(results)]
    return json_response({"items": answers}, 200)


async def _answer(
    index: int, result: batch.ItemResult, client: Any, clients: StorageClients, base: str
) -> dict[str, Any]:
    if result.submitted is None:
        assert result.error is not None
        problem = problem_from(result.error, key_field=f"items[{index}].{batch.KEY_FIELD}")
        return {"status": problem.status, "problem": problem.body()}
    record = result.submitted.record
    if result.submitted.created:
        job = job_resource(record, state_from_record(record), record["updated_at"], base)
    else:
        job = view_resource(await query.load_job(client, clients.jobs, record["job_id"]), base)
    return {"status": 202, "location": job_url(base, record["job_id"]), "job": job}
