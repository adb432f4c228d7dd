"""Recording a job that failed for good as a dead letter; its input blob is kept so it can be replayed."""

from __future__ import annotations

import base64
import logging

from activities.resources import payloads, write_once
from shared.clock import iso, utc_now
from shared.contracts import DeadLetterRecord, JobError, JobStart
from shared.settings import get_settings
from shared.telemetry import log_event
from storage import dead_letters
from storage.names import job_input_blob_name


def _kept_input(start: JobStart) -> str | None:
    """The blob that keeps the job's input for a replay: its input_ref, or one written now from an inline input."""
    inline = start.get("input_inline")
    if start.get("input_ref") or inline is None:
        return start.get("input_ref")
    name = job_input_blob_name(start["job_id"])
    content_type = start.get("input_content_type") or "application/octet-stream"
    write_once(payloads(get_settings()), name, base64.b64decode(inline), content_type=content_type)  # idempotent
    return name


def dead_letter_job(start: JobStart, error: JobError) -> str:
    """Record the failed job as a dead letter (idempotent on the job id); returns the record id.

    A small input that travelled inline (jobs.inline_input) is written to the blob a larger one would have
    had, so a replay finds it where it finds any other dead-lettered job's input.
    """
    record: DeadLetterRecord = {
        "id": f"job-{start['job_id']}",
        "source": "job",
        "job_id": start["job_id"],
        "kind": start["kind"],
        "input_ref": _kept_input(start),
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
