"""Retention: forget finished jobs after RETENTION_DAYS, dead letters after DEADLETTER_RETENTION_DAYS.

A job is forgotten in full: its Durable history (the job orchestration and its chunk batch
sub-orchestrations), its blobs under `jobs/{id}/` in both containers and its job-store rows; except
that a dead-lettered job's input stays as long as its dead letter does, so it can still be replayed.
Uploads no job claimed are deleted once the longer of the two retentions has passed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from jobs import durable
from jobs.sweep import sweep_orphans
from orchestrators.job import chunk_batch_instance_id
from shared.contracts import TERMINAL_EVENTS
from shared.settings import Settings
from shared.telemetry import log_event
from storage import dead_letters
from storage import jobs as job_store
from storage.clients import blob_service, storage_clients
from storage.names import PAYLOADS_CONTAINER, RESULTS_CONTAINER, job_input_blob_name, job_prefix
from webhooks.events import delivery_instance_id, webhook_id


@dataclass(frozen=True)
class RetentionReport:
    """What one retention run removed."""

    jobs: int
    instances: int
    blobs: int
    dead_letters: int


def delete_job_blobs(settings: Settings, job_id: str, keep_input: bool = False) -> int:
    """Delete the blobs under `jobs/{id}/` in the payloads and results containers; returns how many."""
    deleted = 0
    service = blob_service(settings)
    for container_name in (PAYLOADS_CONTAINER, RESULTS_CONTAINER):
        container = service.get_container_client(container_name)
        try:
            names = [blob.name for blob in container.list_blobs(name_starts_with=job_prefix(job_id))]
        except ResourceNotFoundError:
            continue
        for name in names:
            if keep_input and container_name == PAYLOADS_CONTAINER and name == job_input_blob_name(job_id):
                continue
            try:
                container.delete_blob(name)
                deleted += 1
            except ResourceNotFoundError:
                pass
    return deleted


async def purge_job_history(client: Any, job_id: str) -> int:
    """Purge the job orchestration's history and its chunk batches' and terminal webhook deliveries' (ids derived
    from the job id)."""
    purged = await durable.purge(client, job_id)
    for event in TERMINAL_EVENTS:
        purged += await durable.purge(client, delivery_instance_id(webhook_id(job_id, event)))
    batch = 0
    while True:
        deleted = await durable.purge(client, chunk_batch_instance_id(job_id, batch))
        if deleted == 0:
            return purged
        purged += deleted
        batch += 1


async def apply_retention(settings: Settings, client: Any, now: datetime) -> RetentionReport:
    """Forget jobs that finished before now − RETENTION_DAYS and older dead letters (and sweep orphans,
    which never finish)."""
    orphans = await sweep_orphans(client, await storage_clients(settings), now, unlisted=True)
    cutoff = now - timedelta(days=settings.retention_days)
    job_ids = await asyncio.to_thread(lambda: list(job_store.iter_finished_before(settings, cutoff)))
    instances = blobs = 0
    for job_id in job_ids:
        instances += await purge_job_history(client, job_id)
        # A dead letter promises a replay: its job's input outlives the job until the dead letter goes.
        replayable = await asyncio.to_thread(dead_letters.has_dead_letter, settings, f"job-{job_id}")
        blobs += await asyncio.to_thread(delete_job_blobs, settings, job_id, replayable)
        await asyncio.to_thread(job_store.delete_job, settings, job_id)
    dead_letter_cutoff = now - timedelta(days=settings.deadletter_retention_days)
    expiring = await asyncio.to_thread(dead_letters.job_ids_dead_lettered_before, settings, dead_letter_cutoff)
    for job_id in expiring:
        blobs += await asyncio.to_thread(delete_job_blobs, settings, job_id)
    purged_letters = await asyncio.to_thread(dead_letters.purge_dead_letters_before, settings, dead_letter_cutoff)
    upload_cutoff = now - timedelta(days=max(settings.retention_days, settings.deadletter_retention_days))
    blobs += await asyncio.to_thread(job_store.purge_uploads_before, settings, upload_cutoff)
    report = RetentionReport(len(job_ids) + orphans, instances, blobs, purged_letters)
    log_event(
        "retention.applied",
        jobs=report.jobs,
        instances=report.instances,
        blobs=report.blobs,
        dead_letters=report.dead_letters,
    )
    return report
