"""Blueprint of the maintenance concern: the daily retention timer and the orphan sweep."""

import asyncio

import azure.durable_functions as df
import azure.functions as func

from jobs.sweep import sweep_orphans
from maintenance.poison import drain_poison_queues, report_unread_intake_poison
from maintenance.retention import apply_retention
from shared.clock import utc_now
from shared.settings import get_settings
from storage.clients import storage_clients

blueprint = df.Blueprint()

APPLY_RETENTION = "apply_retention"
SWEEP_ORPHANS = "sweep_orphans"
SWEEP_SCHEDULE = "0 */10 * * * *"
"""Every ten minutes: an orphan (jobs.sweep.ORPHAN_AFTER, one hour) is gone within 70 minutes."""


@blueprint.function_name(APPLY_RETENTION)
@blueprint.timer_trigger(schedule="%RETENTION_SCHEDULE%", arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def apply_retention_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Purge finished jobs older than RETENTION_DAYS and dead letters older than DEADLETTER_RETENTION_DAYS."""
    await apply_retention(get_settings(), client, utc_now())


@blueprint.function_name(SWEEP_ORPHANS)
@blueprint.timer_trigger(schedule=SWEEP_SCHEDULE, arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def sweep_orphans_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Remove jobs that were recorded but never started (their submitter died in between), then empty the
    outboxes' poison queues and report intake messages no trigger can read (maintenance.poison)."""
    settings = get_settings()
    await sweep_orphans(client, await storage_clients(settings), utc_now())
    await asyncio.to_thread(drain_poison_queues, settings)
    await asyncio.to_thread(report_unread_intake_poison, settings)
