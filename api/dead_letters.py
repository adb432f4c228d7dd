"""Dead letters: list failed jobs and poison intake messages, and replay a failed job."""

from __future__ import annotations

import re
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError

from api.app import blueprint
from api.http import ROUTE_METHODS, dispatch, json_response
from api.jobs import answer_submission, decode_page_token, encode_page_token, page_limit
from api.links import base_url, dead_letter_links
from shared.contracts import DeadLetterRecord
from shared.problems import Problem
from shared.settings import get_settings
from shared.submission import JobRequest, check_idempotency_key, parse_options, resolve_kind
from storage import dead_letters
from storage.clients import storage_clients
from storage.names import PAYLOADS_CONTAINER

_RECORD_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_PAGE_KEY = re.compile(r"\d{13}_[A-Za-z0-9._:-]{1,200}")


@blueprint.route(route="dead-letters", methods=ROUTE_METHODS)
async def dead_letters_collection(req: func.HttpRequest) -> func.HttpResponse:
    """GET: dead letters, newest first."""
    return await dispatch(req, {"GET": lambda: list_dead_letters(req)})


@blueprint.route(route="dead-letters/{record_id}", methods=ROUTE_METHODS)
async def dead_letter_item(req: func.HttpRequest) -> func.HttpResponse:
    """GET: one dead letter."""
    return await dispatch(req, {"GET": lambda: get_dead_letter(req)})


@blueprint.route(route="dead-letters/{record_id}/replay", methods=ROUTE_METHODS)
@blueprint.durable_client_input(client_name="client")
async def dead_letter_replay(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST: resubmit a failed job's kind, options and input as a new job."""
    return await dispatch(req, {"POST": lambda: replay(req, client)})


def dead_letter_resource(record: DeadLetterRecord, base: str) -> dict[str, Any]:
    return {**record, "links": dead_letter_links(base, record["id"])}


async def list_dead_letters(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    limit = page_limit(req.params.get("limit"))
    token = req.params.get("continuation")
    after = decode_page_token(token, _PAGE_KEY) if token else None
    clients = await storage_clients(settings)
    page = await dead_letters.list_dead_letters(clients.dead_letters, limit=limit, after=after)
    base = base_url(req, settings)
    body = {
        "items": [dead_letter_resource(record, base) for record in page.items],
        "continuation": encode_page_token(page.continuation) if page.continuation else None,
    }
    return json_response(body)


async def _load(req: func.HttpRequest) -> DeadLetterRecord:
    record_id = req.route_params.get("record_id") or ""
    if not _RECORD_ID.fullmatch(record_id):
        raise Problem(404, "no such dead letter")
    clients = await storage_clients(get_settings())
    record = await dead_letters.get_dead_letter(clients.dead_letters, record_id)
    if record is None:
        raise Problem(404, "no such dead letter")
    return record


async def get_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    record = await _load(req)
    return json_response(dead_letter_resource(record, base_url(req, get_settings())))


async def replay(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    settings = get_settings()
    key = check_idempotency_key(req.headers.get("idempotency-key"))
    record = await _load(req)
    if record["source"] != "job" or not record["kind"]:
        raise Problem(409, "only a failed job can be replayed; a poison message must be fixed and sent again")
    kind = resolve_kind(record["kind"], settings)
    options = parse_options(kind, record["options"] or {})
    clients = await storage_clients(settings)
    if kind.requires_input:
        if not record["input_ref"]:
            raise Problem(409, "this dead letter kept no input to replay")
        try:
            await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"]).get_blob_properties()
        except ResourceNotFoundError:
            raise Problem(409, "the job's input is no longer kept (retention)", slug="input-gone") from None
    request = JobRequest(
        kind=record["kind"],
        options=options,
        deadline_seconds=None,
        input_bytes=None,
        input_ref=record["input_ref"] if kind.requires_input else None,
        input_content_type=record["input_content_type"] if kind.requires_input else None,
        idempotency_key=key,
        source="replay",
    )
    return await answer_submission(req, client, clients, request)
