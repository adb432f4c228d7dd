"""The activities against a real Azurite: ranged blob reads, the stop marker, idempotent chunk outputs."""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from activities.blob_source import BlobByteSource
from activities.chunks import process_chunk
from activities.finalize import discard_outputs
from activities.merge import merge_partials
from activities.plan import input_source, prepare_job, wave_aligned_target
from activities.stop_marker import StopSignal, write_stop_marker
from shared.failures import NonRetryableError
from shared.settings import get_settings
from storage.names import (
    PAYLOADS_CONTAINER,
    RESULTS_CONTAINER,
    job_input_blob_name,
    partial_blob_name,
    result_blob_name,
    stop_marker_blob_name,
)
from tests.orchestrators.helpers import job_start


def test_blob_byte_source_reads_ranges_and_streams_in_bounded_pieces(blobs: BlobServiceClient) -> None:
    data = bytes(range(256)) * 40  # 10 240 bytes
    name = f"tests/{uuid.uuid4().hex}"
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(name, data)
    source = BlobByteSource(blobs.get_blob_client(PAYLOADS_CONTAINER, name), piece_bytes=1000)
    assert source.size == len(data)
    assert source.read(100, 50) == data[100:150]
    assert source.read(10_200, 500) == data[10_200:]  # clipped at the end
    assert source.read(20_000, 10) == b""
    pieces = list(source.stream(123, 5000))
    assert b"".join(pieces) == data[123:5123]
    assert max(len(piece) for piece in pieces) == 1000


def test_a_streamed_input_arrives_as_one_bytes_object_per_get(blobs: BlobServiceClient) -> None:
    # The app's background client hands each ranged GET over whole (storage.clients): cut into the SDK's
    # default 4 MiB pieces, every byte would be copied once more before Arrow reads it.
    data = bytes(range(256)) * (20 * 4096)  # 20 MiB
    name = f"tests/{uuid.uuid4().hex}"
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(name, data, max_concurrency=4)
    source = input_source(get_settings(), name, piece_bytes=8 * 1024 * 1024)
    assert source is not None
    pieces = list(source.stream(0, len(data)))
    assert [len(piece) for piece in pieces] == [8 * 1024 * 1024, 8 * 1024 * 1024, 4 * 1024 * 1024]
    assert b"".join(pieces) == data


def test_an_input_overwritten_during_its_job_fails_the_job_instead_of_mixing_versions(
    blobs: BlobServiceClient,
) -> None:
    job_id = uuid.uuid4().hex
    data = b"g,v\n" + b"".join(f"k{n % 3},{n}\n".encode() for n in range(600))
    blob = blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id))
    blob.upload_blob(data)
    options = {"group_by": "g", "metrics": ["v"]}
    plan = prepare_job(job_start(job_id, "csv-report", options, job_input_blob_name(job_id)))
    assert plan["chunk_count"] >= 2
    assert process_chunk(job_id, 0, 1)["partial_ref"] == partial_blob_name(job_id, 0)

    blob.upload_blob(data.replace(b"k1", b"k9"), overwrite=True)  # the upload SAS is still writable
    with pytest.raises(NonRetryableError, match=r"^\[non-retryable:input_changed\]"):
        process_chunk(job_id, 1, 1)
    assert not blobs.get_blob_client(RESULTS_CONTAINER, partial_blob_name(job_id, 1)).exists()


def test_stop_signal_sees_the_marker_within_its_cache_interval(blobs: BlobServiceClient) -> None:
    job_id = uuid.uuid4().hex
    results = blobs.get_container_client(RESULTS_CONTAINER)
    # No backoff (test_stop_marker.py); an interval that outlasts the marker's write on a busy machine.
    should_stop = StopSignal(results, job_id, interval=1.0, max_interval=1.0)
    assert should_stop() is False
    asked = time.monotonic()
    write_stop_marker(results, job_id, "cancelled")
    assert time.monotonic() - asked < 1.0, "the write outlasted the interval: nothing cached is tested"
    assert should_stop() is False  # cached: a check costs one request per interval, not per row batch
    time.sleep(1.05)
    assert should_stop() is True


def test_stop_signal_stops_at_the_deadline_without_a_marker(blobs: BlobServiceClient) -> None:
    results = blobs.get_container_client(RESULTS_CONTAINER)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    should_stop = StopSignal(results, uuid.uuid4().hex, deadline_at=soon)
    assert should_stop() is False
    time.sleep(1.05)
    assert should_stop() is True


def test_a_rerun_chunk_changes_nothing_and_a_stopped_job_gets_no_outputs(blobs: BlobServiceClient) -> None:
    job_id = uuid.uuid4().hex
    data = b"g,v\n" + b"".join(f"k{n % 3},{n}\n".encode() for n in range(600))  # ~5 KB: several 1 KB chunks
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(job_input_blob_name(job_id), data)
    options = {"group_by": "g", "metrics": ["v"]}
    plan = prepare_job(job_start(job_id, "csv-report", options, job_input_blob_name(job_id)))
    assert plan["chunk_count"] >= 4
    assert prepare_job(job_start(job_id, "csv-report", options, job_input_blob_name(job_id))) == plan
    assert plan["retry"]["max_attempts"] == get_settings().retry_max_attempts  # settings reach the orchestrator

    first = process_chunk(job_id, 0, 1)
    partial = blobs.get_blob_client(RESULTS_CONTAINER, partial_blob_name(job_id, 0))
    etag = partial.get_blob_properties().etag
    again = process_chunk(job_id, 0, 2)
    assert again["partial_ref"] == first["partial_ref"] and again.get("reused") is True
    assert partial.get_blob_properties().etag == etag  # the first write wins; nothing is counted twice

    write_stop_marker(blobs.get_container_client(RESULTS_CONTAINER), job_id, "cancelled")
    assert process_chunk(job_id, 1, 1) == {"index": 1, "stopped": True}
    assert not blobs.get_blob_client(RESULTS_CONTAINER, partial_blob_name(job_id, 1)).exists()


def test_merge_reads_partials_by_name_and_discard_keeps_result_and_marker(blobs: BlobServiceClient) -> None:
    job_id = uuid.uuid4().hex
    data = b"g,v\n" + b"".join(f"k{n % 2},{n}\n".encode() for n in range(400))
    blobs.get_container_client(PAYLOADS_CONTAINER).upload_blob(job_input_blob_name(job_id), data)
    options = {"group_by": "g", "metrics": ["v"]}
    count = prepare_job(job_start(job_id, "csv-report", options, job_input_blob_name(job_id)))["chunk_count"]
    for index in range(count):
        process_chunk(job_id, index, 1)
    merged = merge_partials(job_id, count)
    assert merged["result_ref"] == result_blob_name(job_id)
    document = json.loads(blobs.get_blob_client(RESULTS_CONTAINER, merged["result_ref"]).download_blob().readall())
    assert document["rows"] == 400
    assert document["groups"]["k1"]["metrics"]["v"]["sum"] == sum(range(1, 400, 2))

    write_stop_marker(blobs.get_container_client(RESULTS_CONTAINER), job_id, "test")
    assert discard_outputs(job_id, keep_result=True) == count + 1  # the partials and the plan
    left = {blob.name for blob in blobs.get_container_client(RESULTS_CONTAINER).list_blobs(f"jobs/{job_id}/")}
    assert left == {result_blob_name(job_id), stop_marker_blob_name(job_id)}
    assert discard_outputs(job_id, keep_result=False) == 1


def test_chunk_sizes_are_aligned_to_whole_waves() -> None:
    mb = 1024 * 1024
    assert wave_aligned_target(100 * mb, 8 * mb, 4) == math.ceil(100 * mb / 16)  # 13 chunks -> 16
    assert wave_aligned_target(30_000, 4096, 8) == math.ceil(30_000 / 8)
    assert wave_aligned_target(1000, 4096, 8) == 4096  # one chunk stays one chunk
    assert wave_aligned_target(0, 4096, 8) == 4096


def test_an_unknown_kind_or_missing_input_is_marked_non_retryable(blobs: BlobServiceClient) -> None:
    with pytest.raises(NonRetryableError, match=r"^\[non-retryable:unknown_kind\]"):
        prepare_job(job_start(uuid.uuid4().hex, "no-such-kind", {}, None))
    with pytest.raises(NonRetryableError, match=r"^\[non-retryable:invalid_input\]"):
        prepare_job(job_start(uuid.uuid4().hex, "csv-report", {"group_by": "g"}, "jobs/missing/input"))
    with pytest.raises(NonRetryableError, match=r"^\[non-retryable:invalid_options\]"):
        prepare_job(job_start(uuid.uuid4().hex, "vector-normalize", {"colour": "red"}, None))
