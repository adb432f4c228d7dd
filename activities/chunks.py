"""Processing one chunk of a job into its partial blob, at most once per chunk whatever the retries.

A partial has a deterministic name and is written once (the first write wins), so a retried or
redelivered chunk reuses it. A chunk that sees the stop marker or the deadline writes nothing, and
neither does one redelivered after the job was merged or ended (at-least-once delivery).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from activities.plan import input_source, load_plan
from activities.resources import job_has_ended, job_kind, results, write_once
from activities.stop_marker import CHECK_INTERVAL_SECONDS, StopSignal
from kinds.base import ChunkStopped
from shared.contracts import ChunkOutput
from shared.failures import NonRetryableError
from shared.settings import Settings, get_settings
from shared.telemetry import log_event
from storage.names import partial_blob_name, result_blob_name


def process_chunk(job_id: str, index: int, attempt: int) -> ChunkOutput:
    """Process one chunk into its partial blob; returns {"stopped": True} if the job was told to stop, and
    {"merged": True} if it was merged already (a redelivery after the job's last step)."""
    settings = get_settings()
    container = results(settings)
    name = partial_blob_name(job_id, index)
    if container.get_blob_client(name).exists():
        return {"index": index, "partial_ref": name, "reused": True}
    stopped: ChunkOutput = {"index": index, "stopped": True}
    # Redelivered after the job was merged: its work is in the result. Said so, not "stopped", which the
    # orchestration would take for a cancel; complete_job, run again, finds the result and records the same.
    merged: ChunkOutput = {"index": index, "merged": True}
    result = container.get_blob_client(result_blob_name(job_id))
    try:
        plan = load_plan(settings, job_id)
    except NonRetryableError:
        if result.exists():
            return merged
        if job_has_ended(container, job_id):
            return stopped  # redelivered after the job was stopped: its plan is gone, and so is any need
        raise
    should_stop = StopSignal(container, job_id, deadline_at=plan.get("deadline_at"))
    # The chunks of a wave start together: one of them in this process asks, the others use its answer.
    if should_stop.check_now(fresh_within=CHECK_INTERVAL_SECONDS):
        return stopped
    kind = job_kind(settings, plan["kind"])
    source = input_source(settings, plan["input_ref"], plan)
    started_at = time.time()
    try:
        partial = kind.process_chunk(source, plan["chunks"][index], plan["options"], attempt, should_stop)
    except ChunkStopped:
        return stopped
    except NonRetryableError as exc:
        _log_chunk_failure(job_id, plan["kind"], index, attempt, started_at, exc.error_type)
        raise
    except Exception as exc:
        _log_chunk_failure(job_id, plan["kind"], index, attempt, started_at, type(exc).__name__)
        raise
    finished_at = time.time()
    # Never add outputs to a job that was merged already, or is being cleaned up after a stop.
    if result.exists():
        return merged
    if should_stop.check_now():
        return stopped
    document = {
        "chunk": index,
        "attempt": attempt,
        "started_at": started_at,
        "finished_at": finished_at,
        "pid": os.getpid(),
        "partial": partial,
    }
    write_once(container, name, json.dumps(document).encode())
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


def read_partial(settings: Settings, job_id: str, index: int) -> Any:
    """The partial result of chunk `index` (by its deterministic name)."""
    data = results(settings).get_blob_client(partial_blob_name(job_id, index)).download_blob().readall()
    return json.loads(data)["partial"]


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
