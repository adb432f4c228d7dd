"""Blueprint of the maintenance concern: the daily retention timer."""

import azure.durable_functions as df
import azure.functions as func

from maintenance.retention import apply_retention
from shared.clock import utc_now
from shared.settings import get_settings

blueprint = df.Blueprint()

APPLY_RETENTION = "apply_retention"


@blueprint.function_name(APPLY_RETENTION)
@blueprint.timer_trigger(schedule="%RETENTION_SCHEDULE%", arg_name="timer", run_on_startup=False)
@blueprint.durable_client_input(client_name="client")
async def apply_retention_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Purge finished jobs older than RETENTION_DAYS and dead letters older than DEADLETTER_RETENTION_DAYS."""
    await apply_retention(get_settings(), client, utc_now())
