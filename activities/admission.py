"""The job's side of admission control: claim a place to run, and give it back at the end."""

from __future__ import annotations

from jobs import admission
from shared.contracts import AdmissionClaim, AdmissionTicket
from shared.settings import get_settings
from shared.telemetry import log_event


def claim_admission(job_id: str, ticket: AdmissionTicket) -> AdmissionClaim:
    """Admit what can be admitted now; whether this job is admitted, and how long to wait before asking again."""
    settings = get_settings()
    admitted, others = admission.claim(settings, ticket, job_id)
    admission.notify(settings, others)
    if admitted:
        log_event("job.admitted", job_id=job_id, lane=ticket["lane"])
    return {"admitted": admitted, "recheck_seconds": settings.admission_recheck_seconds}


def release_admission(job_id: str, ticket: AdmissionTicket) -> None:
    """Give the job's place back (idempotent) and wake the jobs admitted in its stead."""
    settings = get_settings()
    known = admission.admitted_place(ticket, job_id)  # admitted at submit: no read of its row (one request)
    admission.notify(settings, admission.release(settings, ticket["key"], known))
    log_event("job.released", job_id=job_id, lane=ticket["lane"])
