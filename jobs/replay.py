"""Dead letters: reading them, and replaying a failed job as a new job with the same kind, options and input."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from jobs.errors import Conflict, NotFound
from jobs.requests import JobRequest
from jobs.submit import Submitted, parse_options, resolve_kind, submit_job
from shared.contracts import DeadLetterRecord
from shared.settings import Settings
from storage import dead_letters
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER


async def list_dead_letters(clients: StorageClients, *, limit: int, after: str | None) -> dead_letters.DeadLetterPage:
    """Newest dead letters first; `after` is a previous page's continuation."""
    return await dead_letters.list_dead_letters(clients.dead_letters, limit=limit, after=after)


async def get_dead_letter(clients: StorageClients, record_id: str) -> DeadLetterRecord:
    """The dead letter; NotFound if there is none."""
    record = await dead_letters.get_dead_letter(clients.dead_letters, record_id)
    if record is None:
        raise NotFound("no such dead letter")
    return record


async def replay(
    client: Any, clients: StorageClients, settings: Settings, record_id: str, idempotency_key: str | None
) -> Submitted:
    """Submit the dead-lettered job again; Conflict if it cannot be replayed."""
    record = await get_dead_letter(clients, record_id)
    if record["source"] != "job" or not record["kind"]:
        raise Conflict("only a failed job can be replayed; a poison message must be fixed and sent again")
    kind = resolve_kind(record["kind"], settings)
    options = parse_options(kind, record["options"] or {})
    if kind.requires_input:
        if not record["input_ref"]:
            raise Conflict("this dead letter kept no input to replay")
        try:
            await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"]).get_blob_properties()
        except ResourceNotFoundError:
            raise Conflict("the job's input is no longer kept (retention)", slug="input-gone") from None
    request = JobRequest(
        kind=record["kind"],
        options=options,
        deadline_seconds=None,
        input_bytes=None,
        input_ref=record["input_ref"] if kind.requires_input else None,
        input_content_type=record["input_content_type"] if kind.requires_input else None,
        idempotency_key=idempotency_key,
        source="replay",
    )
    return await submit_job(client, clients, request)
