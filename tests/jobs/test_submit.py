"""Submission against real storage when Durable itself fails (the Durable client is the one stand-in)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from api.problems import problem_from
from jobs import admission, recovery, submit
from jobs.errors import QueueFull, Unavailable
from jobs.inline_input import INLINE_INPUT_MAX_BYTES
from jobs.requests import JobRequest, job_id_for
from jobs.streamed_input import BLOCK_BYTES
from jobs.submit import submit_job
from shared.clock import iso, utc_now
from shared.contracts import AdmissionTicket
from shared.settings import Settings
from storage import admission as ledger_store
from storage import jobs as job_store
from storage.admission import queue_key
from storage.clients import close_storage_clients, storage_clients
from storage.names import job_input_blob_name
from tests.api.probes import count_blobs, count_job_rows


class FailingDurable:
    """Azure's side refusing to start: what a network fault or an overloaded hub looks like to the client."""

    def __init__(self) -> None:
        self.starts = 0

    async def start_new(self, *args: Any, **kwargs: Any) -> str:
        self.starts += 1
        raise ConnectionError("durable extension unreachable")


class AcceptingDurable:
    def __init__(self) -> None:
        self.started: list[str] = []

    async def start_new(self, name: str, instance_id: str, client_input: Any) -> str:
        self.started.append(instance_id)
        return instance_id


SMALL_INPUT = b'{"vector_data":[[1.0]]}'
LARGE_INPUT = b'{"vector_data":[[' + b",".join([b"1.0"] * (INLINE_INPUT_MAX_BYTES // 4 + 1)) + b"]]}"
"""Over the inline threshold: stored in a blob under the job's name (claim check)."""


def request(key: str | None, data: bytes = SMALL_INPUT) -> JobRequest:
    return JobRequest(
        kind="vector-normalize", options={}, deadline_seconds=None, input_bytes=data,
        input_ref=None, input_content_type="application/json", idempotency_key=key, source="http",
    )  # fmt: skip


@pytest.mark.parametrize("key", [None, "retry-me"])
def test_a_failed_start_leaves_nothing_and_the_retry_succeeds(azurite, key):
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            before = count_blobs(azurite.connection_string), count_job_rows(azurite.connection_string)
            with pytest.raises(Unavailable) as refused:
                await submit_job(FailingDurable(), clients, request(key))
            problem = problem_from(refused.value)  # what the API answers
            assert problem.status == 503 and problem.headers["Retry-After"] == "1"
            after = await asyncio.to_thread(
                lambda: (count_blobs(azurite.connection_string), count_job_rows(azurite.connection_string))
            )
            assert after == before
            durable = AcceptingDurable()
            submitted = await submit_job(durable, clients, request(key))
            assert submitted.created and durable.started == [submitted.record["job_id"]]
            if key is not None:
                assert submitted.record["job_id"] == job_id_for(key)
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


def no_such_instance() -> Any:
    """What the SDK's get_status returns for the host's 404 (an empty body)."""
    return DurableOrchestrationStatus.from_json("")


class NoInstanceDurable(AcceptingDurable):
    async def get_status(self, instance_id: str) -> Any:
        return no_such_instance()


def test_a_row_whose_submitter_died_before_starting_is_started_by_the_retry(azurite):
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    key = f"orphan-{uuid.uuid4()}"

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            job = request(key, LARGE_INPUT)
            record = job_store.new_job_record(
                job_id=job_id_for(key), kind=job.kind, created=utc_now() - timedelta(minutes=5),
                input_ref=job_input_blob_name(job_id_for(key)), input_content_type=job.input_content_type,
                options={}, deadline_at=None, idempotency_key_hash=None, fingerprint=job.fingerprint(), source="http",
            )  # fmt: skip
            assert await job_store.insert_job(clients.jobs, record)  # ...and then the submitter died
            durable = NoInstanceDurable()
            submitted = await submit_job(durable, clients, request(key, LARGE_INPUT))
            assert not submitted.created and durable.started == [record["job_id"]]
            assert count_blobs(azurite.connection_string, prefix=record["input_ref"]) == 1
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


def test_a_stale_input_left_by_a_failed_submission_is_replaced_by_the_new_request(azurite):
    """Inputs are only created, never overwritten (a concurrent retry must not change the ETag a started job
    planned with); a blob that holds other bytes is a failed submission's leftover, and is replaced."""
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    key = f"stale-{uuid.uuid4()}"

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            blob = clients.blobs.get_blob_client("payloads", job_input_blob_name(job_id_for(key)))
            await blob.upload_blob(b'{"vector_data":[[9.0]]}', overwrite=True)
            durable = AcceptingDurable()
            submitted = await submit_job(durable, clients, request(key, LARGE_INPUT))
            assert submitted.created and durable.started == [job_id_for(key)]
            assert await (await blob.download_blob()).readall() == LARGE_INPUT
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


@pytest.mark.parametrize("leftover", ["other bytes", "the same bytes"])
def test_a_large_keyed_body_staged_as_it_arrives_replaces_a_leftover_and_keeps_the_same_bytes(azurite, leftover):
    """The same for a raw body staged block by block: its blocks replace a leftover that holds other bytes
    (only the version that was compared), and a blob that holds the same bytes is kept as it is. A blob
    written before inputs carried their SHA-256 in metadata is read back to compare; ours carry it."""
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    key = f"stale-raw-{uuid.uuid4()}"
    body = b"region,amount\n" + b"eu,1\n" * (BLOCK_BYTES // 5 + 10)

    async def parts() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            blob = clients.blobs.get_blob_client("payloads", job_input_blob_name(job_id_for(key)))
            left = body if leftover == "the same bytes" else b"region,amount\nus,9\n"
            etag = (await blob.upload_blob(left, overwrite=True))["etag"]  # no metadata: an earlier version's
            job = JobRequest(
                kind="csv-report", options={"group_by": "region", "metrics": ["amount"]}, deadline_seconds=None,
                input_bytes=None, input_ref=None, input_content_type="text/csv", idempotency_key=key, source="http",
            )  # fmt: skip
            job.body = parts()
            durable = AcceptingDurable()
            submitted = await submit_job(durable, clients, job)
            assert submitted.created and durable.started == [job_id_for(key)]
            assert await (await blob.download_blob()).readall() == body
            properties = await blob.get_blob_properties()
            if leftover == "the same bytes":
                assert properties.etag == etag and not properties.metadata
            else:
                assert properties.metadata == {"sha256": hashlib.sha256(body).hexdigest()}
                assert properties.content_settings.content_type == "text/csv"
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


class RecordingDurable(AcceptingDurable):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[Any] = []

    async def start_new(self, name: str, instance_id: str, client_input: Any) -> str:
        self.inputs.append(client_input)
        return await super().start_new(name, instance_id, client_input)


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_small_input_travels_inline_and_a_large_one_through_a_blob(azurite, size):
    """Issue #15: a blob costs a tiny job four storage requests; up to the threshold the input rides in the start."""
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    data = SMALL_INPUT if size == "small" else LARGE_INPUT

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            durable = RecordingDurable()
            submitted = await submit_job(durable, clients, request(f"inline-{uuid.uuid4()}", data))
            (start,) = durable.inputs
            name = job_input_blob_name(submitted.record["job_id"])
            if size == "small":
                assert base64.b64decode(start["input_inline"]) == data and start["input_ref"] is None
                assert submitted.record["input_ref"] is None
                assert count_blobs(azurite.connection_string, prefix=name) == 0
            else:
                assert "input_inline" not in start and start["input_ref"] == name
                assert count_blobs(azurite.connection_string, prefix=name) == 1
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


def _enqueue_elsewhere(conn: str, hub: str, job_id: str) -> str:
    """Another app instance (a process with its own view of the ledger) joins a lane."""
    lane_settings = Settings(AzureWebJobsStorage=conn, TASK_HUB_NAME=hub, MAX_RUNNING_JOBS=1, MAX_PENDING_JOBS=1)
    ticket: AdmissionTicket = {
        "lane": "normal", "client": "other", "key": queue_key("normal", iso(utc_now()), job_id), "admitted": False,
    }  # fmt: skip
    return admission.enqueue(lane_settings, ticket, job_id)


@pytest.mark.parametrize("key", [None, "full-after-writes"])
def test_a_join_refused_after_the_writes_went_out_leaves_nothing(azurite, key):
    """The join runs beside the row, index and input writes (jobs.submit._record_and_join), and the check before
    them may pass on this process's copy of the ledger after another instance filled the queue: the join's exact
    check refuses (429), and everything that went out beside it is removed before the answer."""
    conn, hub = azurite.connection_string, f"full{uuid.uuid4().hex[:8]}"
    settings = Settings(AzureWebJobsStorage=conn, TASK_HUB_NAME=hub, MAX_RUNNING_JOBS=1, MAX_PENDING_JOBS=1)
    job_key = None if key is None else f"{key}-{uuid.uuid4()}"

    async def scenario(other: ProcessPoolExecutor) -> None:
        clients = await storage_clients(settings)
        try:
            first = "1" * 32
            ticket: AdmissionTicket = {
                "lane": "normal", "client": "me", "key": queue_key("normal", iso(utc_now()), first), "admitted": False,
            }  # fmt: skip
            assert await admission.enqueue_async(settings, [(ticket, first)]) == ["admitted"]  # nobody waits
            before = count_blobs(conn), count_job_rows(conn)
            assert await asyncio.wrap_future(other.submit(_enqueue_elsewhere, conn, hub, "2" * 32)) == "queued"
            remembered = admission._memo(settings).recall()
            assert remembered is not None and remembered.waiting == 0  # so the check before the writes passes

            durable = AcceptingDurable()
            with pytest.raises(QueueFull):
                await submit_job(durable, clients, request(job_key, LARGE_INPUT))
            assert durable.started == []
            assert (count_blobs(conn), count_job_rows(conn)) == before  # nothing stored
            part = admission.ledger_partition(settings)
            assert sorted(entry.job_id for entry in ledger_store.entries_enqueued_before(part, "9999")) == [
                first,
                "2" * 32,
            ]
            assert ledger_store.read_ledger(part).joined == {"normal": 2}
        finally:
            await close_storage_clients()

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as other:
        other.submit(_enqueue_elsewhere, conn, f"warm{uuid.uuid4().hex[:8]}", "0" * 32).result()  # imports, connections
        asyncio.run(scenario(other))


class UnreachableDurable(FailingDurable):
    """The host's Durable API down for every call: starts and status reads alike."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_status(self, instance_id: str) -> Any:
        self.reads += 1
        raise ConnectionError("durable extension unreachable")


class StatusKnowingDurable(RecordingDurable):
    """A Durable that knows the instances it started (what start_unless_exists asks before starting)."""

    async def get_status(self, instance_id: str) -> Any:
        if instance_id not in self.started:
            return no_such_instance()
        return type("Status", (), {"runtime_status": "Running", "output": None, "custom_status": None})()


@pytest.mark.parametrize("size", ["small", "large"])
def test_an_http_submit_answers_before_the_start_and_a_failed_start_is_made_good_from_the_row(azurite, size):
    """An HTTP submit answers once the job is recorded; its start runs after the answer. When every attempt
    fails, the job stays accepted (row, place, input), and the recovery starts it from what storage holds: a
    small input from the job row, a large one by reference."""
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    data = SMALL_INPUT if size == "small" else LARGE_INPUT

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            failing = UnreachableDurable()
            submitted = await submit_job(failing, clients, request(None, data), answer_before_start=True)
            assert submitted.created and failing.starts == 0  # answered: nothing was awaited
            # One start (which asks after failing whether it landed after all), then retries that ask first.
            # Awaited by count (a busy machine runs the retries late), then a little longer: no more come.
            deadline = time.monotonic() + sum(submit.START_ATTEMPTS) + 10
            while failing.reads < len(submit.START_ATTEMPTS) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert (failing.starts, failing.reads) == (1, len(submit.START_ATTEMPTS))
            record = await job_store.get_job(clients.jobs, submitted.record["job_id"])
            assert record is not None and record["status"] == "PENDING"

            durable = StatusKnowingDurable()
            assert await recovery.start_recorded(durable, clients, record) == "started"
            assert await recovery.start_recorded(durable, clients, record) == "exists"
            (start,) = durable.inputs
            if size == "small":
                assert base64.b64decode(start["input_inline"]) == data and start["input_ref"] is None
            else:
                assert "input_inline" not in start and start["input_ref"] == job_input_blob_name(record["job_id"])
            assert start["admission"]["key"] == submit.admission_ticket(record)["key"]
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


def test_a_recorded_job_without_its_index_row_place_or_input_is_not_started(azurite):
    """Only an accepted job is started by the recovery: a row whose index row, place or claim-checked input is
    missing belongs to a submission that failed (and answered 503) before its undo finished."""
    settings = Settings(AzureWebJobsStorage=azurite.connection_string)

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            accepted = await submit_job(AcceptingDurable(), clients, request(None, LARGE_INPUT))
            record = accepted.record
            name = job_input_blob_name(record["job_id"])
            await clients.blobs.get_blob_client("payloads", name).delete_blob()
            durable = StatusKnowingDurable()
            assert await recovery.start_recorded(durable, clients, record) == "unaccepted"

            placed = (await submit_job(AcceptingDurable(), clients, request(None))).record
            await admission.release_async(settings, submit.admission_ticket(placed)["key"])
            assert await recovery.start_recorded(durable, clients, placed) == "unaccepted"

            listed = (await submit_job(AcceptingDurable(), clients, request(None))).record
            await clients.jobs.delete_entity("index", listed["index_key"])
            assert await recovery.start_recorded(durable, clients, listed) == "unaccepted"
            assert durable.started == []

            whole = (await submit_job(AcceptingDurable(), clients, request(None, LARGE_INPUT))).record
            assert await recovery.start_recorded(durable, clients, whole) == "started"  # the control
        finally:
            await close_storage_clients()

    asyncio.run(scenario())


class SlowDurable(AcceptingDurable):
    """A Durable whose every start takes a while, counting how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0

    async def start_new(self, name: str, instance_id: str, client_input: Any) -> str:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.05)
            return await super().start_new(name, instance_id, client_input)
        finally:
            self.running -= 1


def test_a_batch_answers_before_its_starts_which_then_run_a_few_at_a_time(azurite):
    """A batch answers once its jobs are accepted; their orchestrations start after the answer, each once,
    never more than STARTS_IN_FLIGHT at a time (a thousand starts must not hit the host together)."""
    from jobs.batch import submit_batch

    settings = Settings(AzureWebJobsStorage=azurite.connection_string)
    items = [{"kind": "vector-normalize", "input": {"vector_data": [[float(n)]]}} for n in range(60)]

    async def scenario() -> None:
        clients = await storage_clients(settings)
        try:
            durable = SlowDurable()
            results = await submit_batch(durable, clients, items, admission.ANONYMOUS_CLIENT)
            assert all(r.submitted is not None and r.submitted.created for r in results), [r.error for r in results]
            assert len(durable.started) < len(items)  # answered while the starts are still under way
            job_ids = {r.submitted.record["job_id"] for r in results if r.submitted}
            for _ in range(100):
                if len(durable.started) == len(items):
                    break
                await asyncio.sleep(0.1)
            assert sorted(durable.started) == sorted(job_ids)
            assert 1 < durable.most <= submit.STARTS_IN_FLIGHT
        finally:
            await close_storage_clients()

    asyncio.run(scenario())
