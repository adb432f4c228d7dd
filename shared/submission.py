"""Submitting a job: the one path behind `POST /api/jobs`, the `jobs-inbox` queue and replays.

Order matters, so that a refused request stores nothing and starts nothing:
1. validate everything (kind, options, input or input reference, deadline) -> Problem 4xx;
2. insert the job row (the job id derives from the idempotency key): the single arbiter between
   concurrent duplicates; a loser compares request fingerprints and names the same job, or gets 409;
3. only the winner stores the input blob and starts the orchestration; if that fails, it removes
   what it stored and the row, and the request can be retried.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

import kinds
from kinds.base import JobKind
from shared.clock import iso, parse_iso, utc_now
from shared.contracts import JOB_ORCHESTRATOR, JobStart
from shared.problems import Problem, errors_from_validation, field_error, validation_problem
from shared.settings import Settings
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER, job_input_blob_name, upload_blob_name

JSON_CONTENT_TYPE = "application/json"
MAX_DEADLINE_SECONDS = 30 * 24 * 3600
MAX_KEY_LENGTH = 200
BLOCK_BYTES = 4 * 1024 * 1024
STALE_START_SECONDS = 60  # a row this old without an orchestration means its submitter died mid-way

_KEY = re.compile(r"[\x20-\x7e]{1,200}")
_UPLOAD_REF = re.compile(r"uploads/([0-9a-f]{32})")
JOB_ID = re.compile(r"[0-9a-f]{32}")


class SubmitBody(BaseModel):
    """The JSON request of POST /api/jobs (and of a jobs-inbox message, plus its idempotency_key)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: StrictStr = Field(min_length=1, max_length=64)
    input: Any = None
    input_ref: StrictStr | None = Field(default=None, max_length=300)
    options: dict[str, Any] = Field(default_factory=dict)
    deadline_seconds: StrictInt | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)


class InboxMessage(SubmitBody):
    idempotency_key: StrictStr | None = None


@dataclass
class JobRequest:
    """A validated submission, ready for the arbiter."""

    kind: str
    options: dict[str, Any]
    deadline_seconds: int | None
    input_bytes: bytes | None  # inline JSON (canonical) or a raw body, stored under the job's own name
    input_ref: str | None  # an existing blob (an upload, or a replayed job's input)
    input_content_type: str | None
    idempotency_key: str | None
    source: str

    def fingerprint(self) -> str:
        """What makes two requests the same request, whichever door they came through."""
        doc = {
            "kind": self.kind,
            "options": self.options,
            "deadline_seconds": self.deadline_seconds,
            "input_sha256": hashlib.sha256(self.input_bytes).hexdigest() if self.input_bytes is not None else None,
            "input_ref": self.input_ref,
            "input_content_type": self.input_content_type,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Submitted:
    record: job_store.JobRecord
    created: bool  # False: an earlier request with the same idempotency key named this job


def check_idempotency_key(key: str | None, field: str = "Idempotency-Key") -> str | None:
    """None when absent; the key when it is 1-200 printable ASCII characters; else a 400 problem."""
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise Problem(
            400,
            "the idempotency key must be 1 to 200 printable ASCII characters",
            errors=[field_error(field, "1 to 200 printable ASCII characters (0x20-0x7E)")],
        )
    return key


def key_hash(key: str) -> str:
    return hashlib.sha256(b"longrun/idempotency-key/v1\0" + key.encode("ascii")).hexdigest()


def job_id_for(key: str | None) -> str:
    """Derived from the hashed key, so both doors name the same job; never the raw key."""
    return key_hash(key)[:32] if key is not None else uuid.uuid4().hex


def resolve_kind(name: str, settings: Settings) -> JobKind:
    kind = kinds.get_kind(name, simulate_enabled=settings.enable_simulate_kind)
    if kind is None:
        names = ", ".join(kinds.kind_names(simulate_enabled=settings.enable_simulate_kind))
        raise validation_problem(
            f"unknown job kind; known kinds: {names}", [field_error("kind", f"must be one of: {names}")]
        )
    return kind


def parse_options(kind: JobKind, raw: dict[str, Any], prefix: str = "options") -> dict[str, Any]:
    try:
        options = kind.parse_options(raw)
    except ValidationError as exc:
        raise validation_problem("invalid options for this kind", errors_from_validation(exc, prefix)) from None
    except (ValueError, TypeError) as exc:
        raise validation_problem("invalid options for this kind", [field_error(prefix, str(exc)[:300])]) from None
    return dict(options)


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def parse_body_model(data: Any, model: type[SubmitBody] = SubmitBody) -> SubmitBody:
    if not isinstance(data, dict):
        raise validation_problem("the request must be a JSON object", [field_error("body", "must be an object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem("the request is not a valid job submission", errors_from_validation(exc)) from None


async def _checked_upload_ref(clients: StorageClients, ref: str, kind: JobKind) -> tuple[str, str]:
    """The upload's blob name and content type, if `ref` names an upload the server created and that exists."""
    match = _UPLOAD_REF.fullmatch(ref)
    if match is None:
        raise validation_problem(
            "input_ref must be the input_ref of an upload (POST /api/uploads)",
            [field_error("input_ref", "must look like uploads/<32 hex digits>, as returned by POST /api/uploads")],
        )
    upload = await job_store.get_upload(clients.jobs, match.group(1))
    if upload is None:
        raise validation_problem("no such upload", [field_error("input_ref", "this server created no such upload")])
    blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, upload_blob_name(upload["upload_id"]))
    try:
        properties = await blob.get_blob_properties()
    except ResourceNotFoundError:
        raise validation_problem(
            "the upload holds no data yet", [field_error("input_ref", "nothing was uploaded to this upload_url")]
        ) from None
    if properties.size == 0:
        raise validation_problem("the uploaded input is empty", [field_error("input_ref", "the upload is empty")])
    blob_type = (properties.content_settings.content_type or "").split(";")[0].strip().lower()
    declared = upload["content_type"] or (blob_type if blob_type not in ("", "application/octet-stream") else None)
    content_type = declared or kind.input_content_types[0]
    if content_type not in kind.input_content_types:
        accepted = ", ".join(kind.input_content_types)
        raise validation_problem(
            f"this kind reads {accepted}", [field_error("input_ref", f"content type must be one of: {accepted}")]
        )
    return ref, content_type


async def request_from_body(
    body: SubmitBody, *, settings: Settings, clients: StorageClients, idempotency_key: str | None, source: str
) -> JobRequest:
    """Validate a JSON submission (HTTP envelope or inbox message) against its kind."""
    kind = resolve_kind(body.kind, settings)
    options = parse_options(kind, body.options)
    has_input, has_ref = body.input is not None, body.input_ref is not None
    input_bytes: bytes | None = None
    input_ref: str | None = None
    content_type: str | None = None
    if not kind.requires_input:
        if has_input or has_ref:
            field = "input" if has_input else "input_ref"
            raise validation_problem(f"{body.kind} takes no input", [field_error(field, "not allowed for this kind")])
    elif has_input == has_ref:
        message = "give exactly one of input and input_ref"
        raise validation_problem(message, [field_error("input", message), field_error("input_ref", message)])
    elif has_input:
        if JSON_CONTENT_TYPE not in kind.input_content_types:
            accepted = ", ".join(kind.input_content_types)
            raise validation_problem(
                f"{body.kind} reads {accepted}: post the data raw with that Content-Type, or upload it",
                [field_error("input", "inline JSON input is not accepted by this kind")],
            )
        try:
            kind.validate_inline_input(body.input)
        except ValidationError as exc:
            raise validation_problem("invalid input", errors_from_validation(exc, "input")) from None
        except (ValueError, TypeError) as exc:
            raise validation_problem("invalid input", [field_error("input", str(exc)[:300])]) from None
        input_bytes, content_type = _canonical_json(body.input), JSON_CONTENT_TYPE
    else:
        assert body.input_ref is not None
        input_ref, content_type = await _checked_upload_ref(clients, body.input_ref, kind)
    return JobRequest(
        kind=body.kind,
        options=options,
        deadline_seconds=body.deadline_seconds,
        input_bytes=input_bytes,
        input_ref=input_ref,
        input_content_type=content_type,
        idempotency_key=idempotency_key,
        source=source,
    )


async def _store_input(blob: BlobClient, data: bytes, content_type: str) -> None:
    """Small inputs in one put; large ones as staged blocks, a few in flight at a time."""
    settings = ContentSettings(content_type=content_type)
    if len(data) <= BLOCK_BYTES:
        await blob.upload_blob(data, overwrite=True, content_settings=settings)
        return
    view = memoryview(data)
    ids = [base64.b64encode(f"{n:08d}".encode()).decode() for n in range((len(data) + BLOCK_BYTES - 1) // BLOCK_BYTES)]
    gate = asyncio.Semaphore(4)

    async def stage(n: int, block_id: str) -> None:
        async with gate:
            await blob.stage_block(block_id, view[n * BLOCK_BYTES : (n + 1) * BLOCK_BYTES].tobytes())

    await asyncio.gather(*(stage(n, block_id) for n, block_id in enumerate(ids)))
    await blob.commit_block_list([BlobBlock(block_id=block_id) for block_id in ids], content_settings=settings)


def _status_name(status: Any) -> str | None:
    runtime = getattr(status, "runtime_status", None)
    return getattr(runtime, "value", runtime)


async def _store(clients: StorageClients, request: JobRequest, record: job_store.JobRecord) -> None:
    """Store the input under the job's name, if it came with the request (not an upload or a replay)."""
    if request.input_bytes is None:
        return
    assert record["input_ref"] is not None and request.input_content_type is not None
    blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"])
    await _store_input(blob, request.input_bytes, request.input_content_type)


async def _start(client: df.DurableOrchestrationClient, record: job_store.JobRecord) -> None:
    start: JobStart = {
        "job_id": record["job_id"],
        "kind": record["kind"],
        "input_ref": record["input_ref"],
        "input_content_type": record["input_content_type"],
        "options": record["options"],
        "deadline_at": record["deadline_at"],
        "submitted_at": record["created_at"],
    }
    await client.start_new(JOB_ORCHESTRATOR, instance_id=record["job_id"], client_input=start)


async def _all(*steps: Awaitable[Any]) -> None:
    """Run storage writes concurrently; wait for every one before raising the first failure."""
    for outcome in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


async def _arbitrate(
    client: df.DurableOrchestrationClient, clients: StorageClients, request: JobRequest, record: job_store.JobRecord
) -> Submitted | None:
    """Create the keyed job's row; None if this request won, else the job an earlier request created."""
    for _ in range(3):
        if await job_store.create_job_row(clients.jobs, record):
            return None
        existing = await job_store.get_job(clients.jobs, record["job_id"])
        if existing is None:
            continue  # the earlier submitter failed and removed its row: try again to be the one
        if existing["fingerprint"] != record["fingerprint"]:
            raise Problem(
                409,
                "this idempotency key was used for a different request",
                slug="idempotency-key-reused",
                errors=[field_error("Idempotency-Key", "already names a job created by a different request")],
            )
        await _restart_if_abandoned(client, clients, request, existing)
        return Submitted(existing, created=False)
    raise Problem(503, "the job could not be recorded; retry the request", headers={"Retry-After": "1"})


async def submit_job(client: df.DurableOrchestrationClient, clients: StorageClients, request: JobRequest) -> Submitted:
    """Create and start the job, or name the job an earlier request with the same key created."""
    job_id = job_id_for(request.idempotency_key)
    if request.input_bytes is not None and len(request.input_bytes) > BLOCK_BYTES:
        fingerprint = await asyncio.to_thread(request.fingerprint)  # hashing 100 MB must not stall the loop
    else:
        fingerprint = request.fingerprint()
    now = utc_now()
    record = job_store.new_job_record(
        job_id=job_id,
        kind=request.kind,
        created=now,
        input_ref=job_input_blob_name(job_id) if request.input_bytes is not None else request.input_ref,
        input_content_type=request.input_content_type,
        options=request.options,
        deadline_at=iso(now + timedelta(seconds=request.deadline_seconds)) if request.deadline_seconds else None,
        idempotency_key_hash=key_hash(request.idempotency_key) if request.idempotency_key is not None else None,
        fingerprint=fingerprint,
        source=request.source,
    )
    written = False
    try:
        if request.idempotency_key is not None:
            # The row decides between concurrent duplicates; only the winner writes anything else.
            earlier = await _arbitrate(client, clients, request, record)
            if earlier is not None:
                return earlier
            written = True
            await _all(job_store.write_index_row(clients.jobs, record), _store(clients, request, record))
        else:
            # A random id no other request can name: the row, its index entry and the input go in parallel,
            # so a submit costs two storage round trips, not four, before the orchestration starts.
            written = True
            await _all(
                _create_fresh_row(clients, record),
                job_store.write_index_row(clients.jobs, record),
                _store(clients, request, record),
            )
        await _start(client, record)
    except Problem:
        raise
    except Exception as exc:
        if written:
            await _undo(clients, record, stored=request.input_bytes is not None)
        log_event("job.start_failed", job_id=job_id, kind=request.kind, error=type(exc).__name__)
        raise Problem(503, "the job could not be started; retry the request", headers={"Retry-After": "1"}) from exc
    log_event("job.submitted", job_id=job_id, kind=request.kind, source=request.source)
    return Submitted(record, created=True)


async def _create_fresh_row(clients: StorageClients, record: job_store.JobRecord) -> None:
    if not await job_store.create_job_row(clients.jobs, record):
        raise RuntimeError("a random job id collided")


async def _undo(clients: StorageClients, record: job_store.JobRecord, *, stored: bool) -> None:
    try:
        if stored and record["input_ref"]:
            await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"]).delete_blob()
    except ResourceNotFoundError:
        pass
    finally:
        await job_store.remove_job(clients.jobs, record)


async def _restart_if_abandoned(
    client: df.DurableOrchestrationClient, clients: StorageClients, request: JobRequest, record: job_store.JobRecord
) -> None:
    """A row with no orchestration long after its creation: its submitter died between the two; finish its work."""
    if record["status"] != "PENDING":
        return
    age = (utc_now() - parse_iso(record["created_at"])).total_seconds()
    if age < STALE_START_SECONDS:
        return
    if _status_name(await client.get_status(record["job_id"])) is not None:
        return
    await _store(clients, request, record)
    await _start(client, record)
    log_event("job.restarted", job_id=record["job_id"], kind=record["kind"])
