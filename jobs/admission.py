"""Admission control: priority lanes, weighted fair sharing, per-client caps and backpressure.

A job joins its lane's queue when it is submitted (or is admitted at once when nobody waits and there
is room), and its orchestration waits for admission before it prepares. Admission is decided by
whoever frees or might use capacity: the submitter (room and nobody waiting), the job's own claim
(a waiting job that starts or rechecks), and the release at every job's end. Each decision is applied
by one optimistic transaction on the ledger (storage.admission), so any number of app instances may
decide at once and exactly one of them wins each time; admitted jobs that are already waiting hear of
it through a notice on the `jobs-admitted` queue, whose trigger raises their `job_admitted` event.

Picking (choose): smooth weighted round-robin between the lanes that have an eligible job (the weights
are LANE_WEIGHTS, 6:3:1 by default), FIFO within a lane, skipping jobs whose client is at its
MAX_RUNNING_JOBS_PER_CLIENT; the lanes' credits live in the ledger, so the shares hold across
decisions made one slot at a time by different instances.
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar, cast

from azure.data.tables import TableClient
from azure.data.tables.aio import TableClient as AsyncTableClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from jobs.errors import InvalidRequest, field_error
from jobs.group_commit import GroupCommit, SingleFlight
from shared.contracts import PRIORITIES, AdmissionTicket, Priority
from shared.settings import Settings
from storage import admission as ledger_store
from storage.admission import Ledger, LedgerBusy, Partition, QueueEntry
from storage.clients import interactive_table_service, queue_service, table_service
from storage.names import ADMISSIONS_QUEUE, JOBS_TABLE

T = TypeVar("T")

DEFAULT_PRIORITY: Priority = "normal"
ANONYMOUS_CLIENT = "anonymous"
PEEK_EXTRA = 100
"""Waiting jobs read beyond the free slots, so jobs of capped clients at a lane's head do not block it."""
_CLIENT_ID = re.compile(r"[A-Za-z0-9._@:-]{1,64}")

Enqueued = Literal["admitted", "queued", "full"]


@dataclass(frozen=True)
class Limits:
    """The admission settings, validated."""

    max_running: int
    per_client: int
    max_pending: int
    weights: Mapping[str, int]
    recheck_seconds: int


def limits_from(settings: Settings) -> Limits:
    """The limits the settings configure."""
    weights: dict[str, int] = dict(
        zip(PRIORITIES, (int(part) for part in settings.lane_weights.split(":")), strict=True)
    )
    return Limits(
        max_running=settings.max_running_jobs,
        per_client=settings.max_running_jobs_per_client,
        max_pending=settings.max_pending_jobs,
        weights=weights,
        recheck_seconds=settings.admission_recheck_seconds,
    )


def check_priority(value: object, field: str = "priority") -> Priority:
    """The lane a request names (normal when absent); InvalidRequest for anything else."""
    if value is None:
        return DEFAULT_PRIORITY
    for lane in PRIORITIES:
        if value == lane:
            return lane
    raise InvalidRequest("invalid priority", [field_error(field, "one of: high, normal, low")])


def client_from_header(value: str | None, header: str) -> str:
    """The client a request comes from: the identity header's value, or `anonymous` without one."""
    if value is None or value == "":
        return ANONYMOUS_CLIENT
    if not _CLIENT_ID.fullmatch(value):
        raise InvalidRequest(
            "invalid client identity", [field_error(header, "1 to 64 characters: letters, digits and . _ @ : -")]
        )
    return value


# --- the decision ------------------------------------------------------------------------------------


def choose(ledger: Ledger, waiting: Mapping[str, list[QueueEntry]], limits: Limits, free: int) -> list[QueueEntry]:
    """Pick up to `free` waiting jobs and count them as running in `ledger` (credits included).

    Smooth weighted round-robin: every lane with an eligible job gains its weight, the richest lane
    is served and pays the sum of the active weights. Over any stretch where the same lanes wait,
    each gets its weight's share of the slots, and no lane waits more than sum/weight picks.
    """
    queues = {lane: list(entries) for lane, entries in waiting.items()}
    for lane in PRIORITIES:
        if ledger.pending.get(lane, 0) <= 0:
            ledger.credit.pop(lane, None)  # an empty lane starts afresh when jobs join it again
    chosen: list[QueueEntry] = []
    while free > 0:
        heads: dict[str, int] = {}
        for lane in PRIORITIES:
            for index, entry in enumerate(queues.get(lane, [])):
                if ledger.clients.get(entry.client, 0) < limits.per_client:
                    heads[lane] = index
                    break
        if not heads:
            break
        total = sum(limits.weights[name] for name in heads)
        for name in heads:
            ledger.credit[name] = ledger.credit.get(name, 0.0) + limits.weights[name]
        best = max(heads, key=lambda name: (ledger.credit[name], limits.weights[name]))
        ledger.credit[best] -= total
        entry = queues[best].pop(heads[best])
        _count_admitted(ledger, entry.lane, entry.client, was_waiting=True)
        chosen.append(entry)
        free -= 1
    return chosen


def _count_admitted(ledger: Ledger, lane: str, client: str, *, was_waiting: bool) -> None:
    ledger.running += 1
    ledger.clients[client] = ledger.clients.get(client, 0) + 1
    ledger.left[lane] = ledger.left.get(lane, 0) + 1
    if was_waiting:
        ledger.pending[lane] = max(0, ledger.pending.get(lane, 0) - 1)


def _can_admit_now(ledger: Ledger, client: str, limits: Limits) -> bool:
    # Only when nobody waits: otherwise the newcomer would overtake the queue and break the shares.
    return (
        ledger.waiting == 0
        and ledger.running < limits.max_running
        and ledger.clients.get(client, 0) < limits.per_client
    )


# --- the operations (sync: activities and threads of the API) ---------------------------------------


_FROM_A_REQUEST: ContextVar[bool] = ContextVar("admission_from_a_request", default=False)
"""Set by the async wrappers below (asyncio.to_thread carries it into the thread): a request's ledger calls
fail fast like the API's other storage calls, where activities ride a storage restart out."""


@lru_cache(maxsize=8)
def _client(settings: Settings, interactive: bool) -> TableClient:
    # One client per process and mode: it only pools connections; every decision reads the ledger afresh.
    service = interactive_table_service(settings) if interactive else table_service(settings)
    return service.get_table_client(JOBS_TABLE)


def ledger_partition(settings: Settings) -> Partition:
    """Where the task hub's admission rows live."""
    return Partition(_client(settings, _FROM_A_REQUEST.get()), ledger_store.partition_key(settings.task_hub_name))


_table = ledger_partition


LEDGER_MEMO_SECONDS = 1.0
"""How long a process builds on the ledger as it last read or wrote it instead of reading it again."""


class _LedgerMemo:
    """The ledger row as this process last read or wrote it, with its ETag.

    A submit used to read the ledger twice (the backpressure check, then the join) before its transaction;
    now both start from what the last read or commit of this process left, when that is recent. Nothing is
    decided on it alone: a transaction built on it replaces the ledger If-Match its ETag, so a copy another
    writer made stale costs one refused transaction and a read, and a join it would call "full" is decided
    again on a fresh read (_decide); a backpressure check trusts it only to let a submit through
    (has_room), which the join then checks exactly.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledger: Ledger | None = None
        self._at = 0.0

    def remember(self, ledger: Ledger) -> None:
        """Keep a copy of `ledger` (as read, or as a committed transaction left it)."""
        kept = copy.deepcopy(ledger)
        with self._lock:
            self._ledger, self._at = kept, time.monotonic()

    def recall(self) -> Ledger | None:
        """A copy of the ledger as last seen, if that was within LEDGER_MEMO_SECONDS."""
        with self._lock:
            ledger, at = self._ledger, self._at
        if ledger is None or time.monotonic() - at > LEDGER_MEMO_SECONDS:
            return None
        return copy.deepcopy(ledger)

    def forget(self) -> None:
        """Drop the copy (another writer changed the ledger since)."""
        with self._lock:
            self._ledger = None


ADMITTED_KEYS_KEPT = 20_000
"""Admitted jobs a process remembers (about 2 MB); older ones are read again, which is only slower."""


class _AdmittedKeys:
    """Queue keys of jobs this process knows were admitted: their place is settled.

    An admitted queue row stays admitted until the job's release deletes it (re-enqueueing fails on the
    existing row), and either way a poll shows no place. So once this process has seen a job admitted (its
    own join, or a poll's read), its later polls skip the read: a PENDING job waiting for a worker is polled
    several times, and the place read was half of each poll's storage requests. Only admission is kept, not
    a missing row: a job recorded but not yet placed has no row and may still join its lane.
    """

    def __init__(self, capacity: int = ADMITTED_KEYS_KEPT) -> None:
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            if len(self._keys) > self._capacity:
                self._keys.popitem(last=False)  # the oldest: its job has most likely ended

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys


@lru_cache(maxsize=8)
def _admitted(settings: Settings) -> _AdmittedKeys:
    return _AdmittedKeys()  # one per task hub and process, like the ledger's memo


@lru_cache(maxsize=8)
def _memo(settings: Settings) -> _LedgerMemo:
    return _LedgerMemo()  # one per task hub's partition and process, shared by requests and activities


def _read_ledger(table: Partition, memo: _LedgerMemo) -> Ledger:
    ledger = ledger_store.read_ledger(table)
    memo.remember(ledger)
    return ledger


# Group commit (jobs.group_commit): every enqueue and release of one process goes through one group per
# partition, so concurrent callers share ledger transactions instead of colliding on the row. A request's
# change is urgent: a round that carries one uses the fail-fast client, and when it fails, the requests
# waiting fail with it while the activities' changes it carried go again with the patient client. (One group
# per client mode, as before, ran a request's join and an activity's leave of the same process side by side,
# and a third of the ledger transactions were refused under load: issue #15, docs/benchmarks.md.)


@dataclass(eq=False)
class _Join:
    """A job to put in its lane."""

    ticket: AdmissionTicket
    job_id: str
    urgent: bool  # a request's: fail fast
    found: Enqueued | None = None  # its queue row exists already (a retried submission)
    checked: bool = False  # its row was looked for


@dataclass(eq=False)
class _Leave:
    """A job's place to give up, with its queue row as last read (None: gone already)."""

    key: str
    entry: QueueEntry | None
    urgent: bool  # a request's: fail fast
    stale: bool = False  # the row changed since: read it again before deciding


_Change = _Join | _Leave
_Outcome = Enqueued | bool  # a join's status; a leave: whether a pump may admit someone now


def _row_key(change: _Change) -> str:
    return change.ticket["key"] if isinstance(change, _Join) else change.key


def _decide(settings: Settings, limits: Limits, changes: list[_Change], memo: _LedgerMemo) -> list[_Outcome]:
    """Apply every change in one ledger transaction (optimistic: read, decide, commit If-Match, repeat), with
    the fail-fast client when a request's change is among them.

    When the transaction fails, storage names the operation that failed it: the ledger (another writer
    won: read again after a jittered pause) or one caller's row (a join whose row exists: a retried
    submission; a leave whose row was admitted or withdrawn meanwhile: read it again, at once).
    The first attempt may start from the ledger as this process last saw it (_LedgerMemo) instead of
    reading it: its ETag makes the transaction fail if it is stale, and then it is read at once.
    """

    def existing(join: _Join) -> Enqueued | None:
        join.checked = True
        entry = ledger_store.read_entry(table, join.ticket["key"])
        return None if entry is None else ("admitted" if entry.admitted else "queued")

    urgent = any(change.urgent for change in changes)
    table = Partition(_client(settings, urgent), ledger_store.partition_key(settings.task_hub_name))

    for attempt in range(ledger_store.ATTEMPTS):
        for change in changes:
            if isinstance(change, _Leave) and change.stale:
                change.entry, change.stale = ledger_store.read_entry(table, change.key), False
        recalled = memo.recall()
        ledger = recalled if recalled is not None else _read_ledger(table, memo)
        outcomes: list[_Outcome | None] = [None] * len(changes)
        operations: list[Any] = [None]  # the ledger's write goes first, once every change is counted
        owners: list[int] = [-1]
        # Leaves first: a slot given back can take a newcomer in the same transaction.
        for index, change in enumerate(changes):
            if not isinstance(change, _Leave):
                continue
            entry = change.entry
            if entry is None:
                outcomes[index] = True  # gone already: an earlier attempt may not have pumped, so pump
                continue
            if entry.admitted:
                ledger.running = max(0, ledger.running - 1)
                ledger.clients[entry.client] = max(0, ledger.clients.get(entry.client, 0) - 1)
            else:
                ledger.pending[entry.lane] = max(0, ledger.pending.get(entry.lane, 0) - 1)
                ledger.left[entry.lane] = ledger.left.get(entry.lane, 0) + 1
            operations.append(ledger_store.delete_operation(table.key, entry))
            owners.append(index)
        for index, change in enumerate(changes):
            if not isinstance(change, _Join):
                continue
            if change.found is not None:
                outcomes[index] = change.found
                continue
            lane, client = change.ticket["lane"], change.ticket["client"]
            if ledger.waiting >= limits.max_pending:
                found = None if change.checked else existing(change)
                outcomes[index] = found or "full"
                change.found = found
                continue
            ledger.joined[lane] = ledger.joined.get(lane, 0) + 1
            now = _can_admit_now(ledger, client, limits)
            if now:
                _count_admitted(ledger, lane, client, was_waiting=False)
            else:
                ledger.pending[lane] = ledger.pending.get(lane, 0) + 1
            key, number = change.ticket["key"], ledger.joined[lane]
            operations.append(
                ("create", ledger_store.new_entry_entity(table.key, key, change.job_id, client, number, now))
            )
            owners.append(index)
            outcomes[index] = "admitted" if now else "queued"
        if len(operations) == 1:
            if recalled is not None and "full" in outcomes:
                memo.forget()  # nothing was written to check the copy against: refuse only on a fresh read
                continue
            return _settled(outcomes)
        operations[0] = ledger.write_operation(table.key)
        outcome = ledger_store.commit_at(table, operations)
        failed = outcome.failed
        if failed is None:
            if outcome.etags and outcome.etags[0]:
                memo.remember(ledger_store.ledger_from_entity(ledger.entity(table.key), outcome.etags[0]))
            else:
                memo.forget()
            # Whether jobs wait that a slot given back could admit: else the leaves need no pump.
            room = ledger.waiting > 0 and ledger.running < limits.max_running
            return _settled([room if isinstance(change, _Leave) else outcomes[n] for n, change in enumerate(changes)])
        if failed <= 0:
            memo.forget()
            if failed == 0 and recalled is not None:
                continue  # the copy was stale, not a collision in flight: read and decide again at once
        if 0 < failed < len(owners):
            change = changes[owners[failed]]
            if isinstance(change, _Join):
                change.found = existing(change)  # None: the row went meanwhile; the next attempt creates it
                if change.found is not None:
                    # A retried submission, most often a batch sent again after its first attempt died: its
                    # siblings' rows are likely there too. Look for each now, once, instead of learning of
                    # them one failed transaction at a time (ATTEMPTS would run out first).
                    for other in changes:
                        if isinstance(other, _Join) and not other.checked:
                            other.found = existing(other)
            else:
                change.stale = True
            continue  # a row, not a writer: decide again at once
        if failed == -1:
            # The service did not say which: look at every row once, as a lone caller would.
            for change in changes:
                if isinstance(change, _Join) and not change.checked:
                    change.found = existing(change)
                elif isinstance(change, _Leave):
                    change.stale = True
        # Jittered, growing pauses, so writers that collided do not collide again in lockstep.
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** min(attempt, 6))))  # noqa: S311 - jitter only
    raise LedgerBusy("the admission ledger is too busy; retry")


REQUEST_PATIENCE_SECONDS = 0.25
"""How long a request's change waits behind a round of activities' changes (which may be riding out an
outage) before it goes in a round of its own beside it: a round takes milliseconds, and an outage must still
answer 503 within about 2 s."""


def _settled(outcomes: list[_Outcome | None]) -> list[_Outcome]:
    settled = [outcome for outcome in outcomes if outcome is not None]
    assert len(settled) == len(outcomes), "every change was decided"
    return settled


@lru_cache(maxsize=8)
def _group(settings: Settings) -> GroupCommit[_Change, _Outcome]:
    limits, memo = limits_from(settings), _memo(settings)
    return GroupCommit(
        lambda changes: _decide(settings, limits, changes, memo),
        max_items=ledger_store.MAX_TRANSACTION - 1,  # the ledger row is the hundredth
        key=_row_key,
        urgent=lambda change: change.urgent,
        patience=REQUEST_PATIENCE_SECONDS,
    )


def enqueue(settings: Settings, ticket: AdmissionTicket, job_id: str) -> Enqueued:
    """Put a recorded job in its lane (or admit it at once); "full" past MAX_PENDING_JOBS. Idempotent."""
    return enqueue_many(settings, [(ticket, job_id)])[0]


def enqueue_many(settings: Settings, items: list[tuple[AdmissionTicket, str]]) -> list[Enqueued]:
    """enqueue for many jobs: in ledger transactions of up to 99 rows, shared with concurrent callers."""
    urgent = _FROM_A_REQUEST.get()
    outcomes = _group(settings).submit([_Join(ticket, job_id, urgent) for ticket, job_id in items])
    admitted = _admitted(settings)
    for (ticket, _), outcome in zip(items, outcomes, strict=True):
        if outcome == "admitted":
            admitted.add(ticket["key"])
    return [cast(Enqueued, outcome) for outcome in outcomes]  # a join's outcome is its status


def pump(settings: Settings) -> list[str]:
    """Admit waiting jobs while there is room; the ids of the jobs this call admitted."""
    table, limits = _table(settings), limits_from(settings)
    admitted: list[str] = []
    while True:

        def step() -> list[str] | None:
            ledger = ledger_store.read_ledger(table)
            free = min(limits.max_running - ledger.running, ledger_store.MAX_TRANSACTION - 1)
            if free <= 0 or ledger.waiting == 0:
                return []
            waiting: dict[str, list[QueueEntry]] = {
                lane: ledger_store.waiting_in_lane(table, lane, free + PEEK_EXTRA)
                for lane in PRIORITIES
                if ledger.pending.get(lane, 0) > 0
            }
            chosen = choose(ledger, waiting, limits, free)
            if not chosen:
                return []
            operations = [
                ledger.write_operation(table.key),
                *(ledger_store.admit_operation(table.key, entry) for entry in chosen),
            ]
            if ledger_store.commit(table, operations) is None:
                return None
            return [entry.job_id for entry in chosen]

        batch = ledger_store.optimistic(step)
        admitted.extend(batch)
        if len(batch) < ledger_store.MAX_TRANSACTION - 1:
            return admitted


def claim(settings: Settings, ticket: AdmissionTicket, job_id: str) -> tuple[bool, list[str]]:
    """Whether the job is admitted (admitting what can be admitted first), and the other jobs admitted now.

    A job without a queue row was withdrawn (cancelled before it started, or swept): it counts as
    admitted, and its stop marker ends it at once.
    """
    table = _table(settings)
    entry = ledger_store.read_entry(table, ticket["key"])
    if entry is None or entry.admitted:
        return True, []
    admitted = pump(settings)
    others = [other for other in admitted if other != job_id]
    if job_id in admitted:
        return True, others
    entry = ledger_store.read_entry(table, ticket["key"])
    return entry is None or entry.admitted, others


def admitted_place(ticket: AdmissionTicket, job_id: str) -> QueueEntry | None:
    """The queue row of a job admitted when it joined, as its ticket knows it; None if it had to wait.

    Such a row never changes until it is deleted, so its release need not read it: the transaction deletes
    it If-Match `*`, which fails only if it is gone already (released: the leave then reads it, finds
    nothing, and decrements nothing). A row that waited may have been admitted since: that one is read.
    """
    if not ticket.get("admitted"):
        return None
    return QueueEntry(
        key=ticket["key"],
        job_id=job_id,
        lane=ticket["lane"],
        client=ticket["client"],
        number=0,  # a leave does not use it
        admitted=True,
        enqueued_at="",
        etag="*",
    )


def release(settings: Settings, key: str, known: QueueEntry | None = None) -> list[str]:
    """Give up a job's place (its slot if admitted, its queue row if waiting); idempotent. Admits the next jobs
    and returns their ids. `known`: the row as the caller knows it for sure (admitted_place), not read again."""
    # Read here, so concurrent callers read in parallel.
    entry = known if known is not None else ledger_store.read_entry(_table(settings), key)
    if entry is None:
        return pump(settings)  # gone: an earlier attempt released it but may have died before its pump
    (room,) = _group(settings).submit([_Leave(key, entry, _FROM_A_REQUEST.get())])
    return pump(settings) if room else []


@dataclass(frozen=True)
class Place:
    """A waiting job's place: its lane and approximately how many jobs of the lane are ahead of it, plus one."""

    lane: Priority
    position: int


async def place_async(settings: Settings, jobs: AsyncTableClient, key: str) -> Place | None:
    """The job's place while it waits; None once admitted or withdrawn. Read through the event loop's Jobs
    client (the admission rows live in that table): a poll's read decides nothing, so it needs neither a
    thread nor the ledger's group.

    Approximate: the position counts the jobs that joined the lane before it minus those that left
    the lane since; a job behind it that was cancelled, or admitted ahead of it because its own client
    was at its cap, makes the estimate low. A job this process has seen admitted is not read again.
    """
    admitted = _admitted(settings)
    if key in admitted:
        return None
    partition = ledger_store.partition_key(settings.task_hub_name)
    entry = await ledger_store.read_entry_async(jobs, partition, key)
    if entry is None or entry.admitted:
        if entry is not None:
            admitted.add(key)
        return None
    ledger = await ledger_store.read_ledger_async(jobs, partition)
    return Place(entry.lane, max(1, entry.number - ledger.left.get(entry.lane, 0)))


@lru_cache(maxsize=8)
def _waiting_reads(settings: Settings, interactive: bool) -> SingleFlight[int]:
    table = Partition(_client(settings, interactive), ledger_store.partition_key(settings.task_hub_name))
    memo = _memo(settings)
    return SingleFlight(lambda: _read_ledger(table, memo).waiting)


def waiting_count(settings: Settings) -> int:
    """Jobs waiting over all lanes (one read, shared with the callers that ask while it is in flight:
    backpressure is approximate by design, and joining a lane checks MAX_PENDING_JOBS again exactly)."""
    return _waiting_reads(settings, _FROM_A_REQUEST.get()).get()


def has_room(settings: Settings) -> bool:
    """Whether fewer than MAX_PENDING_JOBS jobs wait, as a check before a submit writes anything.

    A recent ledger of this process's (_LedgerMemo) may say yes without a read: the join checks exactly and
    a refused join's writes are undone. A no is only ever said on a read made now (shared as waiting_count's).
    """
    remembered = _memo(settings).recall()
    if remembered is not None and remembered.waiting < settings.max_pending_jobs:
        return True
    return waiting_count(settings) < settings.max_pending_jobs


def retry_after_seconds(settings: Settings) -> int:
    """When a refused submitter should try again: longer the deeper the queue."""
    return 30 if settings.max_pending_jobs >= 1000 else 10


# --- notices -------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _notices(settings: Settings) -> QueueClient:
    return queue_service(settings).get_queue_client(ADMISSIONS_QUEUE, message_encode_policy=TextBase64EncodePolicy())


def notify(settings: Settings, job_ids: list[str]) -> None:
    """Tell waiting jobs they are admitted: one message each (the trigger raises their event).

    A lost notice (a crash right after the admission) costs only time: the job's own recheck finds it.
    """
    for job_id in job_ids:
        _notices(settings).send_message(job_id)


# --- async wrappers for the API (the ledger calls are short and run in a thread) ----------------------


async def _off_the_loop(call: Callable[..., T], *args: Any) -> T:
    """Run a ledger call in a thread with the request's fail-fast storage client."""
    token = _FROM_A_REQUEST.set(True)
    try:
        return await asyncio.to_thread(call, *args)
    finally:
        _FROM_A_REQUEST.reset(token)


async def enqueue_async(settings: Settings, items: list[tuple[AdmissionTicket, str]]) -> list[Enqueued]:
    """enqueue_many off the event loop."""
    return await _off_the_loop(enqueue_many, settings, items)


async def release_async(settings: Settings, key: str) -> None:
    """release off the event loop; jobs it admits are notified."""
    admitted = await _off_the_loop(release, settings, key)
    if admitted:
        await asyncio.to_thread(notify, settings, admitted)


async def entry_async(settings: Settings, key: str) -> QueueEntry | None:
    """The job's queue row (its place, waiting or admitted) off the event loop; None if it holds none."""
    return await _off_the_loop(ledger_store.read_entry, _table(settings), key)


async def waiting_count_async(settings: Settings) -> int:
    """waiting_count off the event loop."""
    return await _off_the_loop(waiting_count, settings)


async def has_room_async(settings: Settings) -> bool:
    """has_room, off the event loop only when it has to read."""
    remembered = _memo(settings).recall()
    if remembered is not None and remembered.waiting < settings.max_pending_jobs:
        return True
    return await _off_the_loop(has_room, settings)
