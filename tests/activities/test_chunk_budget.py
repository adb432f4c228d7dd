"""What a job holds at once: chunks in flight bounded by the input bytes they read (MAX_CHUNK_BYTES_IN_FLIGHT,
decided when planning), and the merge reading its partials a few at a time.

The orchestrator must not read settings or measure memory (it replays), so prepare decides how many chunks
run at once and hands the number over in its output, which the history records; a redelivered prepare
reads it back from the plan.
"""

from __future__ import annotations

import json
import math
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from activities.blob_source import STREAM_WINDOW_BYTES
from activities.merge import READ_AHEAD, partials_in_order
from activities.plan import chunks_in_flight, load_plan, prepare_job, streamed_target
from shared.settings import Settings, get_settings
from storage.names import PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_input_blob_name, partial_blob_name
from tests.orchestrators.helpers import job_start

MIB = 1024 * 1024


def _settings(parallel: int, budget: int) -> Settings:
    return Settings.model_validate({"MAX_PARALLEL_CHUNKS": parallel, "MAX_CHUNK_BYTES_IN_FLIGHT": budget})


def test_the_byte_budget_lowers_the_chunks_in_flight_but_never_below_one() -> None:
    settings = _settings(8, 32 * MIB)
    assert chunks_in_flight(settings, 100 * MIB, 8 * MIB) == 4
    assert chunks_in_flight(settings, 100 * MIB, 6 * MIB) == 5
    assert chunks_in_flight(settings, 100 * MIB, 4 * MIB) == 8  # the count still caps it
    assert chunks_in_flight(settings, 10_000 * MIB, 64 * MIB) == 1  # a chunk over the budget runs alone
    assert chunks_in_flight(settings, 3 * MIB, 8 * MIB) == 8  # a chunk reads no more than the input
    assert chunks_in_flight(settings, 0, 8 * MIB) == 8  # no input (simulate): the count alone


def test_a_streamed_chunk_counts_at_the_window_it_holds() -> None:
    settings = _settings(8, 32 * MIB)
    assert STREAM_WINDOW_BYTES == 16 * MIB  # two 8 MiB pieces: the one read and the one prefetched
    assert chunks_in_flight(settings, 1000 * MIB, 48 * MIB, streamed=True) == 2
    assert chunks_in_flight(settings, 1000 * MIB, 48 * MIB) == 1  # held whole (vector-normalize): alone
    assert chunks_in_flight(settings, 1000 * MIB, 8 * MIB, streamed=True) == 4  # under the window: its size


def test_streamed_chunks_are_as_few_as_their_size_allows_but_fill_the_chunks_in_flight() -> None:
    assert streamed_target(95 * MIB, 16 * MIB, 48 * MIB, 2) == math.ceil(95 * MIB / 2)  # one wave of two
    assert streamed_target(954 * MIB, 16 * MIB, 48 * MIB, 2) == math.ceil(954 * MIB / 20)  # 20, not 60
    assert streamed_target(38 * MIB, 16 * MIB, 48 * MIB, 2) == 19 * MIB  # two in flight, not one of 38
    assert streamed_target(10 * MIB, 16 * MIB, 48 * MIB, 2) == 10 * MIB  # one chunk, as without it
    assert streamed_target(95 * MIB, 16 * MIB, 0, 2) == 16 * MIB  # unset: the size every kind has
    assert streamed_target(95 * MIB, 16 * MIB, 8 * MIB, 2) == 16 * MIB  # not larger: the same


def _csv_job(blobs: BlobServiceClient, rows: int) -> tuple[str, str]:
    job_id = uuid.uuid4().hex
    data = b"g,v\n" + b"".join(f"k{n % 5},{n}\n".encode() for n in range(rows))
    blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id)).upload_blob(data)
    return job_id, job_input_blob_name(job_id)


def test_a_csv_report_plans_one_wave_of_streamed_chunks_with_the_local_sizes(
    blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sizes of local.settings.sample.json, on an input of 34 MB: three chunks of 16 MiB, aligned to two
    # waves of two, without CHUNK_TARGET_BYTES_STREAMED; one wave of two chunks of 17 MB with it.
    monkeypatch.setenv("MAX_PARALLEL_CHUNKS", "8")
    monkeypatch.setenv("CHUNK_TARGET_BYTES", str(16 * MIB))
    monkeypatch.setenv("MAX_CHUNK_BYTES_IN_FLIGHT", str(32 * MIB))
    get_settings.cache_clear()
    row = b"".join(f"k{n % 7},{n}\n".encode() for n in range(1000))
    data = b"g,v\n" + row * (34 * 1000 * 1000 // len(row))
    options = {"group_by": "g", "metrics": ["v"]}
    plans = []
    for streamed in ("0", str(48 * MIB)):
        monkeypatch.setenv("CHUNK_TARGET_BYTES_STREAMED", streamed)
        get_settings.cache_clear()
        job_id = uuid.uuid4().hex
        blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id)).upload_blob(data)
        prepared = prepare_job(job_start(job_id, "csv-report", options, job_input_blob_name(job_id)))
        chunks = load_plan(get_settings(), job_id)["chunks"]
        assert [chunk["end"] for chunk in chunks][-1] == len(data)
        assert all(chunk["start"] == before["end"] for before, chunk in zip(chunks, chunks[1:], strict=False))
        plans.append((prepared["chunk_count"], prepared["max_parallel_chunks"]))
    assert plans == [(4, 2), (2, 2)]


def test_a_kind_that_holds_its_chunks_keeps_the_common_chunk_size(
    blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vector-normalize keeps a chunk's vectors in memory: CHUNK_TARGET_BYTES_STREAMED is not for it.
    monkeypatch.setenv("MAX_PARALLEL_CHUNKS", "8")
    monkeypatch.setenv("MAX_CHUNK_BYTES_IN_FLIGHT", "3072")
    data = b"".join(b"[%d.5, 2.0, 3.0]\n" % n for n in range(800))  # ~16 KB of 1 KiB chunks
    counts = []
    for streamed in ("0", "8192"):
        monkeypatch.setenv("CHUNK_TARGET_BYTES_STREAMED", streamed)
        get_settings.cache_clear()
        job_id = uuid.uuid4().hex
        blobs.get_blob_client(PAYLOADS_CONTAINER, job_input_blob_name(job_id)).upload_blob(data)
        prepared = prepare_job(job_start(job_id, "vector-normalize", {}, job_input_blob_name(job_id)))
        counts.append((prepared["chunk_count"], prepared["max_parallel_chunks"]))
    assert counts[0] == counts[1] and counts[0][0] >= 15 and counts[0][1] == 3


def test_prepare_hands_the_orchestrator_the_chunks_its_budget_allows_in_whole_waves(
    blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_PARALLEL_CHUNKS", "8")
    monkeypatch.setenv("MAX_CHUNK_BYTES_IN_FLIGHT", "3072")  # three chunks of 1 KiB (CHUNK_TARGET_BYTES)
    monkeypatch.setenv("ENABLE_SIMULATE_KIND", "true")
    get_settings.cache_clear()
    job_id, ref = _csv_job(blobs, 2000)  # ~16 KB
    options = {"group_by": "g", "metrics": ["v"]}
    prepared = prepare_job(job_start(job_id, "csv-report", options, ref))
    assert prepared["max_parallel_chunks"] == 3
    assert prepared["chunk_count"] >= 15 and prepared["chunk_count"] % 3 == 0  # waves of three, none short
    assert load_plan(get_settings(), job_id)["max_parallel_chunks"] == 3

    # A redelivered prepare answers from the plan, whatever the settings say by then: the orchestration
    # it answers may be replaying a history that scheduled waves of three.
    monkeypatch.setenv("MAX_CHUNK_BYTES_IN_FLIGHT", str(64 * MIB))
    get_settings.cache_clear()
    assert prepare_job(job_start(job_id, "csv-report", options, ref)) == prepared

    # A job without an input is not limited by bytes it does not read.
    simulated = prepare_job(job_start(uuid.uuid4().hex, "simulate", {"chunks": 12}))
    assert simulated["max_parallel_chunks"] == 8


def test_chunks_grown_by_the_per_job_cap_count_at_their_planned_size(
    blobs: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_PARALLEL_CHUNKS", "8")
    monkeypatch.setenv("MAX_CHUNK_BYTES_IN_FLIGHT", "6144")  # six chunks of 1 KiB...
    monkeypatch.setenv("MAX_CHUNKS_PER_JOB", "4")  # ...but 15 KB in at most 4 chunks: 3.8 KB each
    get_settings.cache_clear()
    job_id, ref = _csv_job(blobs, 2000)
    prepared = prepare_job(job_start(job_id, "csv-report", {"group_by": "g"}, ref))
    assert prepared["chunk_count"] == 4
    assert prepared["max_parallel_chunks"] == 1  # 6144 // 3.8 KB


def test_the_merge_reads_partials_ahead_but_hands_them_over_in_chunk_order(blobs: BlobServiceClient) -> None:
    job_id = uuid.uuid4().hex
    container = blobs.get_container_client(RESULTS_CONTAINER)
    count = 3 * READ_AHEAD + 1
    for index in reversed(range(count)):
        container.upload_blob(partial_blob_name(job_id, index), json.dumps({"partial": {"index": index}}))
    read = partials_in_order(get_settings(), job_id, count)
    assert [partial["index"] for partial in read] == list(range(count))

    container.delete_blob(partial_blob_name(job_id, READ_AHEAD + 2))
    read = partials_in_order(get_settings(), job_id, count)
    assert [next(read)["index"] for _ in range(READ_AHEAD + 2)] == list(range(READ_AHEAD + 2))
    with pytest.raises(ResourceNotFoundError):
        next(read)  # a missing partial fails the merge where it belongs, not before
