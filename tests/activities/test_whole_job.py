"""A one-chunk job run whole in its first step (issue #15): the staged steps' guarantees in one activity.

The same input run staged (prepare, chunk, merge) and whole gives the same result document; a redelivery
of the whole run records the same outcome and writes nothing new; a stop marker, a staged result or a
failing chunk leave the job to the staged path exactly as prepare_job would.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from activities.chunks import process_chunk
from activities.dead_letter import dead_letter_job
from activities.merge import merge_partials
from activities.plan import prepare_job
from activities.resources import plan_blob_name
from activities.stop import request_stop
from activities.whole_job import WHOLE_METADATA, prepare_or_run_job
from shared.contracts import JobError, JobStart
from shared.settings import get_settings
from storage.names import PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_input_blob_name, job_prefix, result_blob_name
from tests.orchestrators.helpers import job_start

OPTIONS = {"group_by": "g", "metrics": ["v"]}
SMALL = b"g,v\n" + b"".join(f"k{n % 3},{n}.5\n".encode() for n in range(40))  # < 1 KB: one chunk


def _job(blobs: BlobServiceClient, data: bytes) -> JobStart:
    job_id = uuid.uuid4().hex
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(job_input_blob_name(job_id), data)
    return job_start(job_id, "csv-report", OPTIONS, job_input_blob_name(job_id))


def _names(blobs: BlobServiceClient, job_id: str) -> list[str]:
    container = blobs.get_container_client(RESULTS_CONTAINER)
    return sorted(blob.name for blob in container.list_blobs(name_starts_with=job_prefix(job_id)))


def _result(blobs: BlobServiceClient, job_id: str) -> object:
    blob = blobs.get_container_client(RESULTS_CONTAINER).get_blob_client(result_blob_name(job_id))
    return json.loads(blob.download_blob().readall())


def test_a_one_chunk_job_runs_whole_to_the_result_the_staged_steps_write(blobs: BlobServiceClient) -> None:
    whole, staged = _job(blobs, SMALL), _job(blobs, SMALL)
    answer = prepare_or_run_job(whole)
    outcome = answer.get("outcome")
    assert outcome is not None and outcome["status"] == "COMPLETED" and answer["chunk_count"] == 1
    assert outcome["result_ref"] == result_blob_name(whole["job_id"])
    assert _names(blobs, whole["job_id"]) == [result_blob_name(whole["job_id"])]  # no plan, no partial

    assert prepare_job(staged)["chunk_count"] == 1
    process_chunk(staged["job_id"], 0, 1)
    merged = merge_partials(staged["job_id"], 1)
    assert _result(blobs, whole["job_id"]) == _result(blobs, staged["job_id"])
    assert outcome["summary"] == merged["summary"]


def test_a_whole_run_redelivered_answers_the_same_outcome_and_writes_nothing_new(blobs: BlobServiceClient) -> None:
    start = _job(blobs, SMALL)
    first = prepare_or_run_job(start)
    container = blobs.get_container_client(RESULTS_CONTAINER)
    etag = container.get_blob_client(result_blob_name(start["job_id"])).get_blob_properties().etag
    assert prepare_or_run_job(start) == first
    assert container.get_blob_client(result_blob_name(start["job_id"])).get_blob_properties().etag == etag
    assert _names(blobs, start["job_id"]) == [result_blob_name(start["job_id"])]


def test_a_job_of_several_chunks_is_planned_for_the_staged_steps(blobs: BlobServiceClient) -> None:
    start = _job(blobs, SMALL * 8)
    answer = prepare_or_run_job(start)
    assert "outcome" not in answer and answer["chunk_count"] > 1
    assert _names(blobs, start["job_id"]) == [plan_blob_name(start["job_id"])]
    assert prepare_or_run_job(start) == answer  # redelivered: the stored plan is reused


def test_a_stopped_job_is_neither_planned_nor_run(blobs: BlobServiceClient) -> None:
    start = _job(blobs, SMALL)
    request_stop(start["job_id"], "cancelled")
    answer = prepare_or_run_job(start)
    assert answer.get("stopped") is True and "outcome" not in answer
    assert result_blob_name(start["job_id"]) not in _names(blobs, start["job_id"])


def test_a_result_the_staged_steps_merged_is_not_taken_for_a_whole_run(blobs: BlobServiceClient) -> None:
    start = _job(blobs, SMALL)
    prepare_job(start)
    process_chunk(start["job_id"], 0, 1)
    merge_partials(start["job_id"], 1)
    blobs.get_container_client(RESULTS_CONTAINER).delete_blob(plan_blob_name(start["job_id"]))  # finalized
    answer = prepare_or_run_job(start)
    assert answer.get("stopped") is True and "outcome" not in answer


def test_a_chunk_that_fails_hands_the_job_to_the_staged_steps(
    blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its retries, backoff and error message are then the staged chunk's, as if it had never run whole."""
    monkeypatch.setenv("ENABLE_SIMULATE_KIND", "true")
    get_settings.cache_clear()
    start = job_start(uuid.uuid4().hex, "simulate", {"chunks": 1, "transient_failures": 1}, None)
    answer = prepare_or_run_job(start)
    assert "outcome" not in answer and answer["chunk_count"] == 1
    assert _names(blobs, start["job_id"]) == [plan_blob_name(start["job_id"])]
    assert prepare_or_run_job(start) == answer  # redelivered: staged, the plan is reused
    assert process_chunk(start["job_id"], 0, 2)["partial_ref"]


def test_the_whole_result_is_tagged(blobs: BlobServiceClient) -> None:
    start = _job(blobs, SMALL)
    prepare_or_run_job(start)
    blob = blobs.get_container_client(RESULTS_CONTAINER).get_blob_client(result_blob_name(start["job_id"]))
    assert blob.get_blob_properties().metadata.get(WHOLE_METADATA) == "1"


def _inline_job(data: bytes) -> JobStart:
    start = job_start(uuid.uuid4().hex, "csv-report", OPTIONS, None)
    return {**start, "input_inline": base64.b64encode(data).decode(), "input_content_type": "text/csv"}


def test_an_inline_input_is_read_from_the_start_and_staged_through_the_plan(blobs: BlobServiceClient) -> None:
    """jobs.inline_input: no input blob; a staged job's chunks read the input from the plan's copy."""
    whole, staged = _inline_job(SMALL), _inline_job(SMALL + SMALL[4:] * 7)  # one header, 320 rows
    assert prepare_or_run_job(whole).get("outcome") is not None
    answer = prepare_or_run_job(staged)
    assert "outcome" not in answer and answer["chunk_count"] > 1
    for index in range(answer["chunk_count"]):
        assert process_chunk(staged["job_id"], index, 1)["partial_ref"]
    merge_partials(staged["job_id"], answer["chunk_count"])
    groups = _result(blobs, staged["job_id"])["groups"]  # type: ignore[index]
    assert sum(group["count"] for group in groups.values()) == 8 * 40
    assert not list(
        blobs.get_container_client(PAYLOADS_CONTAINER).list_blobs(name_starts_with=job_prefix(whole["job_id"]))
    )


def test_a_dead_letter_keeps_an_inline_input_in_a_blob_for_the_replay(blobs: BlobServiceClient) -> None:
    start = _inline_job(SMALL)
    error: JobError = {"type": "invalid_input", "message": "bad", "attempts": 1}
    assert dead_letter_job(start, error) == dead_letter_job(start, error)  # idempotent
    blob = blobs.get_container_client(PAYLOADS_CONTAINER).get_blob_client(job_input_blob_name(start["job_id"]))
    assert blob.download_blob().readall() == SMALL
    assert blob.get_blob_properties().content_settings.content_type == "text/csv"
