"""Reading jobs-inbox messages: the POST /api/jobs envelope plus an idempotency_key."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jobs.errors import IdempotencyConflict, IdempotencyKeyMalformed, JobsError, TooLarge
from jobs.json_body import parse_json
from jobs.requests import InboxMessage, SubmitBody, check_idempotency_key, job_id_for, parse_body_model
from jobs.submit import request_from_body
from shared.settings import Settings
from storage import jobs as job_store
from storage.clients import StorageClients

MAX_MESSAGE_BYTES = 64 * 1024  # a storage queue message is at most 64 KiB
KEY_FIELD = "idempotency_key"
_HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"


@lru_cache(maxsize=1)
def _max_dequeue_count() -> int:
    try:
        return int(json.loads(_HOST_JSON.read_text())["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, ValueError, KeyError, TypeError):
        return 5  # the Functions host's default


POISON_ATTEMPTS = _max_dequeue_count()
"""How often the host tried a message before it moved it to the poison queue."""


def parse_inbox_message(body: bytes) -> tuple[SubmitBody, str | None]:
    """The submission and the message's own idempotency key (None if it has none); a JobsError if invalid."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise TooLarge(f"the message must be at most {MAX_MESSAGE_BYTES} bytes")
    message = parse_body_model(parse_json(body, what="message"), model=InboxMessage)
    assert isinstance(message, InboxMessage)
    key = check_idempotency_key(message.idempotency_key)
    return SubmitBody.model_validate(message.model_dump(exclude={KEY_FIELD})), key


def read_inbox_message(body: bytes, message_id: str) -> tuple[SubmitBody, str]:
    """The submission and its idempotency key; a JobsError if the message is not a valid request.

    A message without `idempotency_key` is keyed by its queue message id, so the host's
    redeliveries of one message never start two jobs.
    """
    submission, key = parse_inbox_message(body)
    return submission, key or f"inbox-message:{message_id}"


def reason(error: JobsError) -> str:
    """One line saying why a message was refused, naming fields as the message does."""
    if isinstance(error, IdempotencyKeyMalformed):
        return f"{error.detail} ({KEY_FIELD}: 1 to 200 printable ASCII characters (0x20-0x7E))"
    if isinstance(error, IdempotencyConflict):
        return (
            f"its {KEY_FIELD} already names job {error.job_id}, created by a different request; "
            "send this request with a new key"
        )
    fields = "; ".join(f"{e['field']}: {e['message']}" for e in error.errors[:5])
    return (f"{error.detail} ({fields})" if fields else error.detail)[:500]


async def diagnose(body: bytes, settings: Settings, clients: StorageClients) -> tuple[str | None, str]:
    """The job kind (if readable) and a one-line reason why a poison message could not be submitted.

    Runs every check a submission runs, including those that need storage (the input_ref exists, the
    idempotency_key does not name a job made by another request), without writing or starting anything.
    """
    kind: str | None = None
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("kind"), str):
            kind = data["kind"][:64]
    except (ValueError, RecursionError):
        pass
    try:
        submission, key = parse_inbox_message(body)
        request = await request_from_body(
            submission, settings=settings, clients=clients, idempotency_key=key, source="queue"
        )
        if key is not None:
            existing = await job_store.get_job(clients.jobs, job_id_for(key))
            if existing is not None and existing["fingerprint"] != request.fingerprint():
                raise IdempotencyConflict(existing["job_id"])
    except JobsError as error:
        return kind, reason(error)
    return kind, f"the job could not be submitted after {POISON_ATTEMPTS} attempts"
