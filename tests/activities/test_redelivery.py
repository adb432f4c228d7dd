"""Every step redelivered after a later step ran (Azure delivers activities at least once) ends quietly.

A queue message whose delete was lost (a storage restart, a worker killed after the function
returned) is delivered again after its visibility timeout, when the job may have moved on or ended.
DurableTask drops the duplicate completion (TaskOrchestrationExecutor ignores a TaskCompleted whose
TaskScheduledId already completed), so what matters is what the re-run does: it must neither fail
on what a later step removed nor write anything a finished job would leave behind. Issue #16 item 4.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from activities.chunks import process_chunk
from activities.dead_letter import dead_letter_job
from activities.finalize import finalize_job
from activities.merge import merge_partials
from activities.plan import PlanningStopped, StoppableSource, prepare_job
from activities.resources import plan_blob_name
from activities.stop import request_stop, watch_for_stop
from kinds import csv_report, get_kind
from kinds.base import BytesSource
from shared.contracts import JobError, JobOutcome, JobStart
from shared.failures import NonRetryableError
from storage.names import PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_input_blob_name, job_prefix
from tests.orchestrators.helpers import job_start

OPTIONS = {"group_by": "g", "metrics": ["v"]}


def _csv_job(blobs: BlobServiceClient, rows: int = 600) -> JobStart:
    job_id = uuid.uuid4().hex
    data = b"g,v\n" + b"".join(f"k{n % 3},{n}\n".encode() for n in range(rows))  # ~5 KB: several 1 KB chunks
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(job_input_blob_name(job_id), data)
    return job_start(job_id, "csv-report", OPTIONS, job_input_blob_name(job_id))


def _blobs(blobs: BlobServiceClient, job_id: str) -> list[str]:
    container = blobs.get_container_client(RESULTS_CONTAINER)
    return sorted(blob.name for blob in container.list_blobs(name_starts_with=job_prefix(job_id)))


def test_each_step_redelivered_after_a_completed_job_was_finalized_changes_nothing(blobs: BlobServiceClient) -> None:
    start = _csv_job(blobs)
    job_id = start["job_id"]
    prepared = prepare_job(start)
    count = prepared["chunk_count"]
    assert count >= 4
    chunks = [process_chunk(job_id, index, 1) for index in range(count)]
    merged = merge_partials(job_id, count)
    outcome: JobOutcome = {"status": "COMPLETED", "result_ref": merged["result_ref"], "error": None}
    assert finalize_job(job_id, outcome) == count + 1  # the partials and the plan
    finished = _blobs(blobs, job_id)
    assert finished == [merged["result_ref"]]

    # Latest step first: each re-run returns as the first run did, or says the job was merged or stopped.
    assert finalize_job(job_id, outcome) == 0
    assert merge_partials(job_id, count) == merged  # was: plan_missing, failing a finished job
    for index in range(count):
        # Not "stopped": an orchestration that sees this answer (devhost re-runs an activity whose completion
        # an episode lost in a crash) goes on to complete the job instead of cancelling a COMPLETED one.
        assert process_chunk(job_id, index, 1) == {"index": index, "merged": True}, chunks[index]
    assert watch_for_stop(job_id, 0.1) == {"stopped": True}
    again = prepare_job(start)
    assert again.get("stopped") is True and again["chunk_count"] == 0  # not planned a second time
    assert _blobs(blobs, job_id) == finished  # no plan, no partial written after the end


def test_steps_redelivered_before_the_end_reuse_what_the_first_run_wrote(blobs: BlobServiceClient) -> None:
    start = _csv_job(blobs)
    job_id = start["job_id"]
    prepared = prepare_job(start)
    count = prepared["chunk_count"]
    for index in range(count):
        process_chunk(job_id, index, 1)
    merged = merge_partials(job_id, count)
    before = _blobs(blobs, job_id)
    assert prepare_job(start) == prepared
    assert process_chunk(job_id, 0, 1).get("reused") is True
    assert merge_partials(job_id, count) == merged
    assert _blobs(blobs, job_id) == before


def test_a_chunk_that_lost_the_race_with_merge_writes_no_partial(blobs: BlobServiceClient) -> None:
    start = _csv_job(blobs)
    job_id = start["job_id"]
    count = prepare_job(start)["chunk_count"]
    for index in range(count):
        process_chunk(job_id, index, 1)
    merge_partials(job_id, count)
    container = blobs.get_container_client(RESULTS_CONTAINER)
    partial = next(name for name in _blobs(blobs, job_id) if "/partials/" in name)
    container.delete_blob(partial)  # as if this chunk's first run never wrote it
    index = int(partial.rsplit("/", 1)[1].split(".")[0])
    assert process_chunk(job_id, index, 2) == {"index": index, "merged": True}
    assert partial not in _blobs(blobs, job_id)


def test_each_step_redelivered_after_a_cancelled_job_ended_changes_nothing(blobs: BlobServiceClient) -> None:
    start = _csv_job(blobs)
    job_id = start["job_id"]
    count = prepare_job(start)["chunk_count"]
    process_chunk(job_id, 0, 1)
    request_stop(job_id, "cancelled")
    outcome: JobOutcome = {"status": "CANCELLED", "error": None}
    finalize_job(job_id, outcome)
    ended = _blobs(blobs, job_id)
    assert [name for name in ended if "/partials/" in name or name == plan_blob_name(job_id)] == []

    assert finalize_job(job_id, outcome) == 0
    request_stop(job_id, "cancelled")
    for index in range(count):
        assert process_chunk(job_id, index, 1) == {"index": index, "stopped": True}
    assert prepare_job(start).get("stopped") is True
    error: JobError = {"type": "deadline_exceeded", "message": "late", "attempts": 1}
    assert dead_letter_job(start, error) == dead_letter_job(start, error) == f"job-{job_id}"
    assert _blobs(blobs, job_id) == ended


def test_a_plan_missing_while_the_job_runs_is_still_an_error(blobs: BlobServiceClient) -> None:
    start = _csv_job(blobs)
    job_id = start["job_id"]
    prepare_job(start)
    blobs.get_container_client(RESULTS_CONTAINER).delete_blob(plan_blob_name(job_id))
    from activities.plan import forget_plans

    forget_plans()
    with pytest.raises(NonRetryableError, match=r"^\[non-retryable:plan_missing\]"):
        process_chunk(job_id, 0, 1)


def test_planning_stops_between_pieces_of_the_input() -> None:
    """Issue #16 item 5: a long planning pass hears a cancel or the deadline between pieces."""
    data = b"g,v\n" + b"".join(f"k{n % 3},{n}\n".encode() for n in range(20_000))  # ~190 KB
    asked = 0

    def stop_after_three() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    kind = get_kind("csv-report", simulate_enabled=False)
    assert kind is not None
    source = StoppableSource(BytesSource(data, block_bytes=1024), stop_after_three)
    with pytest.raises(PlanningStopped):
        kind.plan(source, kind.parse_options(OPTIONS), 4096, 1000)
    # Stopped at the fourth ask: the header, then the first slice of windows (read several at once),
    # not after all 47 windows.
    assert 4 <= asked <= 3 + csv_report.WINDOW_READS_IN_FLIGHT
    unwatched = StoppableSource(BytesSource(data, block_bytes=1024), lambda: False)
    assert kind.plan(unwatched, kind.parse_options(OPTIONS), 4096, 1000) == kind.plan(
        BytesSource(data, block_bytes=1024), kind.parse_options(OPTIONS), 4096, 1000
    )


def test_a_job_cancelled_or_past_its_deadline_is_not_planned(blobs: BlobServiceClient) -> None:
    cancelled = _csv_job(blobs)
    request_stop(cancelled["job_id"], "cancelled")
    assert prepare_job(cancelled).get("stopped") is True
    late = _csv_job(blobs)
    late["deadline_at"] = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert prepare_job(late).get("stopped") is True
    for start in (cancelled, late):
        assert plan_blob_name(start["job_id"]) not in _blobs(blobs, start["job_id"])


def test_a_page_blob_input_is_refused_before_it_is_read(blobs: BlobServiceClient) -> None:
    """Issue #16 item 5: a sparse page blob can declare a terabyte; only block blobs are inputs."""
    job_id = uuid.uuid4().hex
    blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id)).create_page_blob(size=1024 * 1024)
    with pytest.raises(NonRetryableError, match=r"^\[non-retryable:invalid_input\] .*block blob"):
        prepare_job(job_start(job_id, "csv-report", OPTIONS, job_input_blob_name(job_id)))
