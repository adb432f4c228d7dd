"""Reading jobs-inbox messages: the POST /api/jobs envelope plus an idempotency_key."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from shared.json_body import parse_json
from shared.problems import Problem
from shared.settings import Settings
from shared.submission import (
    InboxMessage,
    SubmitBody,
    check_idempotency_key,
    job_id_for,
    parse_body_model,
    request_from_body,
)
from storage import jobs as job_store
from storage.clients import StorageClients

MAX_MESSAGE_BYTES = 64 * 1024  # a storage queue message is at most 64 KiB
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
    """The submission and the message's own idempotency key (None if it has none); a Problem if invalid."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise Problem(413, f"the message must be at most {MAX_MESSAGE_BYTES} bytes")
    message = parse_body_model(parse_json(body, what="message"), model=InboxMessage)
    assert isinstance(message, InboxMessage)
    key = check_idempotency_key(message.idempotency_key, field="idempotency_key")
    return SubmitBody.model_validate(message.model_dump(exclude={"idempotency_key"})), key


def read_inbox_message(body: bytes, message_id: str) -> tuple[SubmitBody, str]:
    """The submission and its idempotency key; a Problem if the message is not a valid request.

    A message without `idempotency_key` is keyed by its queue message id, so the host's
    redeliveries of one message never start two jobs.
    """
    submission, key = parse_inbox_message(body)
    return submission, key or f"inbox-message:{message_id}"


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
                return kind, (
                    f"its idempotency_key already names job {existing['job_id']}, created by a different "
                    "request; send this request with a new key"
                )
    except Problem as problem:
        fields = "; ".join(f"{e['field']}: {e['message']}" for e in problem.errors[:5])
        return kind, (f"{problem.detail} ({fields})" if fields else problem.detail)[:500]
    return kind, f"the job could not be submitted after {POISON_ATTEMPTS} attempts"
