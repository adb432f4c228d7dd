"""Blueprint of admission notices: the `jobs-admitted` queue wakes jobs that were admitted while they waited.

Admission is decided in activities and the API (jobs.admission), which cannot raise Durable events
themselves in every host; they leave one message per admitted job here, and this trigger raises the
job's `job_admitted` event. A job that has no instance yet, or has ended, needs no event: the message
is dropped. A notice that never arrives only delays the job until its own recheck.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from jobs import durable
from jobs.requests import JOB_ID
from shared.telemetry import log_event
from storage.names import ADMISSIONS_QUEUE

blueprint = df.Blueprint()

STORAGE_CONNECTION = "AzureWebJobsStorage"


@blueprint.queue_trigger(arg_name="msg", queue_name=ADMISSIONS_QUEUE, connection=STORAGE_CONNECTION)
@blueprint.durable_client_input(client_name="client")
async def announce_admission(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    """Raise the admitted event on the job the message names."""
    job_id = msg.get_body().decode("ascii", errors="replace").strip()
    if not JOB_ID.fullmatch(job_id):
        log_event("admission.notice_dropped", reason="not a job id")
        return
    delivered = await durable.announce_admission(client, job_id)
    log_event("admission.announced", job_id=job_id, delivered=delivered)
