"""Planning a job: validate its options, split its input into chunks and keep the plan in a blob.

The plan lives in `jobs/{id}/plan.json` (activities.resources.plan_blob_name), so chunk activities
receive only the job id, the chunk number and the attempt: the orchestration's history does not
grow with the plan.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobType
from pydantic import ValidationError

from activities.blob_source import PLANNING_PIECE_BYTES, STREAM_PIECE_BYTES, STREAM_WINDOW_BYTES, BlobByteSource
from activities.resources import (
    ensure_local_resources,
    job_has_ended,
    job_kind,
    payloads,
    plan_blob_name,
    results,
    write_once,
)
from activities.stop_marker import StopSignal
from kinds.base import ByteSource, BytesSource, chunk_size_bytes
from shared.contracts import OrchestrationConfig, PrepareInput, PrepareOutput
from shared.failures import NonRetryableError
from shared.settings import Settings, get_settings
from shared.telemetry import log_event
from storage import jobs as job_store


class JobPlan(TypedDict):
    """The plan blob: what every chunk needs to know about its job."""

    kind: str
    input_ref: str | None
    input_content_type: str | None
    options: dict[str, Any]
    deadline_at: str | None
    input_size: int
    input_etag: NotRequired[str | None]
    input_inline: NotRequired[str]  # a small input that travelled inline (jobs.inline_input), base64
    max_parallel_chunks: NotRequired[int]  # chunks in flight (chunks_in_flight); plans before it: the setting
    index_key: NotRequired[str]  # the job row's index key (storage.jobs), absent for a job without a row
    chunks: list[dict[str, Any]]


@lru_cache(maxsize=32)
def _cached_plan(settings: Settings, job_id: str) -> JobPlan:
    data = results(settings).get_blob_client(plan_blob_name(job_id)).download_blob().readall()
    plan: JobPlan = json.loads(data)
    return plan


def load_plan(settings: Settings, job_id: str) -> JobPlan:
    """The job's plan (immutable once written, so each worker reads it once)."""
    try:
        return _cached_plan(settings, job_id)
    except ResourceNotFoundError as exc:
        raise NonRetryableError("plan_missing", "the job's plan is gone (the job was cleaned up)") from exc


def forget_plans() -> None:
    """Drop the cached plans (after a job's plan was deleted)."""
    _cached_plan.cache_clear()


def input_source(
    settings: Settings,
    input_ref: str | None,
    plan: JobPlan | None = None,
    inline: str | None = None,
    piece_bytes: int = STREAM_PIECE_BYTES,
) -> ByteSource | None:
    """The job's input, pinned to the version seen when it was planned (from the plan, or read now).

    An input that travelled inline (`inline`, or the plan's copy of it) is read from memory: no request.
    `piece_bytes`: what one ranged GET of a stream reads (two are held at once).
    """
    inline = plan.get("input_inline") if plan is not None else inline
    if inline is not None:
        return BytesSource(base64.b64decode(inline))
    if not input_ref:
        return None
    blob = payloads(settings).get_blob_client(input_ref)
    if plan is not None:
        # Size and version known from the plan: no request per chunk.
        return BlobByteSource(blob, plan["input_size"], piece_bytes, etag=plan.get("input_etag"))
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError as exc:
        raise NonRetryableError("invalid_input", "the job's input blob does not exist") from exc
    if properties.blob_type != BlobType.BLOCKBLOB:
        # A page blob can declare a terabyte of zeros; the API accepts block blobs only, and so do the steps.
        raise NonRetryableError("invalid_input", "the job's input must be a block blob")
    return BlobByteSource(blob, int(properties.size), piece_bytes, etag=properties.etag)


def orchestration_config(settings: Settings) -> OrchestrationConfig:
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
        "webhook_progress_seconds": settings.webhook_progress_seconds,
    }


def chunks_in_flight(settings: Settings, input_size: int, chunk_bytes: int, *, streamed: bool = False) -> int:
    """How many chunks of `chunk_bytes` one job runs at once: MAX_PARALLEL_CHUNKS, fewer if they would hold
    more than MAX_CHUNK_BYTES_IN_FLIGHT of the input (never fewer than one).

    Decided when the job is planned and handed to the orchestrator in prepare's output, so a replay reads
    the same number from its history. A chunk is counted at its planned size (its range ends at the first
    row boundary past it, a row longer at most), or, when its kind streams its chunks (`streamed`), at the
    window such a read holds (STREAM_WINDOW_BYTES) if that is less. A job without input bytes (simulate) is
    not limited by them.
    """
    if input_size <= 0:
        return settings.max_parallel_chunks
    counted = max(1, min(chunk_bytes, input_size))
    if streamed:
        counted = min(counted, STREAM_WINDOW_BYTES)
    return max(1, min(settings.max_parallel_chunks, settings.max_chunk_bytes_in_flight // counted))


def streamed_target(size: int, target_chunk_bytes: int, streamed_chunk_bytes: int, parallel: int) -> int:
    """The chunk size of a kind that streams its chunks: up to `streamed_chunk_bytes`, as few chunks as that
    allows, but never fewer than the chunks in flight where `target_chunk_bytes` would make that many (40 MB
    with two in flight: two chunks of 20 MB, not one of 40). `target_chunk_bytes` when the streamed size is
    not larger (CHUNK_TARGET_BYTES_STREAMED unset).

    Fewer chunks are fewer waves, each of which waits for its slowest chunk, and fewer steps, each an
    activity and a handful of storage requests; a streamed chunk's memory does not grow with its size.
    """
    if streamed_chunk_bytes <= target_chunk_bytes or size <= 0:
        return target_chunk_bytes
    count = max(math.ceil(size / streamed_chunk_bytes), min(parallel, math.ceil(size / target_chunk_bytes)))
    return math.ceil(size / count)


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


class PlanningStopped(Exception):
    """The job was told to stop (stop marker or deadline) while its input was being planned.

    Not a ValueError: kinds turn those into invalid_input, and this is no fault of the input.
    """


class StoppableSource:
    """A ByteSource that checks should_stop() before every read and streamed piece, for planning.

    A kind's plan streams its whole input once; over a large input that takes long enough that a
    cancel or the deadline must be heard between pieces, not after the pass.
    """

    def __init__(self, source: ByteSource, should_stop: Callable[[], bool]) -> None:
        """Wrap `source`; `should_stop` is asked (cheaply, it caches) before each piece."""
        self._source = source
        self._should_stop = should_stop

    @property
    def size(self) -> int:
        """Size of the wrapped source."""
        return self._source.size

    def _check(self) -> None:
        if self._should_stop():
            raise PlanningStopped()

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`, unless the job must stop."""
        self._check()
        return self._source.read(offset, length)

    def stream(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The wrapped source's pieces, checking for a stop before each."""
        for piece in self._source.stream(offset, self.size - offset if length is None else length):
            self._check()
            yield piece


def prepared_output(
    config: OrchestrationConfig, chunk_count: int, stopped: bool = False, plan: JobPlan | None = None
) -> PrepareOutput:
    """prepare_job's answer: the orchestration's configuration and the plan's chunk count (or that it stopped).

    The chunks in flight are the plan's (bounded by the bytes they read), the setting's for a plan without.
    """
    parallel = plan.get("max_parallel_chunks") if plan is not None else None
    prepared: PrepareOutput = {
        "retry": config["retry"],
        "max_parallel_chunks": config["max_parallel_chunks"] if parallel is None else int(parallel),
        "chunks_per_sub_orchestration": config["chunks_per_sub_orchestration"],
        "chunk_count": chunk_count,
        "tail": "complete",  # this code registers complete_job: the orchestration may end in one step
    }
    if stopped:
        prepared["stopped"] = True
    return prepared


def prepare_job(start: PrepareInput) -> PrepareOutput:
    """Mark the job RUNNING, validate its input and split it into chunks (plan blob); returns count and config.

    Idempotent against any redelivery: a plan already written is reused; a job that has ended (its
    result or stop marker exists, its plan is gone) is neither marked RUNNING again nor planned
    again. Planning stops between pieces of the input at the stop marker or the deadline; then no
    plan is written and the output says stopped.
    """
    settings = get_settings()
    ensure_local_resources(settings)
    job_id = start["job_id"]
    container = results(settings)
    config = orchestration_config(settings)
    if container.get_blob_client(plan_blob_name(job_id)).exists():
        job_store.mark_running(settings, job_id)
        plan = load_plan(settings, job_id)
        return prepared_output(config, len(plan["chunks"]), plan=plan)
    should_stop = StopSignal(container, job_id, deadline_at=start.get("deadline_at"))
    if job_has_ended(container, job_id) or should_stop.check_now():
        return prepared_output(config, 0, stopped=True)  # cancelled before planning, or a redelivery after the end
    index_key = job_store.mark_running(settings, job_id)
    planned = make_plan(settings, start, should_stop)
    if planned is None:
        return prepared_output(config, 0, stopped=True)
    return store_plan(settings, job_id, planned[0], index_key)


def make_plan(
    settings: Settings, start: PrepareInput, should_stop: StopSignal
) -> tuple[JobPlan, ByteSource | None] | None:
    """The job's plan, computed (not stored), and its input pinned to the version planned; None if told to stop."""
    job_id = start["job_id"]
    kind = job_kind(settings, start["kind"])
    source = input_source(
        settings, start.get("input_ref"), inline=start.get("input_inline"), piece_bytes=PLANNING_PIECE_BYTES
    )
    try:
        options = kind.parse_options(start.get("options") or {})
    except (ValidationError, ValueError) as exc:
        raise NonRetryableError("invalid_options", " ".join(str(exc).split())[:300]) from exc
    size = source.size if source is not None else 0
    # Waves of the chunks in flight, whose count the bytes they hold may lower: the target is aligned to
    # the count its own size allows, and a larger planned size (the per-job chunk cap) lowers it further.
    streams = kind.streams_chunks
    parallel = chunks_in_flight(settings, size, settings.chunk_target_bytes, streamed=streams)
    target = settings.chunk_target_bytes
    if streams:
        grown = streamed_target(size, target, settings.chunk_target_bytes_streamed, parallel)
        # Larger only where the budget counts the window they hold, not their size: chunks grown past the
        # budget's share would run fewer at once.
        if chunks_in_flight(settings, size, grown, streamed=True) >= parallel:
            target = grown
    target = wave_aligned_target(size, target, parallel)
    planned_bytes = chunk_size_bytes(size, target, settings.max_chunks_per_job) if size > 0 else target
    parallel = min(parallel, chunks_in_flight(settings, size, planned_bytes, streamed=streams))
    try:
        watched = StoppableSource(source, should_stop) if source is not None else None
        chunks = kind.plan(watched, options, target, settings.max_chunks_per_job)
    except PlanningStopped:
        log_event("job.planning_stopped", job_id=job_id, kind=start["kind"], bytes=size)
        return None
    plan: JobPlan = {
        "kind": start["kind"],
        "input_ref": start.get("input_ref"),
        "input_content_type": start.get("input_content_type"),
        "options": options,
        "deadline_at": start.get("deadline_at"),
        "input_size": size,
        "input_etag": source.etag if isinstance(source, BlobByteSource) else None,
        "max_parallel_chunks": parallel,
        "chunks": list(chunks),
    }
    if "input_inline" in start:
        plan["input_inline"] = start["input_inline"]
    return plan, source


def store_plan(settings: Settings, job_id: str, plan: JobPlan, index_key: str | None = None) -> PrepareOutput:
    """Write the plan blob once (a concurrent run's plan wins) and answer as prepare_job does.

    `index_key` (the job row's, read by mark_running) lets the last step record the outcome without reading
    the row again.
    """
    if index_key is not None:
        plan["index_key"] = index_key
    if not write_once(results(settings), plan_blob_name(job_id), json.dumps(plan).encode()):
        plan = load_plan(settings, job_id)  # a concurrent run planned first; keep its plan
    log_event("job.planned", job_id=job_id, kind=plan["kind"], chunks=len(plan["chunks"]), bytes=plan["input_size"])
    return prepared_output(orchestration_config(settings), len(plan["chunks"]), plan=plan)
