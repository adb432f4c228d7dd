"""Submitting a job: the one path behind `POST /api/jobs`, the `jobs-inbox` queue and replays.

Order matters, so that a refused request stores nothing and starts nothing:
1. validate everything (kind, options, input or input reference, deadline) -> InvalidRequest;
2. insert the job row (the job id derives from the idempotency key): the single arbiter between
   concurrent duplicates; a loser compares request fingerprints and names the same job (starting it
   if it has no instance: its submitter died between recording and starting), or IdempotencyConflict;
3. only the winner stores the input blob and, at the same time, joins its admission lane (jobs.admission;
   QueueFull past MAX_PENDING_JOBS, checked once before anything is written and again, exactly, when
   joining); if any of that fails, it removes what it stored, its place and the row (within a bounded
   time: leftovers are the sweeper's), and the request can be retried. (A large raw body was staged
   block by block while it arrived, after 1 but before 2: storing it is committing this request's
   blocks, and before that they are no blob; see jobs.streamed_input.)
4. the job is now accepted: its row, its input and its place exist. The orchestration is started, and
   an HTTP submit answers 202 before that start (`answer_before_start`): a start that fails or dies with
   the instance is made good by the next poll or the orphan sweep, which find the row, the place and the
   input, all a start needs (jobs.recovery).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobType, ContentSettings
from azure.storage.blob.aio import BlobClient
from pydantic import ValidationError

import kinds
from jobs import admission, durable, inline_input
from jobs.callbacks import checked_callback
from jobs.errors import (
    IdempotencyConflict,
    InvalidRequest,
    QueueFull,
    TooLarge,
    Unavailable,
    errors_from_validation,
    field_error,
)
from jobs.requests import JSON_CONTENT_TYPE, JobRequest, SubmitBody, content_coded, job_id_for, key_hash
from jobs.streamed_input import BLOCK_BYTES, SHA256_METADATA, StagedInput, stage_body
from kinds.base import JobKind
from shared import tracing
from shared.clock import iso, parse_iso, utc_now
from shared.contracts import AdmissionTicket, JobStart, JobStatus
from shared.settings import Settings
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.admission import queue_key
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER, job_input_blob_name, upload_blob_name

STREAMED_BODY_BYTES = BLOCK_BYTES
"""A raw body larger than this goes to its blob as it arrives (stream_input)."""

MAX_UPLOAD_BYTES = 5 * 1024**3
"""The largest upload a job accepts (checked at submit: 413); bigger inputs make chunks too big to work in memory."""
# The compensation of a failed start must not hold the request (an outage answers 503 within 2 s): each of
# its two steps gets this long, and the orphan sweep finishes whatever an outage leaves.
UNDO_SECONDS = 0.75

_UPLOAD_REF = re.compile(r"uploads/([0-9a-f]{32})")


@dataclass(frozen=True)
class Submitted:
    """The job a submission names."""

    record: job_store.JobRecord
    created: bool  # False: an earlier request with the same idempotency key named this job
    admitted: bool = False  # created and admitted at once: it waits only for a worker (jobs.queue_progress)


# --- validation against the kind --------------------------------------------------------------------


def resolve_spec(name: str, settings: Settings) -> kinds.KindSpec:
    """The registered kind called `name`; InvalidRequest naming the known kinds if there is none."""
    spec = kinds.kind_spec(name, simulate_enabled=settings.enable_simulate_kind)
    if spec is None:
        names = ", ".join(kinds.kind_names(simulate_enabled=settings.enable_simulate_kind))
        errors = [field_error("kind", f"must be one of: {names}")]
        raise InvalidRequest(f"unknown job kind; known kinds: {names}", errors)
    return spec


def resolve_kind(name: str, settings: Settings) -> JobKind:
    """The kind called `name`; InvalidRequest naming the known kinds if there is none."""
    return resolve_spec(name, settings).kind


def raw_content_types(settings: Settings) -> list[str]:
    """The media types a raw POST /api/jobs body may have: every type some kind reads, but JSON (the envelope)."""
    types = kinds.all_input_content_types(simulate_enabled=settings.enable_simulate_kind)
    return [media_type for media_type in types if media_type != JSON_CONTENT_TYPE]


def parse_options(kind: JobKind, raw: dict[str, Any], prefix: str = "options") -> dict[str, Any]:
    """The kind's validated options; InvalidRequest naming each bad option under `prefix`."""
    try:
        options = kind.parse_options(raw)
    except ValidationError as exc:
        raise InvalidRequest("invalid options for this kind", errors_from_validation(exc, prefix)) from None
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("invalid options for this kind", [field_error(prefix, str(exc)[:300])]) from None
    return dict(options)


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


async def _checked_upload_ref(clients: StorageClients, ref: str, kind: JobKind) -> tuple[str, str]:
    """The upload's blob name and content type, if `ref` names an upload the server created and that holds
    a block blob of an accepted size."""
    match = _UPLOAD_REF.fullmatch(ref)
    if match is None:
        raise InvalidRequest(
            "input_ref must be the input_ref of an upload (POST /api/uploads)",
            [field_error("input_ref", "must look like uploads/<32 hex digits>, as returned by POST /api/uploads")],
        )
    upload = await job_store.get_upload(clients.jobs, match.group(1))
    if upload is None:
        raise InvalidRequest("no such upload", [field_error("input_ref", "this server created no such upload")])
    blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, upload_blob_name(upload["upload_id"]))
    try:
        properties = await blob.get_blob_properties()
    except ResourceNotFoundError:
        raise InvalidRequest(
            "the upload holds no data yet", [field_error("input_ref", "nothing was uploaded to this upload_url")]
        ) from None
    if properties.blob_type != BlobType.BLOCKBLOB:
        raise InvalidRequest(
            "the upload must be a block blob (x-ms-blob-type: BlockBlob)",
            [field_error("input_ref", "page and append blobs are not accepted; upload a block blob")],
        )
    if content_coded(properties.content_settings.content_encoding):
        # Stored with a Content-Encoding (gzip, ...): its bytes are not the data the kind reads, as for a raw
        # body sent content-coded (415 there, api.http.refuse_content_coding).
        raise InvalidRequest(
            "the upload was stored content-coded; upload the data uncompressed, without Content-Encoding",
            [field_error("input_ref", "the upload has a Content-Encoding: upload it uncompressed")],
        )
    if properties.size == 0:
        raise InvalidRequest("the uploaded input is empty", [field_error("input_ref", "the upload is empty")])
    if properties.size > MAX_UPLOAD_BYTES:
        raise TooLarge(
            f"the uploaded input must be at most {MAX_UPLOAD_BYTES} bytes",
            [field_error("input_ref", f"the upload holds {properties.size} bytes")],
        )
    blob_type = (properties.content_settings.content_type or "").split(";")[0].strip().lower()
    declared = upload["content_type"] or (blob_type if blob_type not in ("", "application/octet-stream") else None)
    content_type = declared or kind.input_content_types[0]
    if content_type not in kind.input_content_types:
        accepted = ", ".join(kind.input_content_types)
        raise InvalidRequest(
            f"this kind reads {accepted}", [field_error("input_ref", f"content type must be one of: {accepted}")]
        )
    return ref, content_type


async def request_from_body(
    body: SubmitBody,
    *,
    settings: Settings,
    clients: StorageClients,
    idempotency_key: str | None,
    source: str,
    client: str = admission.ANONYMOUS_CLIENT,
) -> JobRequest:
    """Validate a JSON submission (HTTP envelope or inbox message) against its kind."""
    spec = resolve_spec(body.kind, settings)
    kind = spec.kind
    options = parse_options(kind, body.options)
    has_input, has_ref = body.input is not None, body.input_ref is not None
    input_bytes: bytes | None = None
    input_ref: str | None = None
    content_type: str | None = None
    if not kind.requires_input:
        if has_input or has_ref:
            field = "input" if has_input else "input_ref"
            raise InvalidRequest(f"{body.kind} takes no input", [field_error(field, "not allowed for this kind")])
    elif has_input == has_ref:
        message = "give exactly one of input and input_ref"
        raise InvalidRequest(message, [field_error("input", message), field_error("input_ref", message)])
    elif has_input:
        if not spec.accepts_inline_input:
            accepted = ", ".join(kind.input_content_types)
            raise InvalidRequest(
                f"{body.kind} reads {accepted}: post the data raw with that Content-Type, or upload it",
                [field_error("input", "inline JSON input is not accepted by this kind")],
            )
        try:
            kind.validate_inline_input(body.input)
        except ValidationError as exc:
            raise InvalidRequest("invalid input", errors_from_validation(exc, "input")) from None
        except (ValueError, TypeError) as exc:
            raise InvalidRequest("invalid input", [field_error("input", str(exc)[:300])]) from None
        input_bytes, content_type = _canonical_json(body.input), JSON_CONTENT_TYPE
    else:
        assert body.input_ref is not None
        input_ref, content_type = await _checked_upload_ref(clients, body.input_ref, kind)
    callback = body.callback
    return JobRequest(
        kind=body.kind,
        options=options,
        deadline_seconds=body.deadline_seconds,
        input_bytes=input_bytes,
        input_ref=input_ref,
        input_content_type=content_type,
        idempotency_key=idempotency_key,
        source=source,
        priority=body.priority,
        client=client,
        callback=dict(await checked_callback(callback.url, callback.events, settings)) if callback else None,
    )


# --- storing the input and starting -----------------------------------------------------------------


async def _put_input(blob: BlobClient, data: bytes, content_type: str, sha256: str) -> None:
    """Small inputs in one put; large ones as staged blocks, a few in flight at a time.

    The blob is only created (If-None-Match: *), never replaced: a second submitter of the same keyed
    request must not replace the bytes (and so the ETag) that an already started job planned with.
    ResourceExistsError says someone created it first.
    """
    if len(data) <= BLOCK_BYTES:
        await blob.upload_blob(
            data,
            overwrite=False,
            content_settings=ContentSettings(content_type=content_type),
            metadata={SHA256_METADATA: sha256},
        )
        return
    # Staged as a body that arrives is (jobs.streamed_input), its blocks copied one at a time.
    view = memoryview(data)
    staged = await stage_body(_slices(view), blob)
    await _commit(blob, staged.block_ids, content_type, sha256)


async def _slices(view: memoryview) -> AsyncIterator[bytes]:
    for start in range(0, len(view), BLOCK_BYTES):
        yield view[start : start + BLOCK_BYTES].tobytes()


async def _commit(
    blob: BlobClient, block_ids: Sequence[str], content_type: str, sha256: str, replacing: str | None = None
) -> None:
    """Make the staged blocks the blob, unless it exists (ResourceExistsError); with `replacing` (an ETag),
    only in place of that version of it."""
    conditions: dict[str, Any] = {"match_condition": MatchConditions.IfMissing}  # If-None-Match: *
    if replacing is not None:
        conditions = {"etag": replacing, "match_condition": MatchConditions.IfNotModified}
    await blob.commit_block_list(
        [BlobBlock(block_id=i) for i in block_ids],
        content_settings=ContentSettings(content_type=content_type),
        metadata={SHA256_METADATA: sha256},
        **conditions,  # (IfMissing with an etag as well breaks the SDK)
    )


async def _stored_sha256(blob: BlobClient) -> tuple[str, str | None]:
    """The SHA-256 of the bytes a blob holds and its ETag ("" and None: no blob), asked only when a blob is
    where this request's input goes. From its metadata; a blob stored without it (by an earlier version) is
    read, a block at a time."""
    try:
        properties = await blob.get_blob_properties()
        recorded = (properties.metadata or {}).get(SHA256_METADATA)
        if recorded:
            return recorded, properties.etag
        hasher = hashlib.sha256()
        download = await blob.download_blob(etag=properties.etag, match_condition=MatchConditions.IfNotModified)
        async for part in download.chunks():
            hasher.update(part)
        return hasher.hexdigest(), properties.etag
    except ResourceNotFoundError:
        return "", None


async def _store(clients: StorageClients, request: JobRequest, record: job_store.JobRecord) -> None:
    """Store the input under the job's name, if it came with the request (not an upload or a replay).

    A blob already there is the same request's (a concurrent submitter of the same key: the fingerprints
    matched, so the bytes are the same, as its SHA-256 shows), unless a failed submission left it and a
    different request reused the key: then it is replaced.
    """
    staged = request.staged
    if staged is None and (request.input_bytes is None or inline_input.is_inline(request)):
        return  # an upload, a replay, or a small input that travels inline (jobs.inline_input)
    assert record["input_ref"] is not None and request.input_content_type is not None
    content_type = request.input_content_type
    sha256 = request.input_sha256()
    assert sha256 is not None
    blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"])
    if staged is not None and not staged.stored:
        # Only hashed, as its input was stored when the body arrived (stream_input): still there, or gone
        # with its job since (purged), which this request recreates. Its body is not here any more then: the
        # submit fails (503) and the retry stores it.
        if (await _stored_sha256(blob))[0] != sha256:
            raise RuntimeError("the input of this keyed body went away while the body arrived")
        return
    try:
        if staged is not None:
            await _commit(blob, staged.block_ids, content_type, sha256)
        else:
            assert request.input_bytes is not None
            await _put_input(blob, request.input_bytes, content_type, sha256)
        return
    except ResourceExistsError:
        stored, etag = await _stored_sha256(blob)
        if stored == sha256:
            return
    # A failed submission's leftover, or gone again since: replaced (only the version that was compared).
    if staged is not None:
        # Other bytes were committed before this request staged (a commit since could only be of this same
        # request, whose row this is), so its blocks are still there. A blob deleted since took them with
        # it: the commit fails, the submit answers 503 and the retry stores the body.
        await _commit(blob, staged.block_ids, content_type, sha256, replacing=etag)
    else:
        assert request.input_bytes is not None
        if etag is not None:
            await blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        await _put_input(blob, request.input_bytes, content_type, sha256)


async def stream_input(clients: StorageClients, job_id: str, chunks: AsyncIterator[bytes], keyed: bool) -> StagedInput:
    """Stage a large raw body under the job's name as it arrives (jobs.streamed_input): the staged blocks,
    which the submit commits. QueueFull before the first block when too many jobs wait.

    A keyed body whose job exists and whose input is stored (or was: the job is past PENDING) is only hashed:
    the request names that job or conflicts with it, and it need not store anything, not even blocks. The
    job row and the blob are read first for that (the row also lets a retry of an accepted job through when
    the queue is full).

    In a span of its own, a child of the submit's: the body's arrival is most of a large submit's time, and
    each block's storage call is a dependency in the job's trace."""
    existing = await job_store.get_job(clients.jobs, job_id) if keyed else None
    if existing is None:
        await refuse_if_full(clients, job_id, keyed=False)
    blob = clients.blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
    stored = existing is not None and (existing["status"] != JobStatus.PENDING.value or await blob.exists())
    with tracing.span("job input staged", attributes={"job.id": job_id}) as span:
        staged = await stage_body(chunks, None if stored else blob)
        span.set_attribute("job.input.bytes", staged.size)
        span.set_attribute("job.input.blocks", len(staged.block_ids))
    return staged


def admission_ticket(record: job_store.JobRecord, admitted: bool = False) -> AdmissionTicket:
    """The job's place in admission control (its queue row's key derives from the record)."""
    lane = admission.check_priority(record["priority"])
    key = queue_key(lane, record["created_at"], record["job_id"])
    return {"lane": lane, "client": record["client"], "key": key, "admitted": admitted}


def job_start(record: job_store.JobRecord, ticket: AdmissionTicket | None = None) -> JobStart:
    """The orchestration's input for a recorded job (with its admission ticket once it joined its lane)."""
    start: JobStart = {
        "job_id": record["job_id"],
        "kind": record["kind"],
        "input_ref": record["input_ref"],
        "input_content_type": record["input_content_type"],
        "options": record["options"],
        "deadline_at": record["deadline_at"],
        "submitted_at": record["created_at"],
        "index_key": record["index_key"],
    }
    if record.get("traceparent"):
        start["traceparent"] = record.get("traceparent")
    if record.get("callback"):
        start["callback"] = record.get("callback")  # type: ignore[typeddict-item]
    inline = record.get("input_inline")
    if inline:
        start["input_inline"] = inline
    if ticket is not None:
        start["admission"] = ticket
    return start


async def join_lane(clients: StorageClients, record: job_store.JobRecord) -> AdmissionTicket:
    """Join the job's admission lane (idempotent); QueueFull past MAX_PENDING_JOBS."""
    settings = clients.settings
    ticket = admission_ticket(record)
    (joined,) = await admission.enqueue_async(settings, [(ticket, record["job_id"])])
    if joined == "full":
        raise QueueFull(admission.retry_after_seconds(settings))
    ticket["admitted"] = joined == "admitted"
    return ticket


async def refuse_if_full(clients: StorageClients, job_id: str, keyed: bool) -> None:
    """QueueFull before anything is written when too many jobs wait, unless a keyed retry names an existing job."""
    settings = clients.settings
    if await admission.has_room_async(settings):
        return
    if keyed and await job_store.get_job(clients.jobs, job_id) is not None:
        return  # a retry of an accepted job answers as before
    raise QueueFull(admission.retry_after_seconds(settings))


async def _record_and_join(
    clients: StorageClients, record: job_store.JobRecord, *writes: Awaitable[Any]
) -> AdmissionTicket:
    """Write the job's rows and input and join its admission lane at once; the ticket once all are done.

    The join does not depend on the writes (its queue row's key derives from the record, not from storage),
    so it need not wait for them: a submit pays one round of storage calls, not two. Every step is waited
    for before the first failure is raised, so the caller's undo sees everything that was written; a "full"
    lane (QueueFull) is raised only when no write failed, as the join created no place to give back then.
    A crash between the two leaves a place without a started job, which the orphan sweep releases
    (jobs.sweep.release_stale_places), as it did when the join came second.
    """

    joined, *written = await asyncio.gather(join_lane(clients, record), *writes, return_exceptions=True)
    for outcome in written:
        if isinstance(outcome, BaseException):
            raise outcome
    if isinstance(joined, BaseException):
        raise joined
    return cast(AdmissionTicket, joined)


# --- the arbiter ----------------------------------------------------------------------------------------


async def _arbitrate(
    client: Any, clients: StorageClients, request: JobRequest, record: job_store.JobRecord
) -> Submitted | None:
    """Create the keyed job's row; None if this request won, else the job an earlier request created."""
    for _ in range(3):
        if await job_store.create_job_row(clients.jobs, record):
            return None
        existing = await job_store.get_job(clients.jobs, record["job_id"])
        if existing is None:
            continue  # the earlier submitter failed and removed its row: try again to be the one
        if existing["fingerprint"] != record["fingerprint"]:
            raise IdempotencyConflict(existing["job_id"])
        await _start_if_never_started(client, clients, request, existing)
        return Submitted(existing, created=False)
    raise Unavailable("the job could not be recorded; retry the request")


async def _start_if_never_started(
    client: Any, clients: StorageClients, request: JobRequest, record: job_store.JobRecord
) -> None:
    """A PENDING row without an instance: its submitter died (or is still on its way) between recording and
    starting. Finish its work now: the client retrying with the same key must not wait for a job nobody
    starts. If the first submitter is alive, both start and one start wins (jobs.durable)."""
    if record["status"] != "PENDING" or await durable.status(client, record["job_id"]) is not None:
        return
    ticket = await _record_and_join(
        clients, record, job_store.write_index_row(clients.jobs, record), _store(clients, request, record)
    )
    if await durable.start_unless_exists(client, job_start(record, ticket)):
        log_event("job.restarted", job_id=record["job_id"], kind=record["kind"])


def _claim_checked(request: JobRequest) -> bool:
    """Whether the posted input goes to a blob under the job's name (inputs too large to travel inline)."""
    return request.posted() and not inline_input.is_inline(request)


def _new_record(request: JobRequest, job_id: str, fingerprint: str) -> job_store.JobRecord:
    # The submit span is current (submit_job): its context becomes the job's trace.
    now = utc_now()
    deadline = iso(now + timedelta(seconds=request.deadline_seconds)) if request.deadline_seconds else None
    return job_store.new_job_record(
        job_id=job_id,
        kind=request.kind,
        created=now,
        input_ref=job_input_blob_name(job_id) if _claim_checked(request) else request.input_ref,
        input_content_type=request.input_content_type,
        options=request.options,
        deadline_at=deadline,
        idempotency_key_hash=key_hash(request.idempotency_key) if request.idempotency_key is not None else None,
        fingerprint=fingerprint,
        source=request.source,
        priority=request.priority,
        client=request.client,
        traceparent=tracing.current_traceparent() or tracing.new_traceparent(),
        callback=request.callback,
        input_inline=inline_input.inline_text(request),
    )


async def submit_job(
    client: Any, clients: StorageClients, request: JobRequest, *, answer_before_start: bool = False
) -> Submitted:
    """Create and start the job, or name the job an earlier request with the same key created.

    `answer_before_start`: return once the job is recorded (its rows, input and admission place) and start
    its orchestration right after, in the background (an HTTP submit: the start is a third of its time).
    A start that fails or dies there is made good by whoever looks at the job next (jobs.recovery).
    Without it (queue intake, replays) the start is awaited, and a failed one undoes the job.

    Runs in the submit span, a child of the caller's trace context (or the root of a new trace).
    """
    job_id = job_id_for(request.idempotency_key)
    attributes = {"job.id": job_id, "job.kind": request.kind, "job.source": request.source}
    # In Azure the host's request span is current (a child of the caller's traceparent): join it; devhost
    # has none, so the caller's header is the parent.
    parent = None if tracing.current_traceparent() else request.traceparent
    with tracing.span("job submit", parent=parent, attributes=attributes) as span:
        if request.body is not None:  # a large raw body: read now, into the job's blob as it arrives
            keyed = request.idempotency_key is not None
            request.staged = await stream_input(clients, job_id, request.body, keyed)
            request.body = None
        submitted = await _submit_job(client, clients, request, job_id, answer_before_start)
        span.set_attribute("job.created", submitted.created)
        return submitted


async def _submit_job(
    client: Any, clients: StorageClients, request: JobRequest, job_id: str, answer_before_start: bool
) -> Submitted:
    if request.input_bytes is not None and len(request.input_bytes) > BLOCK_BYTES:
        fingerprint = await asyncio.to_thread(request.fingerprint)  # hashing 100 MB must not stall the loop
    else:
        fingerprint = request.fingerprint()

    record = _new_record(request, job_id, fingerprint)
    await refuse_if_full(clients, job_id, keyed=request.idempotency_key is not None)
    written = False
    try:
        if request.idempotency_key is not None:
            # The row decides between concurrent duplicates; only the winner writes anything else.
            earlier = await _arbitrate(client, clients, request, record)
            if earlier is not None:
                return earlier
            written = True
            ticket = await _record_and_join(
                clients, record, job_store.write_index_row(clients.jobs, record), _store(clients, request, record)
            )
        else:
            # A random id no other request can name: the row, its index entry and the input go in parallel
            # with the admission join, so a submit waits for one round of writes before the orchestration starts.
            written = True
            ticket = await _record_and_join(
                clients,
                record,
                _create_fresh_row(clients, record),
                job_store.write_index_row(clients.jobs, record),
                _store(clients, request, record),
            )
        if answer_before_start:
            start_soon(client, job_start(record, ticket))
        else:
            await durable.start(client, job_start(record, ticket))
    except QueueFull:
        if written:
            # "full" joined nothing: only the writes that went out beside the join are undone.
            await _undo(clients, record, stored=request.posted(), placed=False)
        raise
    except (IdempotencyConflict, InvalidRequest, Unavailable):
        raise
    except Exception as exc:
        # Only a keyed job can have been started by someone else: a random id is this request's alone.
        if written and request.idempotency_key is not None and await _started_anyway(client, job_id):
            # A concurrent retry of the same key found no instance yet and started it first: the job runs.
            log_event("job.submitted", job_id=job_id, kind=request.kind, source=request.source)
            return Submitted(record, created=True)
        if written:
            await _undo(clients, record, stored=request.posted())
        log_event("job.start_failed", job_id=job_id, kind=request.kind, error=type(exc).__name__)
        raise Unavailable("the job could not be started; retry the request") from exc
    log_event("job.submitted", job_id=job_id, kind=request.kind, source=request.source)
    return Submitted(record, created=True, admitted=ticket["admitted"])


# --- starting after the answer ---------------------------------------------------------------------------

START_ATTEMPTS = (0.0, 0.5, 1.0)
"""Pauses before each attempt of a start made after the answer; all of them begin well within
jobs.recovery.RESTART_AFTER, so a recovery never races a start that is still to be tried."""
START_ATTEMPT_SECONDS = 5.0
STARTS_IN_FLIGHT = 16
"""Starts after the answer running at once per process: a batch of a thousand jobs must not open a thousand
calls to the host together (each is an HTTP call and three storage calls there)."""
FRESH_START = timedelta(seconds=5)
_starting: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to its tasks
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def start_soon(client: Any, start: JobStart) -> None:
    """Start the recorded job's orchestration in the background (the submit has answered or is answering)."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(STARTS_IN_FLIGHT)
    task = loop.create_task(_start_after_answer(client, start, gate))
    _starting.add(task)
    task.add_done_callback(_starting.discard)


async def _start_after_answer(client: Any, start: JobStart, gate: asyncio.Semaphore) -> None:
    error = ""
    for attempt, pause in enumerate(START_ATTEMPTS):
        await asyncio.sleep(pause)
        async with gate:
            # The first attempt of a fresh job does not ask Durable first (as any winner's start); a retry
            # asks, since the failed attempt may have reached the host after all, and so does a job whose
            # writes (or its wait for the gate) took so long that a recovery may have started it (a start on
            # an ended instance would run it again).
            fresh = utc_now() - parse_iso(start["submitted_at"]) < FRESH_START
            starting = durable.start_absent if attempt == 0 and fresh else durable.start_unless_exists
            try:
                await asyncio.wait_for(starting(client, start), START_ATTEMPT_SECONDS)
                return
            except Exception as exc:
                error = type(exc).__name__
    # The job is recorded and was answered 202: the next poll or the orphan sweep starts it (jobs.recovery).
    logging.getLogger("longrun").warning("start of job %s deferred: %s", start["job_id"], error)
    log_event("job.start_deferred", job_id=start["job_id"], error=error)


async def _create_fresh_row(clients: StorageClients, record: job_store.JobRecord) -> None:
    if not await job_store.create_job_row(clients.jobs, record):
        raise RuntimeError("a random job id collided")


async def _started_anyway(client: Any, job_id: str) -> bool:
    """Whether the job has an instance after all (a concurrent retry of the same key started it)."""
    try:
        return await asyncio.wait_for(durable.status(client, job_id), UNDO_SECONDS) is not None
    except Exception:
        return False  # Durable cannot say: undo, as for any start that failed


async def _undo(clients: StorageClients, record: job_store.JobRecord, *, stored: bool, placed: bool = True) -> None:
    """Remove what a failed submission wrote, within UNDO_SECONDS; what an outage leaves, the sweeper removes.

    `placed=False`: the admission join answered "full", so there is no place to release.
    """

    async def undo() -> None:
        try:
            if stored and record["input_ref"]:
                await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"]).delete_blob()
        except ResourceNotFoundError:
            pass
        finally:
            try:
                if placed:
                    await admission.release_async(clients.settings, admission_ticket(record)["key"])
            finally:
                await job_store.remove_job(clients.jobs, record)

    try:
        await asyncio.wait_for(undo(), UNDO_SECONDS)
    except Exception as exc:  # storage is down: answer 503 now, the orphan sweep finishes the undo
        logging.getLogger("longrun").warning("undo of job %s failed: %s", record["job_id"], type(exc).__name__)
        log_event("job.undo_failed", job_id=record["job_id"], error=type(exc).__name__)
