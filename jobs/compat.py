"""The reference design's view of a job (FastAPI + Celery): its task body in, Celery's states out.

Clients written for the reference submit `{"vector_data": [...], "metadata": {...}}` and poll a task whose
`status` is a Celery state. This module turns that body into a `vector-normalize` submission and a job into
the reference's status document; the routes live in `api/compat.py`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from jobs.errors import FieldError, InvalidRequest, errors_from_validation, field_error
from jobs.query import JobView
from jobs.requests import SubmitBody
from kinds import vector_normalize
from shared.contracts import JobStatus
from storage.clients import StorageClients
from storage.names import RESULTS_CONTAINER

REFERENCE_KIND = vector_normalize.NAME
"""The reference's one task, `process_vector_data`, is this kind's work."""

CELERY_STATES = {
    JobStatus.PENDING: "PENDING",
    JobStatus.RUNNING: "PROGRESS",  # the custom state the reference's task reports with update_state
    JobStatus.COMPLETED: "SUCCESS",
    JobStatus.FAILED: "FAILURE",
    JobStatus.CANCELLED: "REVOKED",
}
READY_STATES = {"SUCCESS", "FAILURE", "REVOKED"}
"""Celery's `AsyncResult.ready()`: the reference's stream and its clients stop at these."""

MAX_RESULT_READ_BYTES = 1024 * 1024
"""A status poll reads the result document for `metadata_processed` only up to this size."""


class TaskCreate(BaseModel):
    """The reference's POST /tasks body (`TaskCreate`)."""

    model_config = ConfigDict(extra="forbid")

    # Any here, so a wrong shape is refused by the kind with the kind's words; declared as the kind's, so the
    # OpenAPI document refuses what the service refuses.
    vector_data: Any = Field(
        description="One vector (the reference's list of floats) or a list of vectors",
        json_schema_extra=lambda schema: schema.update(vector_normalize.vector_data_schema()),
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    duration: StrictInt | None = Field(
        default=None, ge=0, description="The reference's simulated run time; longrun does the work instead"
    )
    task_type: Literal["vector_processing"] = "vector_processing"


def submission(data: Any) -> SubmitBody:
    """The `vector-normalize` submission for a reference task body; InvalidRequest naming the body's fields."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request must be a JSON object", [field_error("body", "must be an object")])
    try:
        task = TaskCreate.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("the request is not a valid task", errors_from_validation(exc)) from None
    # The input as the task spelled it (metadata only when given), so the same key and body name the same job
    # through either route: the request's fingerprint is of what was sent, not of the kind's defaults.
    document = {"vector_data": task.vector_data}
    if "metadata" in task.model_fields_set:
        document["metadata"] = task.metadata
    return SubmitBody(kind=REFERENCE_KIND, input=document)


def as_task_fields(error: InvalidRequest) -> InvalidRequest:
    """The same refusal with field names as the reference's body has them (`vector_data`, not `input.vector_data`)."""
    return InvalidRequest(
        error.detail, [FieldError(field=_task_field(e["field"]), message=e["message"]) for e in error.errors]
    )


def _task_field(field: str) -> str:
    # The task body is the kind's input. A whole-input error comes from its check of the vectors' shapes
    # (none, empty, ragged), which is about `vector_data`.
    if field == "input":
        return "vector_data"
    return field.removeprefix("input.")


async def _result_document(clients: StorageClients, inline: str | None, result_ref: str) -> dict[str, Any] | None:
    if inline is not None:  # a small whole run's result, kept in the job row
        kept = json.loads(inline)
        return kept if isinstance(kept, dict) else None
    blob = clients.blobs.get_blob_client(RESULTS_CONTAINER, result_ref)
    try:
        properties = await blob.get_blob_properties()
        if properties.size > MAX_RESULT_READ_BYTES:
            return None
        document = json.loads(await (await blob.download_blob()).readall())
    except ResourceNotFoundError:
        return None
    return document if isinstance(document, dict) else None


async def task_status(clients: StorageClients, view: JobView) -> dict[str, Any]:
    """The reference's status document: `task_id`, a Celery `status`, and `result` as its task would set it."""
    state = view.state
    status = CELERY_STATES[state.status]
    result: Any = None
    if state.status is JobStatus.RUNNING:
        result = {
            "current": state.completed,
            "total": state.total,
            "message": f"Processing chunk {state.completed}/{state.total}...",
            "job_id": view.record["job_id"],
        }
    elif state.status is JobStatus.COMPLETED:
        result = dict(state.summary or {})
        if view.record["kind"] == REFERENCE_KIND and state.result_ref:
            document = await _result_document(clients, view.record.get("result"), state.result_ref)
            if document is not None:
                result["metadata_processed"] = document.get("metadata_processed", {})
    elif state.status is JobStatus.FAILED:
        error = state.error or {"type": "unknown", "message": "the job failed"}
        result = f"{error['type']}: {error['message']}"  # the reference reports repr() of the exception
    return {"task_id": view.record["job_id"], "status": status, "result": result}
