"""Ending a job: remove its working blobs (and its result unless it completed) and record its outcome."""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError

from activities.admission import release_admission
from activities.plan import forget_plans
from activities.resources import results
from shared.contracts import AdmissionTicket, JobOutcome
from shared.settings import get_settings
from storage import jobs as job_store
from storage.names import job_prefix, result_blob_name, stop_marker_blob_name

BLOBS_PER_BATCH = 256
"""Subrequests Azure takes in one Blob Batch request."""


def discard_outputs(job_id: str, keep_result: bool) -> int:
    """Delete the job's partials and plan (and its result unless kept); the stop marker stays. Returns count.

    One Blob Batch request per 256 blobs: one after another, the deletes of a 16-chunk job were half of its
    last step's time. Azure bills each subrequest as the Delete Blob it is (free) and the batch as one
    request. A blob already gone counts as deleted by someone else; any other failure raises (the step is
    retried, and deletes again only what is left).
    """
    container = results(get_settings())
    keep = {result_blob_name(job_id)} if keep_result else set()
    keep.add(stop_marker_blob_name(job_id))
    names = [blob.name for blob in container.list_blobs(name_starts_with=job_prefix(job_id)) if blob.name not in keep]
    deleted = 0
    for first in range(0, len(names), BLOBS_PER_BATCH):
        for answer in container.delete_blobs(*names[first : first + BLOBS_PER_BATCH], raise_on_any_failure=False):
            if answer.status_code == 202:
                deleted += 1
            elif answer.status_code != 404:
                raise HttpResponseError(message=f"deleting a working blob answered {answer.status_code}")
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
