"""The orphan sweep: jobs recorded but never started, because their start failed or their submitter died.

An HTTP submit answers 202 once the job is accepted (its row, its place and its input are stored) and
starts the orchestration after answering (jobs.submit); a start that failed or died with the instance
is made good here, as a poll would (jobs.recovery), for the jobs nobody polls. A job recorded without
its index row, its place or its input was never answered 202: its submitter failed and its undo did not finish (or the
submitter died before the 202). Such a row stays PENDING, is never purged (retention keys on
finished_at) and shows in the health counts, so the sweep removes it: its rows and the input stored under
its name, once it is older than ORPHAN_AFTER, longer than any submitter can live (host.json functionTimeout).
The sweep every ten minutes finds such rows through the index; a row whose index row is missing too is
found by the daily retention, which reads every job row.

The same holds for admission places (jobs.admission): a place whose job has no instance, or whose
instance ended without releasing it (terminated, or its cleanup failed for good), would hold a slot
or a queue position forever; the sweep releases it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from jobs import admission, durable, recovery
from shared.clock import iso, parse_iso
from shared.settings import Settings
from shared.telemetry import log_event
from storage import admission as ledger_store
from storage import jobs as job_store
from storage.clients import StorageClients
from storage.names import PAYLOADS_CONTAINER, job_input_blob_name

ORPHAN_AFTER = timedelta(hours=1)
"""functionTimeout (30 min) plus a wide margin: no submitter of an older PENDING row without an instance is alive."""


async def sweep_orphans(client: Any, clients: StorageClients, now: datetime, *, unlisted: bool = False) -> int:
    """Start the accepted jobs that never started; remove the unaccepted ones recorded before now - ORPHAN_AFTER.

    `unlisted`: look for job rows without an index row as well (a scan of every job row: the daily retention).
    Returns how many were removed.
    """
    removed = 0
    candidates = await job_store.pending_created_before(clients.jobs, now - recovery.RESTART_AFTER)
    if unlisted:
        candidates += await job_store.unlisted_pending_created_before(clients.jobs, now - ORPHAN_AFTER)
    for found in candidates:
        if await durable.status(client, found["job_id"]) is not None:
            continue  # started: its orchestration records its outcome
        # Most were found through their index row, which lacks what only the job row keeps, a small input
        # that travels inline among it: started without it, such a job failed for want of an input (seen in
        # `make chaos`). So the job is started, removed or restored from its job row (if it has one).
        record = await job_store.get_job(clients.jobs, found["job_id"]) or found
        if await recovery.start_recorded(client, clients, record) != "unaccepted":
            continue
        if parse_iso(record["created_at"]) >= now - ORPHAN_AFTER:
            continue  # its submitter may still be writing its place or its input
        await job_store.remove_job(clients.jobs, record)
        if await durable.status(client, record["job_id"]) is not None:
            # A retry of the same key started it just now: it keeps its rows and its input.
            await job_store.restore_job(clients.jobs, record)
            continue
        if record["input_ref"] == job_input_blob_name(record["job_id"]):
            try:
                await clients.blobs.get_blob_client(PAYLOADS_CONTAINER, record["input_ref"]).delete_blob()
            except ResourceNotFoundError:
                pass
        log_event("job.orphan_removed", job_id=record["job_id"], kind=record["kind"])
        removed += 1
    await release_stale_places(client, clients.settings, now)
    return removed


_ENDED = {"Completed", "Failed", "Terminated", "Canceled"}


async def release_stale_places(client: Any, settings: Settings, now: datetime) -> int:
    """Release the admission places older than ORPHAN_AFTER whose job has no live instance; returns how many."""
    table = admission.ledger_partition(settings)
    entries = await asyncio.to_thread(ledger_store.entries_enqueued_before, table, iso(now - ORPHAN_AFTER))
    released = 0
    for entry in entries:
        instance = await durable.status(client, entry.job_id)
        if instance is not None and instance.runtime_status not in _ENDED:
            continue  # waiting or running: its own end releases it
        await admission.release_async(settings, entry.key)
        log_event("admission.place_released", job_id=entry.job_id, lane=entry.lane)
        released += 1
    return released
