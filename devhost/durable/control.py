"""Client operations on instances: start, raise an event, terminate, suspend, resume, purge, history.

What the management API and the Durable client binding call; each either writes the instance row or sends
a control-queue message that a later episode consumes, as the extension's client does.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from devhost.durable.checkpoint import ACTIVE, FINISHED, Checkpointer, InstanceState
from devhost.durable.dispatcher import Dispatcher
from devhost.durable.history import Event, EventType, event, utcnow
from devhost.durable.store import TaskHubStore

log = logging.getLogger("devhost.durable")


class InstanceNotFound(Exception):
    """No instance has that id."""


class InstanceFinished(Exception):
    """The instance has finished; it takes no more messages."""


class InstanceExists(Exception):
    """An instance with that id is still active."""


class UnknownOrchestrator(Exception):
    """No orchestrator function has that name."""


class Control:
    """The instance operations of a Durable client."""

    def __init__(
        self, store: TaskHubStore, dispatcher: Dispatcher, checkpoints: Checkpointer, orchestrator_names: set[str]
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.checkpoints = checkpoints
        self.orchestrator_names = orchestrator_names

    async def start_instance(
        self,
        name: str,
        instance_id: str,
        input_text: str,
        parent: dict[str, Any] | None = None,
        allow_running: bool = False,
    ) -> str:
        """Write the Pending row and send ExecutionStarted; returns the new execution id."""
        if name not in self.orchestrator_names:
            raise UnknownOrchestrator(name)
        existing, etag = await self.store.read_instance_versioned(instance_id)
        if existing is not None and existing.get("RuntimeStatus") in ACTIVE and not allow_running:
            raise InstanceExists(str(existing.get("RuntimeStatus")))
        execution_id = uuid.uuid4().hex
        now = utcnow()
        # CreateTaskOrchestrationAsync: one generation past the instance it replaces, 0 for a new one.
        generation = int(existing.get("Generation") or 0) + 1 if existing is not None else 0
        start = event(
            EventType.ExecutionStarted,
            now,
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
            ParentInstance=parent,
            Name=name,
            Version="",
            Input=input_text,
            Tags=None,
            ScheduledStartTime=None,
            Generation=generation,
        )
        # Message first, then the row, in DurableTask.AzureStorage's order
        # (AzureStorageOrchestrationService.CreateTaskOrchestrationAsync: SendTaskOrchestrationMessageInternalAsync,
        # then trackingStore.SetNewExecutionAsync): a crash between the two leaves a start message without its
        # row, which waits for it and is then dropped (episode.redundant_start), never a Pending row that nothing
        # will ever start; the client saw its start fail. The message is leased to this host and handed to a
        # session only once the row is written, so no checkpoint races the row.
        _, leased = await self.store.send_control(
            instance_id, execution_id, start, lease=self.dispatcher.self_lease(instance_id)
        )
        row = {
            "Name": name,
            "Version": "",
            "Input": input_text,
            "CustomStatus": "null",
            "RuntimeStatus": "Pending",
            "CreatedTime": now,
            "LastUpdatedTime": now,
            "ExecutionId": execution_id,
            "Generation": generation,
        }
        if parent is not None:
            # A sub-orchestration's start replaces its row whatever it holds (a parent replaying after a crash
            # restarts its child); DTFx sends the child's message and lets the child's first episode write it.
            won = True
            await self.store.write_instance(instance_id, row, merge=False)
        else:
            # A client's start writes the row only if no other start wrote it since this one read it
            # (SetNewExecutionAsync: insert, or replace If-Match). The loser's call still succeeds, as the
            # extension's does, and its start message is a duplicate the control-queue dedupe drops
            # (episode.sort_messages): two concurrent starts of one id run one execution, never two.
            won = await self.store.create_execution(instance_id, row, etag)
        if won:
            self.checkpoints.forget(instance_id)  # the next episode reads the new execution's row
        else:
            log.warning("start of %s lost to a concurrent start: its message will be dropped", instance_id)
        if leased is not None and self.dispatcher.running:
            if won and (existing is None or existing.get("RuntimeStatus") in FINISHED):
                # What the first episode would read back (a Pending row of this execution and no history of
                # it): known here, so it skips a history query and a row read. An instance that may still
                # be running (a restarted sub-orchestration) is read from storage as before.
                seeded = InstanceState(instance_id, execution_id, name, [], 0, "Pending", now, custom_status="null")
                seeded.generation = generation
                self.checkpoints.seed(seeded)
            self.dispatcher.dispatch([leased])
        return execution_id

    async def _require(self, instance_id: str) -> dict[str, Any]:
        row = await self.store.read_instance(instance_id)
        if row is None:
            raise InstanceNotFound(instance_id)
        return row

    async def _send_to(self, instance_id: str, ev: Event, finished_ok: bool = False) -> None:
        row = await self._require(instance_id)
        if row.get("RuntimeStatus") in FINISHED and not finished_ok:
            raise InstanceFinished(str(row.get("RuntimeStatus")))
        await self.dispatcher.enqueue(instance_id, row.get("ExecutionId"), ev)

    async def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        """Send EventRaised to a running instance."""
        await self._send_to(instance_id, event(EventType.EventRaised, utcnow(), Name=name, Input=input_text))

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        """Send ExecutionTerminated to a running instance."""
        await self._send_to(instance_id, event(EventType.ExecutionTerminated, utcnow(), Input=reason))

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        """Send ExecutionSuspended to a running instance."""
        await self._send_to(instance_id, event(EventType.ExecutionSuspended, utcnow(), Reason=reason))

    async def resume(self, instance_id: str, reason: str | None) -> None:
        """Send ExecutionResumed to a suspended instance."""
        await self._send_to(instance_id, event(EventType.ExecutionResumed, utcnow(), Reason=reason))

    async def purge(self, instance_id: str) -> bool:
        """Delete the instance's row, history and large messages; False if there was nothing."""
        self.checkpoints.forget(instance_id)
        return await self.store.purge(instance_id)

    async def history_of(self, instance_id: str) -> list[Event]:
        """The current execution's history."""
        return (await self.store.read_history(instance_id)).events
