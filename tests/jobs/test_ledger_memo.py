"""The ledger as a process last read or wrote it (jobs.admission._LedgerMemo) only saves reads: when another
app instance (here a second process) changes the ledger, this process's copy is stale, and what it decides
next is still exact: a join is counted once, and "full" is never said on the stale copy."""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

from azure.data.tables import TableServiceClient

from jobs import admission
from shared.clock import iso, utc_now
from shared.contracts import AdmissionTicket
from shared.settings import Settings
from storage import admission as ledger_store
from storage.admission import queue_key
from storage.names import JOBS_TABLE


def _settings(conn: str, hub: str) -> Settings:
    return Settings(AzureWebJobsStorage=conn, TASK_HUB_NAME=hub, MAX_RUNNING_JOBS=1, MAX_PENDING_JOBS=1)


def _ticket(job_id: str) -> AdmissionTicket:
    return {"lane": "normal", "client": "c", "key": queue_key("normal", iso(utc_now()), job_id), "admitted": False}


def _other_instance(conn: str, hub: str, action: str, ticket: AdmissionTicket | None, job_id: str) -> str:
    """Another app instance, with a memo of its own."""
    settings = _settings(conn, hub)
    if action == "release":
        assert ticket is not None
        admission.release(settings, ticket["key"])
        return "released"
    if action == "enqueue":
        assert ticket is not None
        return admission.enqueue(settings, ticket, job_id)
    return str(admission.waiting_count(settings))  # warm up: imports and connections


def test_a_stale_copy_costs_a_read_and_full_is_only_said_on_a_fresh_one(azurite):
    conn, hub = azurite.connection_string, f"memo{uuid.uuid4().hex[:8]}"
    TableServiceClient.from_connection_string(conn).create_table_if_not_exists(JOBS_TABLE)
    settings = _settings(conn, hub)
    part = admission.ledger_partition(settings)
    memo = admission._memo(settings)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as other:
        other.submit(_other_instance, conn, hub, "warm", None, "").result()

        first, second = _ticket("a" * 32), _ticket("b" * 32)
        assert admission.enqueue(settings, first, "a" * 32) == "admitted"
        assert admission.enqueue(settings, second, "b" * 32) == "queued"  # MAX_PENDING_JOBS reached
        reads = admission._waiting_reads(settings, False).reads
        assert not admission.has_room(settings)  # a no: said on a read made now...
        assert admission._waiting_reads(settings, False).reads == reads + 1

        # ...another instance withdraws the waiting job: this process's copy still says "full".
        assert other.submit(_other_instance, conn, hub, "release", second, "b" * 32).result() == "released"
        remembered = memo.recall()
        assert remembered is not None and remembered.waiting == 1
        assert remembered.etag != ledger_store.read_ledger(part).etag

        third = _ticket("c" * 32)
        assert admission.enqueue(settings, third, "c" * 32) == "queued"  # decided on a fresh read, not "full"
        reads = admission._waiting_reads(settings, False).reads
        assert not admission.has_room(settings) and admission._waiting_reads(settings, False).reads == reads + 1

        # Another instance admits nothing new but joins a lane: the copy is stale again, the count stays exact.
        assert other.submit(_other_instance, conn, hub, "release", third, "c" * 32).result() == "released"
        assert other.submit(_other_instance, conn, hub, "enqueue", _ticket("d" * 32), "d" * 32).result() == "queued"
        assert admission.enqueue(settings, _ticket("e" * 32), "e" * 32) == "full"
        assert admission.has_room(settings) is False

    ledger = ledger_store.read_ledger(part)
    rows = ledger_store.entries_enqueued_before(part, "9999")
    assert sorted(row.job_id for row in rows) == ["a" * 32, "d" * 32]
    assert ledger.running == 1 and ledger.pending == {"normal": 1} and ledger.joined == {"normal": 4}


def test_a_fresh_copy_lets_a_submit_through_without_a_read(azurite):
    conn, hub = azurite.connection_string, f"memo{uuid.uuid4().hex[:8]}"
    TableServiceClient.from_connection_string(conn).create_table_if_not_exists(JOBS_TABLE)
    settings = _settings(conn, hub)
    assert admission.enqueue(settings, _ticket("f" * 32), "f" * 32) == "admitted"  # nobody waits
    reads = admission._waiting_reads(settings, False).reads
    assert admission.has_room(settings)
    assert admission._waiting_reads(settings, False).reads == reads  # the join's own commit said so
