"""Recording a job that failed for good as a dead letter; its input blob is kept so it can be replayed."""

from __future__ import annotations

import logging

from shared.clock import iso, utc_now
from shared.contracts import DeadLetterRecord, JobError, JobStart
from shared.settings import get_settings
from shared.telemetry import log_event
from storage import dead_letters


def dead_letter_job(start: JobStart, error: JobError) -> str:
    """Record the failed job as a dead letter (idempotent on the job id); returns the record id."""
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
