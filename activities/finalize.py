"""Ending a job: remove its working blobs (and its result unless it completed) and record its outcome."""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError

from activities.admission import release_admission
from activities.plan import forget_plans
from activities.resources import results
from shared.contracts import AdmissionTicket, JobOutcome
from shared.settings import get_settings
from storage import jobs as job_store
from storage.names import job_prefix, result_blob_name, stop_marker_blob_name


def discard_outputs(job_id: str, keep_result: bool) -> int:
    """Delete the job's partials and plan (and its result unless kept); the stop marker stays. Returns count."""
    container = results(get_settings())
    keep = {result_blob_name(job_id)} if keep_result else set()
    keep.add(stop_marker_blob_name(job_id))
    deleted = 0
    for blob in container.list_blobs(name_starts_with=job_prefix(job_id)):
        if blob.name in keep:
            continue
        try:
            container.delete_blob(blob.name)
            deleted += 1
        except ResourceNotFoundError:
            pass
    forget_plans()
    return deleted


def finalize_job(
    job_id: str,
    outcome: JobOutcome,
    ticket: AdmissionTicket | None = None,
    progress: tuple[int, int] | None = None,
    index_key: str | None = None,
) -> int:
    """Remove the job's working blobs (the result too unless it COMPLETED), record its outcome (and final
    progress, if given; without reading the row if its `index_key` is known) and release its admission place
    (every path of a job ends here); idempotent."""
    deleted = discard_outputs(job_id, keep_result=outcome["status"] == "COMPLETED")
    job_store.record_outcome(get_settings(), job_id, outcome, progress=progress, index_key=index_key)
    if ticket is not None:
        release_admission(job_id, ticket)
    return deleted
