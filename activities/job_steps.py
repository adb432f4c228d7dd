"""The work of a job, one activity per step. Each is idempotent and takes and returns small JSON dicts.

The plan lives in a blob (`jobs/{id}/plan.json`), so chunk activities receive only the job id, the
chunk number and the attempt: the orchestration's history does not grow with the plan. Outputs go
to deterministic blob names with conditional writes, so a re-run step changes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings
from pydantic import ValidationError

from activities.blob_source import BlobByteSource
from activities.stop_marker import CHECK_INTERVAL_SECONDS, StopSignal, write_stop_marker
from kinds import get_kind
from kinds.base import ChunkStopped, JobKind
from shared.clock import iso, utc_now
from shared.contracts import DeadLetterRecord, JobError, JobOutcome, JobStart
from shared.failures import NonRetryableError
from shared.settings import Settings, get_settings
from shared.telemetry import log_event
from storage import dead_letters
from storage import jobs as job_store
from storage.clients import blob_service, connection_string, queue_service, table_service
from storage.names import (
    CONTAINERS,
    PAYLOADS_CONTAINER,
    QUEUES,
    RESULTS_CONTAINER,
    TABLES,
    job_prefix,
    partial_blob_name,
    result_blob_name,
    stop_marker_blob_name,
)

RESULT_CONTENT_TYPE = "application/json"


PermanentStepError = NonRetryableError
"""A failure no retry can fix (one protocol for kinds and steps: shared.failures)."""


class JobPlan(TypedDict):
    kind: str
    input_ref: str | None
    input_content_type: str | None
    options: dict[str, Any]
    deadline_at: str | None
    input_size: int
    input_etag: NotRequired[str | None]
    chunks: list[dict[str, Any]]


def plan_blob_name(job_id: str) -> str:
    return f"{job_prefix(job_id)}plan.json"


@lru_cache(maxsize=4)
def _containers(settings: Settings) -> tuple[ContainerClient, ContainerClient]:
    service = blob_service(settings)
    return service.get_container_client(PAYLOADS_CONTAINER), service.get_container_client(RESULTS_CONTAINER)


def _payloads(settings: Settings) -> ContainerClient:
    return _containers(settings)[0]


def _results(settings: Settings) -> ContainerClient:
    return _containers(settings)[1]


def _kind(settings: Settings, name: str) -> JobKind:
    kind = get_kind(name, simulate_enabled=settings.enable_simulate_kind)
    if kind is None:
        raise PermanentStepError("unknown_kind", f"unknown job kind {name!r}")
    return kind


def _permanent(exc: NonRetryableError) -> PermanentStepError:
    return PermanentStepError(exc.error_type, exc.message)


def _source(settings: Settings, input_ref: str | None, plan: JobPlan | None = None) -> BlobByteSource | None:
    """The job's input, pinned to the version seen when it was planned (from the plan, or read now)."""
    if not input_ref:
        return None
    blob = _payloads(settings).get_blob_client(input_ref)
    if plan is not None:
        # Size and version known from the plan: no request per chunk.
        return BlobByteSource(blob, plan["input_size"], etag=plan.get("input_etag"))
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError as exc:
        raise PermanentStepError("invalid_input", "the job's input blob does not exist") from exc
    return BlobByteSource(blob, int(properties.size), etag=properties.etag)


def _write_once(container: ContainerClient, name: str, body: bytes, content_type: str) -> bool:
    """Create a blob unless it exists (then the first write wins); True if this call wrote it."""
    try:
        container.get_blob_client(name).upload_blob(
            body, overwrite=False, content_settings=ContentSettings(content_type=content_type)
        )
    except ResourceExistsError:
        return False
    return True


@lru_cache(maxsize=32)
def _cached_plan(settings: Settings, job_id: str) -> JobPlan:
    data = _results(settings).get_blob_client(plan_blob_name(job_id)).download_blob().readall()
    plan: JobPlan = json.loads(data)
    return plan


def load_plan(settings: Settings, job_id: str) -> JobPlan:
    """The job's plan (immutable once written, so each worker reads it once)."""
    try:
        return _cached_plan(settings, job_id)
    except ResourceNotFoundError as exc:
        raise PermanentStepError("plan_missing", "the job's plan is gone (the job was cleaned up)") from exc


@lru_cache(maxsize=4)
def ensure_local_resources(settings: Settings) -> None:
    """Locally (a connection string: Azurite) create what the steps write to; in Azure the infrastructure does."""
    if not connection_string(settings):
        return
    for container in CONTAINERS:
        try:
            blob_service(settings).create_container(container)
        except ResourceExistsError:
            pass
    for queue in QUEUES:
        try:
            queue_service(settings).create_queue(queue)
        except ResourceExistsError:
            pass
    for table in TABLES:
        try:
            table_service(settings).create_table(table)
        except ResourceExistsError:
            pass


def orchestration_config(settings: Settings) -> dict[str, Any]:
    """What the orchestrator needs from the settings (it must not read them itself: it replays)."""
    return {
        "retry": {
            "first_interval_seconds": settings.retry_first_interval_seconds,
            "backoff_coefficient": settings.retry_backoff_coefficient,
            "max_interval_seconds": settings.retry_max_interval_seconds,
            "max_attempts": settings.retry_max_attempts,
        },
        "max_parallel_chunks": settings.max_parallel_chunks,
        "chunks_per_sub_orchestration": settings.chunks_per_sub_orchestration,
    }


def wave_aligned_target(size: int, target_chunk_bytes: int, max_parallel: int) -> int:
    """A chunk size near the target that splits the input into whole waves of `max_parallel` chunks.

    The orchestrator runs chunks in waves; 13 chunks with 4 at a time would leave a wave of one.
    """
    if size <= 0:
        return target_chunk_bytes
    chunks = math.ceil(size / target_chunk_bytes)
    if chunks <= max_parallel:
        return target_chunk_bytes if chunks == 1 else math.ceil(size / chunks)
    aligned = math.ceil(chunks / max_parallel) * max_parallel
    return max(1, math.ceil(size / aligned))


def prepare_job(start: JobStart) -> dict[str, Any]:
    """Mark the job RUNNING, validate its input and split it into chunks (plan blob); returns count and config."""
    settings = get_settings()
    ensure_local_resources(settings)
    job_id = start["job_id"]
    job_store.mark_running(settings, job_id)
    results = _results(settings)
    config = orchestration_config(settings)
    if results.get_blob_client(plan_blob_name(job_id)).exists():
        return {**config, "chunk_count": len(load_plan(settings, job_id)["chunks"])}
    kind = _kind(settings, start["kind"])
    source = _source(settings, start.get("input_ref"))
    try:
        options = kind.parse_options(start.get("options") or {})
    except (ValidationError, ValueError) as exc:
        raise PermanentStepError("invalid_options", " ".join(str(exc).split())[:300]) from exc
    size = source.size if source is not None else 0
    target = wave_aligned_target(size, settings.chunk_target_bytes, settings.max_parallel_chunks)
    try:
        chunks = kind.plan(source, options, target, settings.max_chunks_per_job)
    except NonRetryableError as exc:
        raise _permanent(exc) from exc
    plan: JobPlan = {
        "kind": start["kind"],
        "input_ref": start.get("input_ref"),
        "input_content_type": start.get("input_content_type"),
        "options": options,
        "deadline_at": start.get("deadline_at"),
        "input_size": size,
        "input_etag": source.etag if source is not None else None,
        "chunks": list(chunks),
    }
    if not _write_once(results, plan_blob_name(job_id), json.dumps(plan).encode(), RESULT_CONTENT_TYPE):
        plan = load_plan(settings, job_id)  # a concurrent run planned first; keep its plan
    log_event("job.planned", job_id=job_id, kind=start["kind"], chunks=len(plan["chunks"]), bytes=size)
    return {**config, "chunk_count": len(plan["chunks"])}


def process_chunk(job_id: str, index: int, attempt: int) -> dict[str, Any]:
    """Process one chunk into its partial blob; returns {"stopped": True} if the job was told to stop."""
    settings = get_settings()
    results = _results(settings)
    name = partial_blob_name(job_id, index)
    if results.get_blob_client(name).exists():
        return {"index": index, "partial_ref": name, "reused": True}
    plan = load_plan(settings, job_id)
    should_stop = StopSignal(results, job_id, deadline_at=plan.get("deadline_at"))
    stopped = {"index": index, "stopped": True}
    if should_stop.check_now():
        return stopped
    kind = _kind(settings, plan["kind"])
    source = _source(settings, plan["input_ref"], plan)
    started_at = time.time()
    try:
        partial = kind.process_chunk(source, plan["chunks"][index], plan["options"], attempt, should_stop)
    except ChunkStopped:
        return stopped
    except NonRetryableError as exc:
        _log_chunk_failure(job_id, plan["kind"], index, attempt, started_at, exc.error_type)
        raise _permanent(exc) from exc
    except Exception as exc:
        _log_chunk_failure(job_id, plan["kind"], index, attempt, started_at, type(exc).__name__)
        raise
    finished_at = time.time()
    if should_stop.check_now():
        return stopped  # never add outputs to a job that is being cleaned up
    document = {
        "chunk": index,
        "attempt": attempt,
        "started_at": started_at,
        "finished_at": finished_at,
        "pid": os.getpid(),
        "partial": partial,
    }
    _write_once(results, name, json.dumps(document).encode(), RESULT_CONTENT_TYPE)
    rows = partial.get("rows") if isinstance(partial, dict) else None
    log_event(
        "chunk.processed",
        job_id=job_id,
        kind=plan["kind"],
        chunk=index,
        attempt=attempt,
        duration_ms=int((finished_at - started_at) * 1000),
        rows=rows,
    )
    return {"index": index, "partial_ref": name}


def _log_chunk_failure(job_id: str, kind: str, index: int, attempt: int, started_at: float, error: str) -> None:
    log_event(
        "chunk.failed",
        logging.WARNING,
        job_id=job_id,
        kind=kind,
        chunk=index,
        attempt=attempt,
        duration_ms=int((time.time() - started_at) * 1000),
        error_type=error,
    )


def read_partial(settings: Settings, job_id: str, index: int) -> Any:
    data = _results(settings).get_blob_client(partial_blob_name(job_id, index)).download_blob().readall()
    return json.loads(data)["partial"]


def merge_partials(job_id: str, chunk_count: int) -> dict[str, Any]:
    """Merge the partials (read by their deterministic names, in order) into the result blob."""
    settings = get_settings()
    plan = load_plan(settings, job_id)
    kind = _kind(settings, plan["kind"])
    partials = [read_partial(settings, job_id, index) for index in range(chunk_count)]
    try:
        result = kind.merge(partials, plan["options"])
        summary = kind.summarize(result)
    except NonRetryableError as exc:
        raise _permanent(exc) from exc
    name = result_blob_name(job_id)
    # Deterministic content: overwriting with the same bytes on a re-run is harmless.
    _results(settings).get_blob_client(name).upload_blob(
        json.dumps(result).encode(), overwrite=True, content_settings=ContentSettings(content_type=RESULT_CONTENT_TYPE)
    )
    return {"result_ref": name, "content_type": RESULT_CONTENT_TYPE, "summary": summary}


def watch_for_stop(job_id: str, seconds: float) -> dict[str, bool]:
    """Wait up to `seconds` for the job's stop marker (or deadline); {"stopped": True} as soon as it appears.

    Run beside a long backoff timer so a cancel does not wait for the timer (see orchestrators.steps.back_off).
    """
    settings = get_settings()
    try:
        deadline_at = load_plan(settings, job_id).get("deadline_at")
    except PermanentStepError:
        return {"stopped": True}  # the job was cleaned up
    should_stop = StopSignal(_results(settings), job_id, deadline_at=deadline_at)
    give_up = time.monotonic() + max(0.0, seconds)
    while time.monotonic() < give_up:
        if should_stop():
            return {"stopped": True}
        time.sleep(min(CHECK_INTERVAL_SECONDS, max(0.0, give_up - time.monotonic())))
    return {"stopped": should_stop.check_now()}


def request_stop(job_id: str, reason: str) -> None:
    """Write the stop marker that running chunks poll."""
    write_stop_marker(_results(get_settings()), job_id, reason)


def discard_outputs(job_id: str, keep_result: bool) -> int:
    """Delete the job's partials and plan (and its result unless kept); the stop marker stays. Returns count."""
    settings = get_settings()
    results = _results(settings)
    keep = {result_blob_name(job_id)} if keep_result else set()
    keep.add(stop_marker_blob_name(job_id))
    deleted = 0
    for blob in results.list_blobs(name_starts_with=job_prefix(job_id)):
        if blob.name in keep:
            continue
        try:
            results.delete_blob(blob.name)
            deleted += 1
        except ResourceNotFoundError:
            pass
    _cached_plan.cache_clear()
    return deleted


def finalize_job(job_id: str, outcome: JobOutcome) -> int:
    """Remove the job's working blobs (the result too unless it COMPLETED) and record its outcome; idempotent."""
    deleted = discard_outputs(job_id, keep_result=outcome["status"] == "COMPLETED")
    job_store.record_outcome(get_settings(), job_id, outcome)
    return deleted


def dead_letter_job(start: JobStart, error: JobError) -> str:
    """Record the failed job as a dead letter (its input blob is kept for a replay); returns the record id."""
    record: DeadLetterRecord = {
        "id": f"job-{start['job_id']}",
        "source": "job",
        "job_id": start["job_id"],
        "kind": start["kind"],
        "input_ref": start.get("input_ref"),
        "input_content_type": start.get("input_content_type"),
        "options": start.get("options"),
        "error_type": error["type"],
        "reason": error["message"],
        "attempts": error["attempts"],
        "raw_message": None,
        "created_at": iso(utc_now()),
    }
    dead_letters.record_dead_letter(get_settings(), record)
    log_event(
        "job.deadlettered",
        logging.WARNING,
        job_id=start["job_id"],
        kind=start["kind"],
        error_type=error["type"],
        attempts=error["attempts"],
    )
    return record["id"]
