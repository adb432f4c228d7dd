"""Dead letters: list failed jobs and poison intake messages, and replay a failed job (jobs.replay)."""

from __future__ import annotations

import re
from typing import Any

import azure.durable_functions as df
from azurefunctions.extensions.http.fastapi import Request, Response

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, header, json_response, query_params, route_param
from api.jobs import answer_submission, decode_page_token, encode_page_token, page_limit
from api.links import base_url, dead_letter_links, job_url
from api.problems import Problem
from jobs import replay as replays
from jobs.requests import check_idempotency_key
from shared.contracts import DeadLetterRecord
from shared.settings import get_settings
from storage.clients import storage_clients
from webhooks.events import delivery_policy
from webhooks.guard import redacted

_RECORD_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_PAGE_KEY = re.compile(r"\d{13}_[A-Za-z0-9._:-]{1,200}")


@blueprint.route(route="dead-letters", methods=ROUTE_METHODS)
async def dead_letters_collection(req: Request) -> Response:
    """GET: dead letters, newest first."""
    return await dispatch(req, {"GET": lambda: list_dead_letters(req)})


@blueprint.route(route="dead-letters/{record_id}", methods=ROUTE_METHODS)
async def dead_letter_item(req: Request) -> Response:
    """GET: one dead letter."""
    return await dispatch(req, {"GET": lambda: get_dead_letter(req)})


@blueprint.route(route="dead-letters/{record_id}/replay", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def dead_letter_replay(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST: resubmit a failed job's kind, options and input as a new job, or deliver a webhook event again."""
    return await dispatch(req, {"POST": lambda: replay(req, client)})


def dead_letter_resource(record: DeadLetterRecord, base: str) -> dict[str, Any]:
    """The public dead-letter document (a webhook's URL without its userinfo and query: they may hold tokens)."""
    resource: dict[str, Any] = {**record, "links": dead_letter_links(base, record["id"])}
    event = record.get("webhook")
    if event:
        resource["webhook"] = {**event, "url": redacted(event["url"])}
    return resource


def _record_id(req: Request) -> str:
    record_id = route_param(req, "record_id") or ""
    if not _RECORD_ID.fullmatch(record_id):
        raise Problem(404, "no such dead letter")
    return record_id


async def list_dead_letters(req: Request) -> Response:
    """GET /api/dead-letters?limit=&continuation=."""
    settings = get_settings()
    params = query_params(req)
    limit = page_limit(params.get("limit"))
    token = params.get("continuation")
    after = decode_page_token(token, _PAGE_KEY) if token else None
    page = await replays.list_dead_letters(await storage_clients(settings), limit=limit, after=after)
    base = base_url(req, settings)
    body = {
        "items": [dead_letter_resource(record, base) for record in page.items],
        "continuation": encode_page_token(page.continuation) if page.continuation else None,
    }
    return json_response(body)


async def get_dead_letter(req: Request) -> Response:
    """GET /api/dead-letters/{id}."""
    settings = get_settings()
    record = await replays.get_dead_letter(await storage_clients(settings), _record_id(req))
    return json_response(dead_letter_resource(record, base_url(req, settings)))


async def replay(req: Request, client: df.DurableOrchestrationClient) -> Response:
    """POST /api/dead-letters/{id}/replay: 202 + Location of the new job."""
    settings = get_settings()
    key = check_idempotency_key(header(req, "idempotency-key"))
    record_id = _record_id(req)
    clients = await storage_clients(settings)
    record = await replays.get_dead_letter(clients, record_id)
    if record["source"] == "webhook":
        return await replay_webhook(req, client, record_id, key)
    submitted = await replays.replay(client, clients, settings, record_id, key)
    return await answer_submission(req, client, clients, submitted)


async def replay_webhook(
    req: Request, client: df.DurableOrchestrationClient, record_id: str, key: str | None
) -> Response:
    """202 + Location of the event's job: its event is being delivered again (same body, same webhook-id)."""
    settings = get_settings()
    replayed = await replays.replay_webhook(
        client, await storage_clients(settings), record_id, key, delivery_policy(settings)
    )
    base = base_url(req, settings)
    location = job_url(base, replayed.event["job_id"])
    body = {
        "dead_letter": dead_letter_resource(replayed.record, base),
        "webhook_id": replayed.event["webhook_id"],
        "job_id": replayed.event["job_id"],
        "status": "redelivering",
    }
    return json_response(body, 202, headers={"Location": location})
