"""The admission ledger under concurrent callers: two processes (two app instances) of many threads each
enqueue, retry and release at once on Azurite. Whatever the interleaving, the ledger's counters must equal
what its queue rows say, and no job may have two rows (admitted twice) or none (forgotten)."""

from __future__ import annotations

import multiprocessing
import random
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from azure.data.tables import TableServiceClient

from jobs import admission
from shared.clock import iso, utc_now
from shared.contracts import PRIORITIES, AdmissionTicket
from shared.settings import Settings
from storage import admission as ledger_store
from storage.admission import queue_key
from storage.names import JOBS_TABLE

THREADS = 12
JOBS_PER_THREAD = 5
MAX_RUNNING = 20


def _settings(conn: str, hub: str) -> Settings:
    return Settings(AzureWebJobsStorage=conn, TASK_HUB_NAME=hub, MAX_RUNNING_JOBS=MAX_RUNNING)


def _ticket(job_id: str, rng: random.Random, client: str) -> AdmissionTicket:
    lane = rng.choice(PRIORITIES)
    return {"lane": lane, "client": client, "key": queue_key(lane, iso(utc_now()), job_id), "admitted": False}


def _instance(conn: str, hub: str, seed: int) -> tuple[list[str], list[str], int, int]:
    """One app instance: THREADS threads, each submits its jobs one by one, retries its first submit (as a
    client retrying with the same key would) and releases its second job. Returns the jobs it enqueued and
    released, and how many changes and ledger rounds it made."""
    settings = _settings(conn, hub)

    def client(thread: int) -> tuple[list[str], str]:
        # A third of the threads are requests (fail-fast changes), the rest activities: one group carries both.
        token = admission._FROM_A_REQUEST.set(thread % 3 == 0)
        try:
            return changes_of(thread)
        finally:
            admission._FROM_A_REQUEST.reset(token)

    def changes_of(thread: int) -> tuple[list[str], str]:
        rng = random.Random(seed * 1000 + thread)
        name = f"client{thread % 3}"
        tickets = []
        for _ in range(JOBS_PER_THREAD):
            job_id = uuid.uuid4().hex
            ticket = _ticket(job_id, rng, name)
            joined = admission.enqueue(settings, ticket, job_id)
            assert joined in ("admitted", "queued")
            ticket["admitted"] = joined == "admitted"
            tickets.append((ticket, job_id))
        first, first_id = tickets[0]
        assert admission.enqueue(settings, first, first_id) in ("admitted", "queued")  # a retry: no new row
        # A job admitted when it joined is released as its ticket knows it, without reading its row
        # (activities.admission), half of them; a job that waited, and the other half, read it.
        released, released_id = tickets[1]
        known = admission.admitted_place(released, released_id) if thread % 2 == 0 else None
        admission.release(settings, released["key"], known)
        admission.release(settings, released["key"], known)  # idempotent, with the row gone
        return [job_id for _, job_id in tickets], released_id

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(client, range(THREADS)))
    group = admission._group(settings)
    changes = THREADS * (JOBS_PER_THREAD + 2)
    return [j for jobs, _ in results for j in jobs], [released for _, released in results], changes, group.rounds


def test_two_instances_of_many_threads_keep_the_ledger_equal_to_its_rows(azurite):
    conn, hub = azurite.connection_string, f"ledger{uuid.uuid4().hex[:8]}"
    TableServiceClient.from_connection_string(conn).create_table_if_not_exists(JOBS_TABLE)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcomes = list(pool.map(_instance, [conn, conn], [hub, hub], [1, 2]))

    enqueued = [job for jobs, _, _, _ in outcomes for job in jobs]
    released = {job for _, gone, _, _ in outcomes for job in gone}
    part = admission.ledger_partition(_settings(conn, hub))
    rows = ledger_store.entries_enqueued_before(part, "9999")
    by_job = Counter(row.job_id for row in rows)
    assert all(count == 1 for count in by_job.values()), "a job has two queue rows"
    assert set(by_job) == set(enqueued) - released  # none forgotten, the released ones gone

    ledger = ledger_store.read_ledger(part)
    admitted = [row for row in rows if row.admitted]
    assert ledger.running == len(admitted) == MAX_RUNNING  # a release admits the next: the slots stay full
    assert ledger.clients == dict(Counter(row.client for row in admitted))
    waiting = Counter(row.lane for row in rows if not row.admitted)
    assert {lane: n for lane, n in ledger.pending.items() if n} == dict(waiting)
    assert sum(ledger.joined.values()) == len(enqueued)  # the retries joined nothing

    changes = sum(n for _, _, n, _ in outcomes)
    rounds = sum(n for _, _, _, n in outcomes)
    assert rounds < changes, f"{rounds} ledger rounds for {changes} changes: no group commit happened"


def test_a_batch_joined_again_after_its_first_attempt_died_finds_every_row_it_had_written(azurite):
    """A batch killed after its jobs joined their lanes and before they started is sent again: its stranded
    jobs join again in one ledger transaction, where every create fails on a row that exists. The join must
    find them all, not one per failed transaction: with more such rows than the ledger's ATTEMPTS it used to
    answer LedgerBusy to every retry, and the client could never get its batch through (tests/api/test_batch.py
    kills the host at a random point of a 200-item batch, and failed so whenever the kill came late)."""
    conn, hub = azurite.connection_string, f"rejoin{uuid.uuid4().hex[:8]}"
    TableServiceClient.from_connection_string(conn).create_table_if_not_exists(JOBS_TABLE)
    settings = _settings(conn, hub)
    rng = random.Random(7)
    items = [(_ticket(job_id, rng, "batcher"), job_id) for job_id in (uuid.uuid4().hex for _ in range(99))]
    first = admission.enqueue_many(settings, items[: ledger_store.ATTEMPTS + 20])  # the attempt that died
    again = admission.enqueue_many(settings, items)  # the whole batch, sent again
    assert again[: len(first)] == first
    assert all(status in ("admitted", "queued") for status in again)
    part = admission.ledger_partition(settings)
    rows = ledger_store.entries_enqueued_before(part, "9999")
    assert Counter(row.job_id for row in rows) == Counter(job_id for _, job_id in items)  # one row each
    ledger = ledger_store.read_ledger(part)
    assert ledger.running + ledger.waiting == len(items)
