"""complete_job (issue #15): a staged job's merge and finalize in one step, with both steps' guarantees.

Against Azurite: the result is the one merge_partials writes, the working blobs go, the row holds the
outcome and its final progress (so reads need not ask Durable); redelivered or retried after a crash it
records the same outcome and writes nothing new; at the stop marker or past the deadline it writes
nothing and says stopped; redelivered after a cancelled job ended it says stopped.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from activities.chunks import process_chunk
from activities.complete import complete_job
from activities.finalize import finalize_job
from activities.merge import merge_partials
from activities.plan import load_plan, prepare_job
from activities.resources import plan_blob_name
from activities.stop import request_stop
from devhost.testing.azurite import Azurite
from kinds import csv_report
from kinds.base import BytesSource
from shared.clock import parse_iso, utc_now
from shared.contracts import JobStart
from shared.settings import get_settings
from storage import jobs as job_store
from storage.names import JOBS_TABLE, PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_input_blob_name, job_prefix
from tests.kinds.reference import single_pass_report
from tests.orchestrators.helpers import job_start

OPTIONS = {"group_by": "g", "metrics": ["v"]}
DATA = b"g,v\n" + b"".join(f"k{n % 3},{n}\n".encode() for n in range(600))  # ~5 KB: several 1 KB chunks


def _staged(
    blobs: BlobServiceClient, azurite: Azurite, deadline_seconds: float | None = None, data: bytes = DATA
) -> tuple[str, int]:
    """A recorded csv-report job, planned and with every chunk processed; returns its id and chunk count."""
    job_id = uuid.uuid4().hex
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(job_input_blob_name(job_id), data)
    start: JobStart = job_start(job_id, "csv-report", OPTIONS, job_input_blob_name(job_id), deadline_seconds)
    record = job_store.new_job_record(
        job_id=job_id,
        kind="csv-report",
        created=utc_now(),
        input_ref=start["input_ref"],
        input_content_type="text/csv",
        options=OPTIONS,
        deadline_at=start["deadline_at"],
        idempotency_key_hash=None,
        fingerprint="f",
        source="http",
    )
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = service.get_table_client(JOBS_TABLE)
        table.create_entity(job_store.job_entity(record))
        table.create_entity(job_store.index_entity(record))
    count = prepare_job(start)["chunk_count"]
    assert count >= 4
    for index in range(count):
        process_chunk(job_id, index, 1)
    return job_id, count


def _names(blobs: BlobServiceClient, job_id: str) -> list[str]:
    container = blobs.get_container_client(RESULTS_CONTAINER)
    return sorted(blob.name for blob in container.list_blobs(name_starts_with=job_prefix(job_id)))


def _row(azurite: Azurite, job_id: str) -> dict[str, Any]:
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        return dict(service.get_table_client(JOBS_TABLE).get_entity(job_id, job_store.JOB_ROW))


def test_complete_merges_records_the_outcome_with_its_progress_and_cleans_up(
    blobs: BlobServiceClient, azurite: Azurite
) -> None:
    job_id, count = _staged(blobs, azurite)
    twin_id, twin_count = _staged(blobs, azurite)
    merged = merge_partials(twin_id, twin_count)  # the two-step tail, for comparison

    # prepare kept the row's index key in the plan, so the outcome is recorded without reading the row first
    assert load_plan(get_settings(), job_id).get("index_key") == _row(azurite, job_id)["index_key"]
    answer = complete_job(job_id, count)
    outcome = answer.get("outcome")
    assert outcome is not None and "stopped" not in answer
    assert outcome["status"] == "COMPLETED" and outcome["summary"] == merged["summary"]
    assert outcome["result_ref"] == merged["result_ref"].replace(twin_id, job_id)
    assert _names(blobs, job_id) == [outcome["result_ref"]]  # no plan, no partial
    row = _row(azurite, job_id)
    assert row["status"] == "COMPLETED" and row.get("finished_at")
    assert json.loads(row["progress"]) == {"completed": count, "total": count}
    assert json.loads(row["summary"]) == merged["summary"]


def test_complete_redelivered_or_retried_after_a_crash_records_the_same_outcome(
    blobs: BlobServiceClient, azurite: Azurite
) -> None:
    job_id, count = _staged(blobs, azurite)
    merge_partials(job_id, count)  # a first run wrote the result and crashed before recording anything
    assert _row(azurite, job_id)["status"] == "RUNNING"
    first = complete_job(job_id, count)
    assert _row(azurite, job_id)["status"] == "COMPLETED"
    ended = _names(blobs, job_id)
    assert complete_job(job_id, count) == first  # redelivered after the end: the same answer, nothing new
    for index in range(count):
        assert process_chunk(job_id, index, 1) == {"index": index, "merged": True}  # done, not a cancel
    assert _names(blobs, job_id) == ended


def test_complete_at_the_stop_marker_writes_nothing_and_says_stopped(
    blobs: BlobServiceClient, azurite: Azurite
) -> None:
    job_id, count = _staged(blobs, azurite)
    before = _names(blobs, job_id)
    request_stop(job_id, "cancelled")
    assert complete_job(job_id, count) == {"stopped": True}
    assert [name for name in _names(blobs, job_id) if not name.endswith("/cancel")] == before  # no result
    assert _row(azurite, job_id)["status"] == "RUNNING"  # the wind-down's finalize records the outcome

    finalize_job(job_id, {"status": "CANCELLED", "error": None}, progress=(count, count))
    assert json.loads(_row(azurite, job_id)["progress"]) == {"completed": count, "total": count}
    assert complete_job(job_id, count) == {"stopped": True}  # redelivered after the cancelled job ended
    assert plan_blob_name(job_id) not in _names(blobs, job_id) and _row(azurite, job_id)["status"] == "CANCELLED"


def test_complete_past_the_deadline_writes_nothing_and_says_stopped(blobs: BlobServiceClient, azurite: Azurite) -> None:
    job_id, count = _staged(blobs, azurite, deadline_seconds=8.0)
    before = _names(blobs, job_id)
    deadline = parse_iso(str(_row(azurite, job_id)["deadline_at"]))
    time.sleep(max(0.0, (deadline - utc_now()).total_seconds()) + 0.1)
    assert complete_job(job_id, count) == {"stopped": True}
    assert _names(blobs, job_id) == before and _row(azurite, job_id)["status"] != "COMPLETED"


def test_complete_moves_a_boundary_planned_inside_quotes_and_reports_as_one_pass(
    blobs: BlobServiceClient, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning reads a window at each boundary; with windows of 8 bytes, a target inside the 3 KB quoted note
    sees no quote and is guessed outside. The chunks' quote parities show it, and complete reads the chunks
    beside it again over the corrected ranges, from the input blob."""
    monkeypatch.setattr(csv_report, "GUESS_WINDOW_BYTES", 8)
    note = '"' + "line, of a note\n" * 200 + '"'
    data = (
        "g,note,v\n" + "".join(f"k{n % 3},plain,{n}\n" for n in range(60)) + f"k9,{note},5\n" + "k1,x,7\n" * 60
    ).encode()
    job_id, count = _staged(blobs, azurite, data=data)
    plan = load_plan(get_settings(), job_id)
    opening = data.index(b'"')
    closing = data.index(b'"', opening + 1)
    assert any(opening < chunk["start"] <= closing for chunk in plan["chunks"])  # a boundary inside the note

    outcome = complete_job(job_id, count).get("outcome")
    assert outcome is not None and outcome["status"] == "COMPLETED"
    result = json.loads(
        blobs.get_container_client(RESULTS_CONTAINER).download_blob(str(outcome["result_ref"])).readall()
    )
    assert result == single_pass_report(BytesSource(data), OPTIONS)
    assert result["groups"]["k9"] == {
        "count": 1,
        "metrics": {"v": {"count": 1, "sum": 5.0, "min": 5.0, "max": 5.0, "mean": 5.0}},
    }
