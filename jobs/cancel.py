"""Cancelling a job: cooperative, through a stop marker and an event, and at once for a job that never started.

The stop marker (a blob the chunks poll) stops work already running; the job row is flagged first
(`stop_requested`), so a step that read the row unflagged knows the marker was not there either. The
`cancel_job` event wakes the orchestrator, which cleans up and ends CANCELLED. A job with no instance (its
submitter died between recording and starting it) would never see either: it is recorded CANCELLED on the
spot, and if a late submitter starts it after all, its chunks find the marker. An instance still Pending long after
submission is terminated, since it will not see the event soon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs import admission, durable
from jobs.query import JobView, load_job, start_overdue
from jobs.submit import admission_ticket
from shared.contracts import FINISHED_STATUSES, JobStatus
from shared.status import JobState
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import StorageClients
from storage.names import RESULTS_CONTAINER, stop_marker_blob_name


@dataclass(frozen=True)
class Cancellation:
    """The job after a cancel request, and whether the request changed anything."""

    view: JobView
    requested: bool  # False: the job had finished already


async def cancel_job(client: Any, clients: StorageClients, job_id: str) -> Cancellation:
    """Ask the job to stop; NotFound for an unknown job."""
    view = await load_job(client, clients.jobs, job_id)
    if view.state.status in FINISHED_STATUSES:
        return Cancellation(view, requested=False)
    await job_store.flag_stop_requested(clients.jobs, job_id)  # first: the marker never exists without it
    marker = clients.blobs.get_blob_client(RESULTS_CONTAINER, stop_marker_blob_name(job_id))
    await marker.upload_blob(b"cancelled", overwrite=True)
    instance = await durable.status(client, job_id)
    if instance is None:
        view = await _cancel_unstarted(clients, view)
    else:
        await durable.request_cancel(client, job_id)
        if instance.not_started and start_overdue(view.record):
            await durable.terminate(client, job_id, "cancelled by the client before it started")
            await admission.release_async(clients.settings, admission_ticket(view.record)["key"])  # no finalize runs
    log_event("job.cancel_requested", job_id=job_id, kind=view.record["kind"])
    return Cancellation(view, requested=True)


async def _cancel_unstarted(clients: StorageClients, view: JobView) -> JobView:
    """Record a job that has no instance as CANCELLED: nothing else would ever end it."""
    progress = (view.state.completed, view.state.total)
    await job_store.catch_up_status(clients.jobs, view.record, JobStatus.CANCELLED, progress=progress)
    await admission.release_async(clients.settings, admission_ticket(view.record)["key"])  # its place, if joined
    cancelled = JobState(JobStatus.CANCELLED, *progress)
    return JobView(view.record, cancelled, view.updated_at)
