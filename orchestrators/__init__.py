"""Blueprint of the orchestrators concern: the job orchestration and its chunk batch sub-orchestration.

The decorated functions are one-line wrappers over typed generators (orchestrators.job,
orchestrators.chunk_batch) that tests can drive with a context of their own.
"""

from typing import Any

import azure.durable_functions as df

from orchestrators.chunk_batch import chunk_batch_orchestration
from orchestrators.job import job_orchestration
from orchestrators.webhook import webhook_delivery_orchestration
from shared.contracts import CHUNK_BATCH_ORCHESTRATOR, JOB_ORCHESTRATOR, WEBHOOK_DELIVERY_ORCHESTRATOR

blueprint = df.Blueprint()


@blueprint.function_name(JOB_ORCHESTRATOR)
@blueprint.orchestration_trigger(context_name="context")
def job_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Run one job: see orchestrators.job."""
    return (yield from job_orchestration(context))


@blueprint.function_name(CHUNK_BATCH_ORCHESTRATOR)
@blueprint.orchestration_trigger(context_name="context")
def chunk_batch_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Run one batch of a job's chunks: see orchestrators.chunk_batch."""
    return (yield from chunk_batch_orchestration(context))


@blueprint.function_name(WEBHOOK_DELIVERY_ORCHESTRATOR)
@blueprint.orchestration_trigger(context_name="context")
def webhook_delivery_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    """Deliver one webhook event: see orchestrators.webhook."""
    return (yield from webhook_delivery_orchestration(context))
