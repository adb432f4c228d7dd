"""Completing a staged job in one step: merge its partials into the result, then record it COMPLETED.

merge_partials and finalize_job were two activities and two orchestrator episodes at the end of every
staged job; this step is one of each (docs/benchmarks.md, "Cost per job"). The old two stay registered
for orchestrations whose history scheduled them (orchestrators.job). The guarantees are theirs:

- **idempotent**: a result an earlier run wrote (tagged with its kind) is reused, not merged again, and
  the outcome recorded again is the same; a crash between the result and the record is repaired by the
  retry, which finds the result;
- **stop and deadline**: checked once the merge is computed, before anything is written; a stopped step
  writes nothing and answers {"stopped": True}, and the job winds down as after a stopped chunk. Once the
  result is written the job is COMPLETED: the orchestrator keeps that outcome even if a cancel or the
  deadline raced the answer (orchestrators.steps.recorded_outcome), as it does for a whole run;
- **redelivered after the job ended otherwise** (stopped: its plan is gone, its stop marker stays) it
  writes nothing and says stopped.
"""

from __future__ import annotations

from activities.finalize import finalize_job
from activities.merge import merge_result, merged_already, write_result
from activities.plan import load_plan
from activities.resources import job_has_ended, results
from activities.stop_marker import StopSignal
from kinds.base import ChunkStopped
from shared.contracts import AdmissionTicket, CompleteOutput, JobOutcome
from shared.failures import NonRetryableError
from shared.settings import get_settings


def complete_job(job_id: str, chunk_count: int, ticket: AdmissionTicket | None = None) -> CompleteOutput:
    """Merge the partials into the result blob, then remove the working blobs, record the outcome with its final
    progress and release the admission place; {"stopped": True} (nothing written) if told to stop first."""
    settings = get_settings()
    merged = merged_already(settings, job_id)
    index_key: str | None = None  # unknown on a retry that found the result: the row is read instead
    if merged is None:
        container = results(settings)
        try:
            plan = load_plan(settings, job_id)
        except NonRetryableError:
            if job_has_ended(container, job_id):
                return {"stopped": True}  # redelivered after the job was stopped and cleaned up
            raise
        should_stop = StopSignal(container, job_id, deadline_at=plan.get("deadline_at"))
        try:
            result = merge_result(settings, job_id, chunk_count, plan, should_stop)
        except ChunkStopped:
            return {"stopped": True}  # while a chunk beside a misplaced boundary was read again
        if should_stop.check_now():
            return {"stopped": True}
        merged = write_result(settings, job_id, plan, result)
        index_key = plan.get("index_key")
    outcome: JobOutcome = {
        "status": "COMPLETED",
        "result_ref": merged["result_ref"],
        "content_type": merged["content_type"],
        "summary": merged["summary"],
        "error": None,
    }
    finalize_job(job_id, outcome, ticket, progress=(chunk_count, chunk_count), index_key=index_key)
    return {"outcome": outcome}
