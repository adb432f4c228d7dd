"""Blueprint of the activities concern: one thin, named wrapper per step of a job (see job_steps)."""

from typing import Any

import azure.durable_functions as df

from activities import job_steps
from activities.names import (
    DEAD_LETTER_JOB,
    DISCARD_OUTPUTS,
    MERGE_PARTIALS,
    PLAN_JOB,
    PROCESS_CHUNK,
    RECORD_OUTCOME,
    REQUEST_STOP,
    START_JOB,
)

blueprint = df.Blueprint()


@blueprint.function_name(START_JOB)
@blueprint.activity_trigger(input_name="payload")
def start_job(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.start_job(payload["job_id"], payload["kind"])


@blueprint.function_name(PLAN_JOB)
@blueprint.activity_trigger(input_name="payload")
def plan_job(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.plan_job(payload)  # type: ignore[arg-type]


@blueprint.function_name(PROCESS_CHUNK)
@blueprint.activity_trigger(input_name="payload")
def process_chunk(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.process_chunk(payload["job_id"], int(payload["index"]), int(payload["attempt"]))


@blueprint.function_name(MERGE_PARTIALS)
@blueprint.activity_trigger(input_name="payload")
def merge_partials(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.merge_partials(payload["job_id"], int(payload["chunk_count"]))


@blueprint.function_name(RECORD_OUTCOME)
@blueprint.activity_trigger(input_name="payload")
def record_outcome(payload: dict[str, Any]) -> bool:
    job_steps.record_outcome(payload["job_id"], payload["outcome"])
    return True


@blueprint.function_name(REQUEST_STOP)
@blueprint.activity_trigger(input_name="payload")
def request_stop(payload: dict[str, Any]) -> bool:
    job_steps.request_stop(payload["job_id"], str(payload.get("reason", "stop")))
    return True


@blueprint.function_name(DISCARD_OUTPUTS)
@blueprint.activity_trigger(input_name="payload")
def discard_outputs(payload: dict[str, Any]) -> int:
    return job_steps.discard_outputs(payload["job_id"], bool(payload.get("keep_result")))


@blueprint.function_name(DEAD_LETTER_JOB)
@blueprint.activity_trigger(input_name="payload")
def dead_letter_job(payload: dict[str, Any]) -> str:
    return job_steps.dead_letter_job(payload["start"], payload["error"])
