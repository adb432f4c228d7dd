"""The chunk batch sub-orchestration: one slice of a large plan, with its own short history.

It runs the same waves as the job orchestration. It cannot hear the job's cancel event; its
chunks see the stop marker (or the deadline) instead, and it reports back that it stopped.
"""

from __future__ import annotations

from typing import Any

from orchestrators.retry import policy_from
from orchestrators.steps import ChunksStopped, Orchestration, StepFailed, call_step, run_chunk_waves
from shared.contracts import REQUEST_STOP, ChunkBatchInput, ChunkBatchOutput, StopInput


def chunk_batch_orchestration(context: Any) -> Orchestration:
    """Process chunks [first, first + count) of a job; returns a ChunkBatchOutput (completed, stopped or failure)."""
    batch: ChunkBatchInput = context.get_input()
    job_id = str(batch["job_id"])
    first, count = int(batch["first"]), int(batch["count"])
    policy = policy_from(batch.get("retry"))
    try:
        completed = yield from run_chunk_waves(
            context, job_id, range(first, first + count), policy, int(batch.get("max_parallel_chunks", 1))
        )
    except ChunksStopped:
        output: ChunkBatchOutput = {"stopped": True}
        return output
    except StepFailed as failure:
        # Stop the job's other work now rather than when the parent hears of it.
        stop: StopInput = {"job_id": job_id, "reason": "failed"}
        yield from call_step(context, REQUEST_STOP, stop, policy, "stop")
        output = {"failure": failure.error}
        return output
    output = {"completed": completed}
    return output
