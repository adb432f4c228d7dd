"""A one-chunk job run whole in its first step (issue #15): the staged steps' guarantees in one activity.

The same input run staged (prepare, chunk, merge) and whole gives the same result document; a redelivery
of the whole run records the same outcome and writes nothing new; a stop marker, a staged result or a
failing chunk leave the job to the staged path exactly as prepare_job would.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from activities.chunks import process_chunk
from activities.dead_letter import dead_letter_job
from activities.merge import merge_partials
from activities.plan import prepare_job
from activities.resources import ensure_local_resources, plan_blob_name
from activities.stop import request_stop
from activities.whole_job import RUNNING_MARK_AFTER_SECONDS, WHOLE_METADATA, prepare_or_run_job
from bench.storage_meter import Meter, MeteredStorage
from devhost.azurite import development_connection_string
from devhost.testing.azurite import Azurite, free_port
from kinds.simulate import expected_checksum
from shared.contracts import JobError, JobStart
from shared.settings import get_settings
from storage.jobs import INLINE_RESULT_BYTES, index_entity, job_entity, new_job_record
from storage.names import (
    JOBS_TABLE,
    PAYLOADS_CONTAINER,
    RESULTS_CONTAINER,
    job_input_blob_name,
    job_prefix,
    result_blob_name,
    stop_marker_blob_name,
)
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


# --- a small job of several chunks (WHOLE_RUN_MAX_SECONDS) ----------------------------------------------


@pytest.fixture
def whole_runs(blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlobServiceClient]:
    """The shipped WHOLE_RUN_MAX_SECONDS (0.5 s) with two chunks in flight, and the simulate kind."""
    monkeypatch.setenv("WHOLE_RUN_MAX_SECONDS", "0.5")
    monkeypatch.setenv("MAX_PARALLEL_CHUNKS", "4")
    monkeypatch.setenv("ENABLE_SIMULATE_KIND", "true")
    get_settings.cache_clear()
    yield blobs
    get_settings.cache_clear()


def test_a_small_job_of_several_chunks_runs_whole_to_the_staged_result(whole_runs: BlobServiceClient) -> None:
    """A few 1 KB chunks of csv-report (well under 0.5 s of estimated work) in one step, the same document."""
    data = SMALL + SMALL[4:] * 7  # one header, 320 rows: 3 chunks of 1 KB
    whole, staged = _job(whole_runs, data), _job(whole_runs, data)
    answer = prepare_or_run_job(whole)
    outcome = answer.get("outcome")
    assert outcome is not None and outcome["status"] == "COMPLETED"
    chunks = answer["chunk_count"]
    assert 1 < chunks <= 4
    assert _names(whole_runs, whole["job_id"]) == [result_blob_name(whole["job_id"])]  # no plan, no partials
    blob = whole_runs.get_container_client(RESULTS_CONTAINER).get_blob_client(result_blob_name(whole["job_id"]))
    assert blob.get_blob_properties().metadata.get(WHOLE_METADATA) == str(chunks)

    get_settings.cache_clear()
    os.environ["WHOLE_RUN_MAX_SECONDS"] = "0"  # the same input staged (monkeypatch restores it)
    staged_answer = prepare_or_run_job(staged)
    assert "outcome" not in staged_answer and staged_answer["chunk_count"] == chunks
    for index in range(chunks):
        process_chunk(staged["job_id"], index, 1)
    merged = merge_partials(staged["job_id"], chunks)
    assert _result(whole_runs, whole["job_id"]) == _result(whole_runs, staged["job_id"])
    assert outcome["summary"] == merged["summary"]


def test_a_redelivered_whole_run_of_several_chunks_answers_its_chunk_count(whole_runs: BlobServiceClient) -> None:
    """The chunk count, kept on the result, is the progress the redelivery records (n of n, not 1 of 1)."""
    start = job_start(uuid.uuid4().hex, "simulate", {"chunks": 3}, None)
    first = prepare_or_run_job(start)
    assert first.get("outcome") is not None and first["chunk_count"] == 3
    assert first["outcome"]["summary"] == {"chunks": 3, "checksum": expected_checksum(3)}
    again = prepare_or_run_job(start)
    assert again == first


@pytest.mark.parametrize(
    ("options", "runs_whole"),
    [
        ({"chunks": 4, "chunk_seconds": 0.1}, True),  # 0.4 s of work, one wave of 4
        ({"chunks": 4, "chunk_seconds": 0.2}, False),  # 0.8 s: spread over activities
        ({"chunks": 5}, False),  # no work at all, but more than one wave of 4
    ],
)
def test_only_small_work_in_one_wave_runs_whole(
    whole_runs: BlobServiceClient, options: dict[str, Any], runs_whole: bool
) -> None:
    start = job_start(uuid.uuid4().hex, "simulate", options, None)
    answer = prepare_or_run_job(start)
    assert ("outcome" in answer) is runs_whole
    assert answer["chunk_count"] == options["chunks"]
    assert (plan_blob_name(start["job_id"]) in _names(whole_runs, start["job_id"])) is not runs_whole


def test_a_failing_chunk_of_a_whole_run_hands_every_chunk_to_the_staged_steps(whole_runs: BlobServiceClient) -> None:
    start = job_start(uuid.uuid4().hex, "simulate", {"chunks": 3, "transient_failures": 1}, None)
    answer = prepare_or_run_job(start)
    assert "outcome" not in answer and answer["chunk_count"] == 3
    assert _names(whole_runs, start["job_id"]) == [plan_blob_name(start["job_id"])]  # no result, no partial
    for index in range(3):
        assert process_chunk(start["job_id"], index, 2)["partial_ref"]


def test_a_cancel_between_the_chunks_of_a_whole_run_writes_no_result(whole_runs: BlobServiceClient) -> None:
    """The marker, written while the first of three chunks sleeps, is seen before the result is written."""
    start = job_start(uuid.uuid4().hex, "simulate", {"chunks": 3, "chunk_seconds": 0.15}, None)
    cancel = threading.Timer(0.05, request_stop, args=(start["job_id"], "cancelled"))
    cancel.start()
    try:
        answer = prepare_or_run_job(start)
    finally:
        cancel.join()
    assert answer.get("stopped") is True and "outcome" not in answer
    assert result_blob_name(start["job_id"]) not in _names(whole_runs, start["job_id"])


def test_whole_run_max_seconds_0_runs_only_one_chunk_jobs_whole(
    blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0 switches it off, even for chunks that are estimated at no work at all (the test settings rely on it)."""
    monkeypatch.setenv("ENABLE_SIMULATE_KIND", "true")
    get_settings.cache_clear()
    assert get_settings().whole_run_max_seconds == 0
    start = job_start(uuid.uuid4().hex, "simulate", {"chunks": 2}, None)
    answer = prepare_or_run_job(start)
    assert "outcome" not in answer and answer["chunk_count"] == 2


# --- a job with its row: a small result kept in the row (INLINE_RESULT_BYTES) ---------------------------


def _recorded_job(blobs: BlobServiceClient, data: bytes, deadline_seconds: float | None = None) -> JobStart:
    """A job as the API records it: its input blob, its job and index rows, and the index key in its start."""
    start = _job(blobs, data)
    if deadline_seconds is not None:
        start = job_start(start["job_id"], "csv-report", OPTIONS, start["input_ref"], deadline_seconds)
    return _with_rows(start)


def _with_rows(start: JobStart) -> JobStart:
    """Record the started job as the API does (PENDING job and index rows) and hand its index key to it."""
    record = new_job_record(
        job_id=start["job_id"], kind=start["kind"], created=datetime.now(UTC), input_ref=start["input_ref"],
        input_content_type=start["input_content_type"], options=start["options"],
        deadline_at=start["deadline_at"], idempotency_key_hash=None, fingerprint="f", source="http",
    )  # fmt: skip
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        table.create_entity(job_entity(record))
        table.create_entity(index_entity(record))
    start["index_key"] = record["index_key"]
    return start


def _connection() -> str:
    return str(os.environ["AzureWebJobsStorage"])


def _rows(job_id: str, index_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        return dict(table.get_entity(job_id, "job")), dict(table.get_entity("index", index_key))


def test_a_small_result_is_kept_in_the_job_row_and_no_result_blob_is_written(blobs: BlobServiceClient) -> None:
    start, staged = _recorded_job(blobs, SMALL), _job(blobs, SMALL)
    answer = prepare_or_run_job(start)
    outcome = answer.get("outcome")
    assert outcome is not None and outcome["status"] == "COMPLETED"
    assert _names(blobs, start["job_id"]) == []  # no result blob: the row holds it
    job_row, index_row = _rows(start["job_id"], start["index_key"])
    assert (job_row["status"], job_row["whole_chunks"]) == ("COMPLETED", 1)
    assert "result" not in index_row and index_row["status"] == "COMPLETED"  # listings stay small

    assert prepare_job(staged)["chunk_count"] == 1  # the same input staged writes the same document
    process_chunk(staged["job_id"], 0, 1)
    merge_partials(staged["job_id"], 1)
    assert json.loads(job_row["result"]) == _result(blobs, staged["job_id"])


def test_a_redelivery_after_the_row_recorded_the_run_writes_nothing_even_past_the_deadline(
    blobs: BlobServiceClient,
) -> None:
    start = _recorded_job(blobs, SMALL, deadline_seconds=2.0)  # long enough for the first run on a busy machine
    first = prepare_or_run_job(start)
    assert first.get("outcome") is not None and first["outcome"]["status"] == "COMPLETED"
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        etag = table.get_entity(start["job_id"], "job").metadata["etag"]
        time.sleep(2.2)  # the deadline passes; a cancel comes too
        request_stop(start["job_id"], "cancelled")
        assert prepare_or_run_job(start) == first  # the recorded outcome, not a stop
        assert table.get_entity(start["job_id"], "job").metadata["etag"] == etag  # nothing written
    assert _names(blobs, start["job_id"]) == [stop_marker_blob_name(start["job_id"])]


def test_a_large_result_still_goes_to_the_tagged_result_blob(blobs: BlobServiceClient) -> None:
    many = b"g,v\n" + b"".join(f"key-{n:05d},{n}.5\n".encode() for n in range(700))  # 700 groups: > 16 KB
    start = _recorded_job(blobs, many)
    with patch.dict(os.environ, {"CHUNK_TARGET_BYTES": str(1 << 20)}):  # one chunk, whatever its size
        get_settings.cache_clear()
        answer = prepare_or_run_job(start)
    get_settings.cache_clear()
    assert answer.get("outcome") is not None and answer["chunk_count"] == 1
    assert _names(blobs, start["job_id"]) == [result_blob_name(start["job_id"])]
    assert len(json.dumps(_result(blobs, start["job_id"]))) > INLINE_RESULT_BYTES
    job_row, _ = _rows(start["job_id"], start["index_key"])
    assert "result" not in job_row and job_row["whole_chunks"] == 1


# --- a first attempt (its row PENDING) looks for nothing an earlier attempt could have left ---------------


def _pending_simulate_job(options: dict[str, Any]) -> JobStart:
    """A simulate job recorded as the API records it (PENDING job and index rows), with its index key."""
    return _with_rows(job_start(uuid.uuid4().hex, "simulate", options, None))


@pytest.fixture
def metered(whole_runs: BlobServiceClient, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meter]:
    """The activities' storage requests through the counting proxy of bench/storage_meter.py (real Azurite)."""
    listen = (free_port(), free_port(), free_port())
    storage = MeteredStorage((azurite.blob_port, azurite.queue_port, azurite.table_port), listen, "NoHub").start()
    monkeypatch.setenv("AzureWebJobsStorage", development_connection_string(listen))
    get_settings.cache_clear()
    ensure_local_resources(get_settings())
    try:
        yield storage.meter
    finally:
        storage.stop()
        get_settings.cache_clear()


def _blob_reads(meter: Meter, before: Counter[Any]) -> dict[str, int]:
    counts = meter.snapshot() - before
    return {op: n for (service, _, op), n in counts.items() if service == "blob" and op.startswith("Get")}


def test_a_first_attempt_asks_for_no_blob(metered: Meter) -> None:
    # A PENDING row: no plan, staged result or large whole result can exist (each is written after the row
    # says RUNNING), and no stop marker either (a cancel flags the row first). The outcome is written only
    # if the row is still as read, so a cancel during the run is caught by that write, not by a marker ask.
    start = _pending_simulate_job({"chunks": 1})
    before = metered.snapshot()
    answer = prepare_or_run_job(start)
    assert answer.get("outcome") is not None
    assert _blob_reads(metered, before) == {}

    # The same job re-run once its row says RUNNING (an earlier attempt got further): every look as before.
    rerun = _pending_simulate_job({"chunks": 1})
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        table.update_entity({"PartitionKey": rerun["job_id"], "RowKey": "job", "status": "RUNNING"})
    before = metered.snapshot()
    assert prepare_or_run_job(rerun).get("outcome") is not None
    reads = _blob_reads(metered, before)
    assert reads["GetBlob"] == 1 and reads["GetBlobProperties"] == 3  # earlier result; plan, marker twice


def test_a_cancel_flagged_in_the_row_stops_a_first_attempt_before_it_plans(whole_runs: BlobServiceClient) -> None:
    start = _pending_simulate_job({"chunks": 1})
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        table.update_entity({"PartitionKey": start["job_id"], "RowKey": "job", "stop_requested": True})
        etag = table.get_entity(start["job_id"], "job").metadata["etag"]
        answer = prepare_or_run_job(start)
        assert answer.get("outcome") is None and answer["stopped"] is True
        row = table.get_entity(start["job_id"], "job")
    assert row.metadata["etag"] == etag and row["status"] == "PENDING"  # nothing written
    assert _names(whole_runs, start["job_id"]) == []


def _cancel(job_id: str) -> None:
    """What jobs.cancel writes, in its order: the row's flag, then the stop marker."""
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        table.update_entity({"PartitionKey": job_id, "RowKey": "job", "stop_requested": True})
    request_stop(job_id, "cancelled")


def test_a_cancel_during_the_run_stops_it(whole_runs: BlobServiceClient) -> None:
    # The cancel lands while the run works: the row was read without the flag, and the outcome's write,
    # conditional on the row as read, finds it changed. Nothing is recorded and the run answers stopped.
    start = _pending_simulate_job({"chunks": 1, "chunk_seconds": 0.3})
    timer = threading.Timer(0.1, _cancel, (start["job_id"],))
    timer.start()
    answer = prepare_or_run_job(start)
    timer.join()
    assert answer.get("outcome") is None and answer["stopped"] is True
    with TableClient.from_connection_string(_connection(), JOBS_TABLE) as table:
        row = table.get_entity(start["job_id"], "job")
    assert row["status"] == "PENDING" and "result" not in row


def test_a_run_long_enough_to_mark_its_row_running_still_records_its_outcome(whole_runs: BlobServiceClient) -> None:
    # Its own late RUNNING mark changes the row's ETag: the outcome's write reads the row again, finds no
    # cancel, and records under the new ETag.
    start = _pending_simulate_job({"chunks": 1, "chunk_seconds": RUNNING_MARK_AFTER_SECONDS + 0.3})
    answer = prepare_or_run_job(start)
    assert answer.get("outcome") is not None
    job_row, index_row = _rows(start["job_id"], start["index_key"])
    assert (job_row["status"], index_row["status"], job_row["whole_chunks"]) == ("COMPLETED", "COMPLETED", 1)


def test_a_run_that_another_attempt_completed_answers_that_outcome(whole_runs: BlobServiceClient) -> None:
    # Two attempts of one run (a redelivery while the first still works): the second to finish finds the row
    # completed by the first and answers the same outcome, writing nothing.
    start = _pending_simulate_job({"chunks": 1, "chunk_seconds": 0.3})
    first: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: first.update(prepare_or_run_job(start)))
    thread.start()
    time.sleep(0.1)
    second = prepare_or_run_job(start)
    thread.join()
    assert first.get("outcome") is not None and second.get("outcome") is not None
    assert second["outcome"]["summary"] == first["outcome"]["summary"]
    job_row, _ = _rows(start["job_id"], start["index_key"])
    assert (job_row["status"], job_row["whole_chunks"]) == ("COMPLETED", 1)


def test_a_large_result_is_written_after_the_row_says_running(blobs: BlobServiceClient) -> None:
    # A crash between the result blob and the outcome: the redelivery must look for the blob, and it does
    # because the row no longer says PENDING.
    many = b"g,v\n" + b"".join(f"key-{n:05d},{n}.5\n".encode() for n in range(700))  # 700 groups: > 16 KB
    start = _recorded_job(blobs, many)
    with patch.dict(os.environ, {"CHUNK_TARGET_BYTES": str(1 << 20)}):
        get_settings.cache_clear()
        with patch("storage.jobs.record_outcome", side_effect=RuntimeError("crash")), pytest.raises(RuntimeError):
            prepare_or_run_job(start)
        job_row, _ = _rows(start["job_id"], start["index_key"])
        assert job_row["status"] == "RUNNING"
        assert _names(blobs, start["job_id"]) == [result_blob_name(start["job_id"])]
        answer = prepare_or_run_job(start)
    get_settings.cache_clear()
    assert answer.get("outcome") is not None and answer["chunk_count"] == 1
    job_row, _ = _rows(start["job_id"], start["index_key"])
    assert (job_row["status"], job_row["whole_chunks"]) == ("COMPLETED", 1)
