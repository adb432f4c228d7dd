"""Bulk submission: up to MAX_BATCH_ITEMS job requests in one call, one result per item, in order.

Each item is the POST /api/jobs envelope plus its own optional `idempotency_key`, and goes the single
submit's way (jobs.submit), with the storage work grouped so that a batch costs far less than as many
submits:
1. every item is validated on its own; a bad item gets its problem, the others go on;
2. backpressure is checked once for the whole batch (items past MAX_PENDING_JOBS get 429);
3. the job rows, the arbiters, are created in parallel (each job is its own partition, so these cannot
   be grouped); a keyed item whose row exists names the earlier job (or conflicts), as in a single submit;
4. the winners' index rows go in Table transactions of 100, their inputs in parallel, their admission
   places in ledger transactions of 99 (jobs.admission.enqueue_many);
5. the batch answers, and the orchestrations start right after it, a few at a time (jobs.submit.start_soon:
   a fresh job's start does not ask Durable first; one that never lands is started by the next poll or the
   orphan sweep, jobs.recovery).
Steps 3-4 run per chunk of 99 items, CHUNKS_IN_FLIGHT chunks at a time, so one chunk's ledger round overlaps
the next one's rows; the room left under MAX_PENDING_JOBS is still handed out in item order.
A failure of one item undoes that item only. A retry of the whole batch with the same keys creates
nothing twice: every keyed job it recorded before is found by its arbiter row and finished (started,
if the first attempt died before starting it) as a single retry would (jobs.submit._start_if_never_started).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from jobs import admission, durable
from jobs.errors import (
    IdempotencyConflict,
    InvalidRequest,
    JobsError,
    QueueFull,
    Unavailable,
    field_error,
)
from jobs.requests import InboxMessage, JobRequest, check_idempotency_key, job_id_for, parse_body_model
from jobs.submit import (
    Submitted,
    _new_record,
    _store,
    _undo,
    admission_ticket,
    job_start,
    request_from_body,
    start_soon,
    submit_job,
)
from shared.contracts import AdmissionTicket, JobStart
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.clients import StorageClients

MAX_BATCH_ITEMS = 1000
START_CONCURRENCY = 100
"""Storage calls in flight at once for one batch: enough to hide round trips,
few enough not to starve the instance's other requests."""
CHUNK_ITEMS = 99
"""Items per pipelined chunk: one index-row transaction and one admission ledger round each."""
CHUNKS_IN_FLIGHT = 3
"""Chunks under way at once: enough to keep rows, inputs and ledger rounds overlapping, with about START_CONCURRENCY
storage calls in flight."""
KEY_FIELD = "idempotency_key"

T = TypeVar("T")


@dataclass
class ItemResult:
    """One item's outcome: the job it names, or why it was refused."""

    submitted: Submitted | None = None
    error: JobsError | None = None


def check_items(document: Any) -> list[Any]:
    """The items of a batch document; InvalidRequest unless it is {"items": [1..MAX_BATCH_ITEMS entries]}."""
    shape = "the request must be an object with one field, items: a list of job requests"
    unknown = sorted(set(document) - {"items"}) if isinstance(document, dict) else []
    if unknown:
        raise InvalidRequest(shape, [field_error(name, "unknown field") for name in unknown])
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise InvalidRequest(shape, [field_error("items", "required: a list of job requests")])
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise InvalidRequest(
            f"a batch holds 1 to {MAX_BATCH_ITEMS} items", [field_error("items", f"1 to {MAX_BATCH_ITEMS} entries")]
        )
    return items


async def _bounded(calls: list[Awaitable[T]]) -> list[T | BaseException]:
    """Await `calls` with at most START_CONCURRENCY in flight; each one's result or exception, in order."""
    gate = asyncio.Semaphore(START_CONCURRENCY)

    async def run(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(run(call) for call in calls), return_exceptions=True))


def _prefixed(error: JobsError, index: int) -> JobsError:
    """The same error with its field names under items[index], so a client can find the bad item's field."""
    for item_error in error.errors:
        item_error["field"] = f"items[{index}].{item_error['field']}" if item_error["field"] else f"items[{index}]"
    return error


async def _validate(index: int, raw: Any, clients: StorageClients, client_id: str) -> JobRequest:
    try:
        message = parse_body_model(raw, InboxMessage)
        assert isinstance(message, InboxMessage)
        key = check_idempotency_key(message.idempotency_key)
        body = parse_body_model(message.model_dump(exclude={KEY_FIELD}))
        return await request_from_body(
            body, settings=clients.settings, clients=clients, idempotency_key=key, source="http", client=client_id
        )
    except JobsError as error:
        raise _prefixed(error, index) from None


def _error(outcome: BaseException) -> JobsError:
    if isinstance(outcome, JobsError):
        return outcome
    logging.getLogger("longrun").warning("batch item failed: %s", type(outcome).__name__)
    return Unavailable("the job could not be recorded; retry the request")


async def submit_batch(client: Any, clients: StorageClients, raw_items: list[Any], client_id: str) -> list[ItemResult]:
    """Submit every item; one result per item, in order. Raises only for what refuses the whole batch."""
    settings = clients.settings
    results = [ItemResult() for _ in raw_items]

    def fail(index: int, outcome: BaseException) -> None:
        results[index].error = _error(outcome)

    requests: dict[int, JobRequest] = {}
    validated = await _bounded([_validate(i, raw, clients, client_id) for i, raw in enumerate(raw_items)])
    for index, request in enumerate(validated):
        if isinstance(request, BaseException):
            fail(index, request)
        else:
            requests[index] = request
    room = settings.max_pending_jobs - await admission.waiting_count_async(settings)  # once for the batch
    records = {i: _new_record(r, job_id_for(r.idempotency_key), r.fingerprint()) for i, r in requests.items()}
    repeats = _repeated_keys(requests, records)
    for index in repeats:
        del requests[index], records[index]

    # Pipelined in chunks of 99 (one index transaction and one ledger round each): while one chunk joins its
    # lanes, the next one's rows are written.
    order = list(records)
    chunks = [order[start : start + CHUNK_ITEMS] for start in range(0, len(order), CHUNK_ITEMS)]
    turns = [asyncio.Event() for _ in chunks]
    left = [room]
    gate = asyncio.Semaphore(CHUNKS_IN_FLIGHT)

    async def chunk(number: int, indices: list[int]) -> None:
        async with gate:
            await _submit_chunk(client, clients, requests, records, indices, results, left, turns, number, starts)

    starts: list[JobStart] = []
    await asyncio.gather(*(chunk(number, indices) for number, indices in enumerate(chunks)))
    # Every accepted job starts after the answer, as a single HTTP submit's does (jobs.submit.start_soon),
    # and not while the rest of the batch is still being written: the starts would only slow the answer. A
    # start that never lands is made good by the next poll of the job or the orphan sweep (jobs.recovery).
    for start in starts:
        start_soon(client, start)
    for index, (first, record) in repeats.items():
        results[index] = _as_first(results[first], record)
    log_event(
        "jobs.batch", items=len(raw_items), created=sum(1 for r in results if r.submitted and r.submitted.created)
    )
    return results


def _repeated_keys(
    requests: dict[int, JobRequest], records: dict[int, job_store.JobRecord]
) -> dict[int, tuple[int, job_store.JobRecord]]:
    """The items whose idempotency key an earlier item of the batch has, each with that item's index and its
    own record. Only the first is submitted: two rows for one job in the batch's writes would fail them all."""
    first: dict[str, int] = {}
    repeats: dict[int, tuple[int, job_store.JobRecord]] = {}
    for index, record in records.items():  # in item order
        if requests[index].idempotency_key is None:
            continue
        earlier = first.setdefault(record["job_id"], index)
        if earlier != index:
            repeats[index] = (earlier, record)
    return repeats


def _as_first(first: ItemResult, record: job_store.JobRecord) -> ItemResult:
    """A repeated key's result: as a single submit sent after the first item's would answer (the first's job
    if the requests are the same, else 409), or the first's refusal (a full queue, an outage) if it had one."""
    if first.submitted is not None:
        if first.submitted.record["fingerprint"] != record["fingerprint"]:
            return ItemResult(error=IdempotencyConflict(record["job_id"]))
        return ItemResult(submitted=Submitted(first.submitted.record, created=False))
    return ItemResult(error=first.error)


async def _submit_chunk(
    client: Any,
    clients: StorageClients,
    requests: dict[int, JobRequest],
    records: dict[int, job_store.JobRecord],
    indices: list[int],
    results: list[ItemResult],
    left: list[int],
    turns: list[asyncio.Event],
    number: int,
    starts: list[JobStart],
) -> None:
    """Record, place and start one chunk of the batch; `left` is the room still free, handed out in item order
    (each chunk waits for the turn of the one before it)."""
    settings = clients.settings
    winners: list[int] = []
    losers: list[int] = []
    try:
        # The arbiters, in parallel: each job row is its own partition.
        created = await _bounded([job_store.create_job_row(clients.jobs, records[i]) for i in indices])
        for index, won in zip(indices, created, strict=True):
            if isinstance(won, BaseException):
                results[index].error = _error(won)
            else:
                (winners if won else losers).append(index)
        stranded = await _earlier(client, clients, requests, records, losers, results)
        if number > 0:
            await turns[number - 1].wait()
        # Items past the room left are refused before anything else is written (their rows are undone below).
        undo = set(winners[max(left[0], 0) :])
        left[0] -= len(winners) - len(undo)
    finally:
        turns[number].set()
    for index in undo:
        results[index].error = QueueFull(admission.retry_after_seconds(settings))
    winners = [i for i in winners if i not in undo]

    # Stranded jobs (recorded by an earlier attempt that died before starting them) finish their way with
    # the new ones; nothing of theirs is undone on failure: they were accepted before.
    kept: set[int] = set()
    ready = await _write(clients, requests, records, winners + stranded, results, kept)
    startable = await _join_lanes(clients, records, ready, results, kept)
    # Accepted: each job's rows, input and place exist. Its start waits for the answer (submit_batch).
    for index, ticket in startable:
        results[index].submitted = Submitted(records[index], created=index not in stranded)
        starts.append(job_start(records[index], ticket))
        if index not in stranded:
            log_event("job.submitted", job_id=records[index]["job_id"], kind=records[index]["kind"], source="batch")
    undo.update(i for i in kept if i not in stranded)

    # Undo what refused winners wrote (bounded, as for a single submit; leftovers are the sweeper's).
    await _bounded([_undo(clients, records[i], stored=requests[i].posted()) for i in sorted(undo)])


async def _write(
    clients: StorageClients,
    requests: dict[int, JobRequest],
    records: dict[int, job_store.JobRecord],
    winners: list[int],
    results: list[ItemResult],
    undo: set[int],
) -> list[int]:
    """The winners' index rows (Table transactions of 100) and inputs (in parallel); the items written."""
    indexed, stored = await asyncio.gather(
        _bounded([job_store.write_index_rows(clients.jobs, [records[i] for i in winners])]),
        _bounded([_store(clients, requests[i], records[i]) for i in winners]),
    )
    ready: list[int] = []
    for index, outcome in zip(winners, stored, strict=True):
        failure = indexed[0] if isinstance(indexed[0], BaseException) else outcome
        if isinstance(failure, BaseException):
            results[index].error = _error(failure)
            undo.add(index)
        else:
            ready.append(index)
    return ready


async def _join_lanes(
    clients: StorageClients,
    records: dict[int, job_store.JobRecord],
    ready: list[int],
    results: list[ItemResult],
    undo: set[int],
) -> list[tuple[int, AdmissionTicket]]:
    """Admission places for the written items (ledger transactions of 99); the items to start, with tickets."""
    settings = clients.settings
    tickets = [admission_ticket(records[i]) for i in ready]
    try:
        joined = await admission.enqueue_async(
            settings, [(ticket, records[i]["job_id"]) for i, ticket in zip(ready, tickets, strict=True)]
        )
    except Exception as exc:
        for index in ready:
            results[index].error = _error(exc)
        undo.update(ready)
        return []
    startable: list[tuple[int, AdmissionTicket]] = []
    for index, ticket, status in zip(ready, tickets, joined, strict=True):
        if status == "full":
            results[index].error = QueueFull(admission.retry_after_seconds(settings))
            undo.add(index)
        else:
            ticket["admitted"] = status == "admitted"
            startable.append((index, ticket))
    return startable


async def _earlier(
    client: Any,
    clients: StorageClients,
    requests: dict[int, JobRequest],
    records: dict[int, job_store.JobRecord],
    losers: list[int],
    results: list[ItemResult],
) -> list[int]:
    """Name the jobs earlier requests with these keys created; returns the stranded ones (recorded, never
    started: their submitter died in between), whose records replace the new ones in `records`."""
    found = await _bounded([job_store.get_job(clients.jobs, records[i]["job_id"]) for i in losers])
    candidates: list[int] = []
    resubmit: list[int] = []
    for index, existing in zip(losers, found, strict=True):
        if isinstance(existing, BaseException):
            results[index].error = _error(existing)
        elif existing is None:
            resubmit.append(index)  # the earlier submitter failed and removed its row: arbitrate again
        elif existing["fingerprint"] != records[index]["fingerprint"]:
            results[index].error = IdempotencyConflict(existing["job_id"])
        else:
            records[index] = existing
            candidates.append(index)
    again = await _bounded([submit_job(client, clients, requests[i]) for i in resubmit])
    for index, submitted in zip(resubmit, again, strict=True):
        if isinstance(submitted, BaseException):
            results[index].error = _error(submitted)
        else:
            results[index].submitted = submitted
    pending = [i for i in candidates if records[i]["status"] == "PENDING"]
    instances = await _bounded([durable.status(client, records[i]["job_id"]) for i in pending])
    stranded: list[int] = []
    for index in candidates:
        results[index].submitted = Submitted(records[index], created=False)
    for index, instance in zip(pending, instances, strict=True):
        if isinstance(instance, BaseException):
            results[index].submitted = None
            results[index].error = _error(instance)
        elif instance is None:
            results[index].submitted = None
            stranded.append(index)
            log_event("job.restarted", job_id=records[index]["job_id"], kind=records[index]["kind"])
    return stranded
