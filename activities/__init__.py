"""Blueprint of the activities concern: one thin, named wrapper per step of a job (see job_steps)."""

from typing import Any

import azure.durable_functions as df

from activities import job_steps
from shared.contracts import (
    DEAD_LETTER_JOB,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    PREPARE_JOB,
    PROCESS_CHUNK,
    REQUEST_STOP,
    WATCH_FOR_STOP,
)

blueprint = df.Blueprint()


@blueprint.function_name(PREPARE_JOB)
@blueprint.activity_trigger(input_name="payload")
def prepare_job(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.prepare_job(payload)  # type: ignore[arg-type]


@blueprint.function_name(PROCESS_CHUNK)
@blueprint.activity_trigger(input_name="payload")
def process_chunk(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.process_chunk(payload["job_id"], int(payload["index"]), int(payload["attempt"]))


@blueprint.function_name(MERGE_PARTIALS)
@blueprint.activity_trigger(input_name="payload")
def merge_partials(payload: dict[str, Any]) -> dict[str, Any]:
    return job_steps.merge_partials(payload["job_id"], int(payload["chunk_count"]))


@blueprint.function_name(FINALIZE_JOB)
@blueprint.activity_trigger(input_name="payload")
def finalize_job(payload: dict[str, Any]) -> int:
    return job_steps.finalize_job(payload["job_id"], payload["outcome"])


@blueprint.function_name(REQUEST_STOP)
@blueprint.activity_trigger(input_name="payload")
def request_stop(payload: dict[str, Any]) -> bool:
    job_steps.request_stop(payload["job_id"], str(payload.get("reason", "stop")))
    return True


@blueprint.function_name(DEAD_LETTER_JOB)
@blueprint.activity_trigger(input_name="payload")
def dead_letter_job(payload: dict[str, Any]) -> str:
    return job_steps.dead_letter_job(payload["start"], payload["error"])


@blueprint.function_name(WATCH_FOR_STOP)
@blueprint.activity_trigger(input_name="payload")
def watch_for_stop(payload: dict[str, Any]) -> dict[str, bool]:
    return job_steps.watch_for_stop(payload["job_id"], float(payload["seconds"]))
