"""Blueprint of the activities concern: one thin, named wrapper per step of a job.

Each wrapper unpacks its typed input (shared.contracts) and calls the typed function of its module:
plan (prepare), whole_job (prepare, or run a small job whole), chunks, complete (merge and finalize in
one step), merge and finalize (their own steps for histories that scheduled them, and finalize for every job
that did not complete), stop (request and watch), dead_letter. Every step is idempotent and takes and
returns small JSON dicts.
"""

import azure.durable_functions as df

from activities import admission, chunks, complete, dead_letter, finalize, merge, plan, stop, webhooks, whole_job
from shared.contracts import (
    ANNOUNCE_JOB_EVENT,
    CLAIM_ADMISSION,
    COMPLETE_JOB,
    DEAD_LETTER_JOB,
    DEAD_LETTER_WEBHOOK,
    DELIVER_WEBHOOK,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    PREPARE_JOB,
    PREPARE_OR_RUN_JOB,
    PROCESS_CHUNK,
    REQUEST_STOP,
    WATCH_FOR_STOP,
    AdmissionClaim,
    AdmissionInput,
    AnnounceInput,
    ChunkInput,
    ChunkOutput,
    CompleteInput,
    CompleteOutput,
    DeadLetterInput,
    DeliverInput,
    DeliverOutput,
    FinalizeInput,
    MergeInput,
    MergeOutput,
    PrepareInput,
    PrepareOutput,
    StopInput,
    WatchInput,
    WatchOutput,
    WebhookDeadLetterInput,
    WholeJobOutput,
)
from shared.tracing import activity_span

blueprint = df.Blueprint()


@blueprint.function_name(PREPARE_JOB)
@blueprint.activity_trigger(input_name="payload")
def prepare_job(payload: PrepareInput) -> PrepareOutput:
    """Plan the job: see activities.plan.prepare_job."""
    with activity_span(PREPARE_JOB, payload):
        return plan.prepare_job(payload)


@blueprint.function_name(PREPARE_OR_RUN_JOB)
@blueprint.activity_trigger(input_name="payload")
def prepare_or_run_job(payload: PrepareInput) -> WholeJobOutput:
    """Plan the job, and run a small job whole: see activities.whole_job.prepare_or_run_job."""
    with activity_span(PREPARE_OR_RUN_JOB, payload):
        output = whole_job.prepare_or_run_job(payload)
        ticket = payload.get("admission")
        if ticket is not None and "outcome" in output:
            admission.release_admission(payload["job_id"], ticket)  # the job ended in this step: no finalize runs
        return output


@blueprint.function_name(PROCESS_CHUNK)
@blueprint.activity_trigger(input_name="payload")
def process_chunk(payload: ChunkInput) -> ChunkOutput:
    """Process one chunk: see activities.chunks.process_chunk."""
    with activity_span(PROCESS_CHUNK, payload):
        return chunks.process_chunk(payload["job_id"], int(payload["index"]), int(payload["attempt"]))


@blueprint.function_name(COMPLETE_JOB)
@blueprint.activity_trigger(input_name="payload")
def complete_job(payload: CompleteInput) -> CompleteOutput:
    """Merge the partials and record the job COMPLETED: see activities.complete.complete_job."""
    with activity_span(COMPLETE_JOB, payload):
        return complete.complete_job(payload["job_id"], int(payload["chunk_count"]), payload.get("admission"))


@blueprint.function_name(MERGE_PARTIALS)
@blueprint.activity_trigger(input_name="payload")
def merge_partials(payload: MergeInput) -> MergeOutput:
    """Merge the partials: see activities.merge.merge_partials."""
    with activity_span(MERGE_PARTIALS, payload):
        return merge.merge_partials(payload["job_id"], int(payload["chunk_count"]))


@blueprint.function_name(FINALIZE_JOB)
@blueprint.activity_trigger(input_name="payload")
def finalize_job(payload: FinalizeInput) -> int:
    """Clean up and record the outcome: see activities.finalize.finalize_job."""
    with activity_span(FINALIZE_JOB, payload):
        progress = payload.get("progress")
        final = (int(progress[0]), int(progress[1])) if progress else None
        return finalize.finalize_job(payload["job_id"], payload["outcome"], payload.get("admission"), final)


@blueprint.function_name(REQUEST_STOP)
@blueprint.activity_trigger(input_name="payload")
def request_stop(payload: StopInput) -> bool:
    """Write the stop marker: see activities.stop.request_stop."""
    with activity_span(REQUEST_STOP, payload):
        stop.request_stop(payload["job_id"], str(payload.get("reason", "stop")))
        return True


@blueprint.function_name(DEAD_LETTER_JOB)
@blueprint.activity_trigger(input_name="payload")
def dead_letter_job(payload: DeadLetterInput) -> str:
    """Record a dead letter: see activities.dead_letter.dead_letter_job."""
    with activity_span(DEAD_LETTER_JOB, payload):
        return dead_letter.dead_letter_job(payload["start"], payload["error"])


@blueprint.function_name(WATCH_FOR_STOP)
@blueprint.activity_trigger(input_name="payload")
def watch_for_stop(payload: WatchInput) -> WatchOutput:
    """Watch for the stop marker: see activities.stop.watch_for_stop."""
    with activity_span(WATCH_FOR_STOP, payload):
        return stop.watch_for_stop(payload["job_id"], float(payload["seconds"]))


@blueprint.function_name(CLAIM_ADMISSION)
@blueprint.activity_trigger(input_name="payload")
def claim_admission(payload: AdmissionInput) -> AdmissionClaim:
    """Claim admission: see activities.admission.claim_admission."""
    return admission.claim_admission(payload["job_id"], payload["ticket"])


@blueprint.function_name(ANNOUNCE_JOB_EVENT)
@blueprint.activity_trigger(input_name="payload")
def announce_job_event(payload: AnnounceInput) -> str | None:
    """Enqueue a job's webhook event: see activities.webhooks.announce_job_event."""
    return webhooks.announce_job_event(payload)


@blueprint.function_name(DELIVER_WEBHOOK)
@blueprint.activity_trigger(input_name="payload")
def deliver_webhook(payload: DeliverInput) -> DeliverOutput:
    """One delivery attempt: see activities.webhooks.deliver_webhook."""
    return webhooks.deliver_webhook(payload["event"], int(payload["attempt"]))


@blueprint.function_name(DEAD_LETTER_WEBHOOK)
@blueprint.activity_trigger(input_name="payload")
def dead_letter_webhook(payload: WebhookDeadLetterInput) -> str:
    """Record an undeliverable event: see activities.webhooks.dead_letter_webhook."""
    return webhooks.dead_letter_webhook(payload["record_id"], payload["event"], payload["error"])
