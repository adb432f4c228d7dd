"""The admission ledger: who waits in which lane, who runs, in one partition of the `Jobs` table.

Layout (PartitionKey = "admission-<task hub>": an app's task hub is its unit of work, so two apps, or
two test hosts, that share a storage account keep apart):
- the ledger row (RowKey "ledger"): counters only: jobs running, running per client, waiting per lane,
  how many ever joined and left each lane (for approximate positions), and the lanes' fair-share credits;
- one queue row per job (RowKey "q_<lane>_<submit ms>_<job id>"): its client, its number in the lane,
  and whether it has been admitted. It lives from submit to the job's end, so FIFO order within a lane
  is one range query, and re-enqueueing a job that was already admitted fails (the row exists).

One writer at a time, without a lock or a singleton: every change is one entity group transaction that
replaces the ledger row If-Match its ETag and creates, updates (If-Match) or deletes the queue rows it
concerns. Two app instances that decide at once cannot both win: the loser's transaction fails as a
whole and it decides again on fresh data. A crash before the transaction changes nothing; after it,
the change is complete. Decisions (which jobs to admit) are the caller's; this module only applies them.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient as AsyncTableClient

from shared.clock import iso, parse_iso, utc_now
from shared.contracts import PRIORITIES, Priority
from storage.transactions import Transacted, transact

ADMISSION_PREFIX = "admission-"
LEDGER_ROW = "ledger"
QUEUE_PREFIX = "q_"
MAX_TRANSACTION = 100  # entities in one entity group transaction (the ledger row is one of them)
ATTEMPTS = 50  # optimistic retries before giving up (each one means another writer won in between)

T = TypeVar("T")


@dataclass(frozen=True)
class Partition:
    """Where one task hub's admission rows live: the table and the PartitionKey."""

    table: TableClient
    key: str


def partition_key(task_hub: str) -> str:
    """The PartitionKey of a task hub's admission rows."""
    return f"{ADMISSION_PREFIX}{task_hub.lower()}"


class LedgerBusy(Exception):
    """Too many concurrent writers won in a row; the caller may retry later."""


@dataclass
class Ledger:
    """The ledger row: counters that every admission decision needs, with the ETag it was read at."""

    running: int = 0
    clients: dict[str, int] = field(default_factory=dict)  # running jobs per client
    pending: dict[str, int] = field(default_factory=dict)  # waiting jobs per lane
    joined: dict[str, int] = field(default_factory=dict)  # jobs that ever joined each lane
    left: dict[str, int] = field(default_factory=dict)  # jobs that left each lane's queue (admitted or withdrawn)
    credit: dict[str, float] = field(default_factory=dict)  # smooth weighted round-robin credits per lane
    etag: str | None = None  # None: the row does not exist yet

    @property
    def waiting(self) -> int:
        """Jobs waiting over all lanes."""
        return sum(self.pending.values())

    def entity(self, partition: str) -> dict[str, Any]:
        """The ledger row to write."""
        return {
            "PartitionKey": partition,
            "RowKey": LEDGER_ROW,
            "running": self.running,
            "clients": json.dumps({k: v for k, v in self.clients.items() if v > 0}),
            "pending": json.dumps(self.pending),
            "joined": json.dumps(self.joined),
            "left": json.dumps(self.left),
            "credit": json.dumps(self.credit),
        }

    def write_operation(self, partition: str) -> TransactionOperation | tuple[Any, ...]:
        """The transaction step that writes this ledger: create it, or replace it If-Match its ETag."""
        if self.etag is None:
            return ("create", self.entity(partition))
        return (
            "update",
            self.entity(partition),
            {"mode": UpdateMode.REPLACE, "etag": self.etag, "match_condition": MatchConditions.IfNotModified},
        )


@dataclass(frozen=True)
class QueueEntry:
    """One job's queue row."""

    key: str
    job_id: str
    lane: Priority
    client: str
    number: int  # its number in the lane (joined count when it joined): positions are approximate
    admitted: bool
    enqueued_at: str
    etag: str


def queue_key(lane: str, submitted_at: str, job_id: str) -> str:
    """The queue row's RowKey: lane, then submit time, so one range query reads a lane oldest first."""
    millis = int(parse_iso(submitted_at).timestamp() * 1000)
    return f"{QUEUE_PREFIX}{lane}_{millis:013d}_{job_id}"


def lane_of_key(key: str) -> Priority:
    """The lane a queue RowKey belongs to."""
    lane = key[len(QUEUE_PREFIX) :].split("_", 1)[0]
    for known in PRIORITIES:
        if lane == known:
            return known
    raise ValueError(f"not a queue row key: {key!r}")


def _counts(entity: Mapping[str, Any], name: str) -> dict[str, Any]:
    raw = entity.get(name)
    return dict(json.loads(raw)) if isinstance(raw, str) and raw else {}


def read_ledger(part: Partition) -> Ledger:
    """The ledger as it is now (an empty one, to be created, if it does not exist)."""
    try:
        entity = part.table.get_entity(part.key, LEDGER_ROW)
    except ResourceNotFoundError:
        return Ledger()
    return ledger_from_entity(entity, str(entity.metadata["etag"]))


async def read_ledger_async(table: AsyncTableClient, partition: str) -> Ledger:
    """read_ledger through the event loop's client (a request's read that decides nothing)."""
    try:
        entity = await table.get_entity(partition, LEDGER_ROW)
    except ResourceNotFoundError:
        return Ledger()
    return ledger_from_entity(entity, str(entity.metadata["etag"]))


def ledger_from_entity(entity: Mapping[str, Any], etag: str | None) -> Ledger:
    """The ledger a row holds (as read, or as just written: `Ledger.entity`)."""
    return Ledger(
        running=int(entity.get("running", 0)),
        clients={k: int(v) for k, v in _counts(entity, "clients").items()},
        pending={k: int(v) for k, v in _counts(entity, "pending").items()},
        joined={k: int(v) for k, v in _counts(entity, "joined").items()},
        left={k: int(v) for k, v in _counts(entity, "left").items()},
        credit={k: float(v) for k, v in _counts(entity, "credit").items()},
        etag=etag,
    )


def _entry(entity: Any) -> QueueEntry:
    key = str(entity["RowKey"])
    return QueueEntry(
        key=key,
        job_id=str(entity["job_id"]),
        lane=lane_of_key(key),
        client=str(entity.get("client", "")),
        number=int(entity.get("number", 0)),
        admitted=bool(entity.get("admitted", False)),
        enqueued_at=str(entity.get("enqueued_at", "")),
        etag=str(entity.metadata["etag"]),
    )


def read_entry(part: Partition, key: str) -> QueueEntry | None:
    """A job's queue row, or None (never enqueued, or released)."""
    try:
        return _entry(part.table.get_entity(part.key, key))
    except ResourceNotFoundError:
        return None


async def read_entry_async(table: AsyncTableClient, partition: str, key: str) -> QueueEntry | None:
    """read_entry through the event loop's client."""
    try:
        return _entry(await table.get_entity(partition, key))
    except ResourceNotFoundError:
        return None


def waiting_in_lane(part: Partition, lane: str, limit: int) -> list[QueueEntry]:
    """Up to `limit` waiting jobs of a lane, oldest first (one page of one range query)."""
    query = (
        f"PartitionKey eq '{part.key}' and RowKey gt '{QUEUE_PREFIX}{lane}_' "
        f"and RowKey lt '{QUEUE_PREFIX}{lane}`' and admitted eq false"
    )
    entries: list[QueueEntry] = []
    for entity in part.table.query_entities(query, results_per_page=min(limit, 1000)):
        entries.append(_entry(entity))
        if len(entries) >= limit:
            break
    return entries


def entries_enqueued_before(part: Partition, cutoff: str) -> list[QueueEntry]:
    """Every queue row enqueued before `cutoff` (ISO 8601), for the orphan sweep."""
    query = (
        f"PartitionKey eq '{part.key}' and RowKey gt '{QUEUE_PREFIX}' and RowKey lt 'q`' and enqueued_at lt '{cutoff}'"
    )
    return [_entry(entity) for entity in part.table.query_entities(query)]


def new_entry_entity(partition: str, key: str, job_id: str, client: str, number: int, admitted: bool) -> dict[str, Any]:
    """A queue row to create."""
    return {
        "PartitionKey": partition,
        "RowKey": key,
        "job_id": job_id,
        "client": client,
        "number": number,
        "admitted": admitted,
        "enqueued_at": iso(utc_now()),
    }


def admit_operation(partition: str, entry: QueueEntry) -> tuple[Any, ...]:
    """The transaction step that marks a waiting job admitted (If-Match: a concurrent withdrawal wins)."""
    entity = {"PartitionKey": partition, "RowKey": entry.key, "admitted": True}
    return (
        "update",
        entity,
        {"mode": UpdateMode.MERGE, "etag": entry.etag, "match_condition": MatchConditions.IfNotModified},
    )


def delete_operation(partition: str, entry: QueueEntry) -> tuple[Any, ...]:
    """The transaction step that removes a queue row (If-Match: only the row as read)."""
    keys = {"PartitionKey": partition, "RowKey": entry.key}
    return ("delete", keys, {"etag": entry.etag, "match_condition": MatchConditions.IfNotModified})


def commit(part: Partition, operations: Iterable[Any]) -> str | None:
    """Submit one entity group transaction; the ETag of its first entity, or None if another writer won.

    Every failure of the group (a changed ETag, a row that appeared or vanished) leaves nothing
    written; the caller reads again and decides again.
    """
    outcome = transact(part.table, operations)
    if outcome.failed is not None:
        return None
    return outcome.etags[0] if outcome.etags else ""


def commit_at(part: Partition, operations: Iterable[Any]) -> Transacted:
    """Submit one entity group transaction: applied (`failed` None, with the entities' new ETags), or the
    index of the operation that failed it (a changed ETag, a row that appeared or vanished; -1 when the
    service did not say which).

    Storage names the failing operation in the error message ("1:The specified entity already exists.",
    Azurite alike), so a group of many callers' rows learns which one to look at instead of re-reading all.
    """
    return transact(part.table, operations)


def optimistic(step: Callable[[], T | None]) -> T:
    """Run `step` until it returns a value (None: another writer won; read and decide again)."""
    for attempt in range(ATTEMPTS):
        result = step()
        if result is not None:
            return result
        # Jittered, growing pauses, so writers that collided do not collide again in lockstep.
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** min(attempt, 6))))  # noqa: S311 - jitter only
    raise LedgerBusy("the admission ledger is too busy; retry")
