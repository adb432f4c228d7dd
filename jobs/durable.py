"""The one module that talks to the Durable client: start, status, raise an event, terminate.

Everything else sees an `Instance` (or None: no instance with that id), so the client's types, its
runtime-status enum and its exceptions stay here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.clock import iso
from shared.contracts import ADMITTED_EVENT, CANCEL_EVENT, JOB_ORCHESTRATOR, JobStart


@dataclass(frozen=True)
class Instance:
    """What Durable says of a job's orchestration instance."""

    runtime_status: str  # Pending, Running, Completed, Failed, Terminated, ...
    output: Any
    custom_status: Any
    last_updated: str | None  # ISO 8601 UTC, as shared.clock writes it

    @property
    def not_started(self) -> bool:
        """Created but not yet picked up by a worker."""
        return self.runtime_status == "Pending"


class StatusUnknown(Exception):
    """The host answered a status query with neither a status nor "no such instance" (e.g. its own 500)."""


async def status(client: Any, job_id: str) -> Instance | None:
    """The job's orchestration instance, or None if it has none (yet, or any more).

    Raises StatusUnknown when the host could not say: the SDK turns a 500 into a status without a runtime
    status, which must not read as "no instance" (a caller would start the job again).
    """
    reply = await client.get_status(job_id)
    runtime = getattr(reply, "runtime_status", None)
    name = getattr(runtime, "value", runtime)
    if name is None:
        # A 404 has an empty body, which the SDK keeps as `message` ""; anything else is an error's body.
        if getattr(reply, "message", None) == "":
            return None
        raise StatusUnknown(f"the status of {job_id} is unknown: the host answered without one")
    updated: datetime | None = getattr(reply, "last_updated_time", None)
    return Instance(str(name), reply.output, reply.custom_status, iso(updated) if updated else None)


async def start(client: Any, start: JobStart) -> None:
    """Start the job's orchestration (instance id = job id)."""
    await client.start_new(JOB_ORCHESTRATOR, instance_id=start["job_id"], client_input=start)


async def start_unless_exists(client: Any, start_input: JobStart) -> bool:
    """Start the job's orchestration unless it already has an instance; True if this call started it.

    Two submitters of one keyed job may both find no instance and both start: the loser's start fails
    (an instance with that id exists) and it then sees the winner's instance, which is all it wanted.
    """
    if await status(client, start_input["job_id"]) is not None:
        return False
    return await start_absent(client, start_input)


async def start_absent(client: Any, start_input: JobStart) -> bool:
    """Start the orchestration of a job that has no instance (its row was just created by this caller, or its
    instance was just looked up and not found); True if this call started it.

    Unlike start_unless_exists it does not ask first (one Durable call and one instance read fewer per job,
    which a batch of 1,000 feels), as a single submit's winner does not: only when the start fails does it
    look whether a concurrent retry of the same key started the job first.
    """
    try:
        await start(client, start_input)
    except Exception:
        if await status(client, start_input["job_id"]) is not None:
            return False
        raise
    return True


async def request_cancel(client: Any, job_id: str) -> bool:
    """Raise the cancel event on the job's instance; False if it has no instance to receive it."""
    if await status(client, job_id) is None:
        return False
    await client.raise_event(job_id, CANCEL_EVENT, {"reason": "client"})
    return True


async def announce_admission(client: Any, job_id: str) -> bool:
    """Raise the admitted event on a waiting job; False if it has no instance (yet, or any more) to receive it.

    An instance that does not exist yet claims its admission itself when it starts; one that has ended
    needs none.
    """
    try:
        await client.raise_event(job_id, ADMITTED_EVENT, {})
    except Exception as exc:
        # The SDK says 404 (no such instance) and 410 (it ended) only in the message of a bare Exception.
        text = str(exc)
        if text.startswith("No instance with ID") or "is gone" in text:
            return False
        raise
    return True


async def terminate(client: Any, job_id: str, reason: str) -> None:
    """Terminate the job's instance (for an instance that will not start in time to see an event)."""
    await client.terminate(job_id, reason)


async def purge(client: Any, instance_id: str) -> int:
    """Purge an instance's history; how many instances were deleted."""
    return int((await client.purge_instance_history(instance_id)).instances_deleted)


async def start_named_unless_exists(client: Any, orchestrator: str, instance_id: str, payload: Any) -> bool:
    """Start `orchestrator` as `instance_id` unless that instance exists (in any state); True if this call did.

    A finished instance is not started again: for Durable a start on a completed id would run it anew.
    """
    if await status(client, instance_id) is not None:
        return False
    try:
        await client.start_new(orchestrator, instance_id=instance_id, client_input=payload)
    except Exception:
        if await status(client, instance_id) is not None:
            return False
        raise
    return True


async def wait_until_finished(client: Any, instance_id: str, timeout: float, interval: float = 0.25) -> bool:
    """Poll until the instance has left Pending/Running (or is gone); False if it had not after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        instance = await status(client, instance_id)
        if instance is None or instance.runtime_status not in ("Pending", "Running", "ContinuedAsNew", "Suspended"):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
