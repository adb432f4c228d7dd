"""The task hub in Azure Storage, in the DurableTask.AzureStorage layout (tables, queues, blobs)."""

from __future__ import annotations

import base64
import gzip
import json
import random
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.data.tables import UpdateMode
from azure.data.tables._serialize import _add_entity_properties, _prepare_key
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.durable.history import Event, EventType, dotnet_time, parse_time

# The host's own storage clients read no proxy settings or ~/.netrc from the environment: with them, aiohttp
# hands every request to a thread twice (proxy lookup, netrc) before it is sent, which was a tenth of the
# host's CPU per job. The host talks to the storage account of its connection string only (Azurite on
# loopback here), never through a proxy.
CLIENT_OPTIONS: dict[str, Any] = {"use_env_settings": False}
LARGE_MESSAGE_BYTES = 45 * 1024  # DTFx MessageManager.MaxMessageSizeInBytes-ish threshold
LARGE_PROPERTY_UTF16_BYTES = 60 * 1024  # table string properties larger than this go to a blob
_PART_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")  # the status line of each answer in a $batch response
MAX_BATCH = 99  # history rows per transaction (+ the sentinel)
_COMPLEX = ("OrchestrationInstance", "ParentInstance", "Tags", "FailureDetails", "Correlation")
_REQUIRED_DEFAULTS: dict[int, tuple[str, ...]] = {
    EventType.ExecutionStarted: ("Name", "Version", "Input", "ParentInstance", "Tags"),
    EventType.ExecutionCompleted: ("Result", "FailureDetails"),
    EventType.ExecutionTerminated: ("Input",),
    EventType.TaskScheduled: ("Name", "Version", "Input"),
    EventType.TaskCompleted: ("Result",),
    EventType.TaskFailed: ("Reason", "Details", "FailureDetails"),
    EventType.SubOrchestrationInstanceCreated: ("Name", "Version", "InstanceId", "Input"),
    EventType.SubOrchestrationInstanceCompleted: ("Result",),
    EventType.SubOrchestrationInstanceFailed: ("Reason", "Details", "FailureDetails"),
    EventType.EventRaised: ("Name", "Input"),
    EventType.EventSent: ("InstanceId", "Name", "Input"),
    EventType.ContinueAsNew: ("Result",),
    EventType.ExecutionSuspended: ("Reason",),
    EventType.ExecutionResumed: ("Reason",),
}


def sanitize_key(instance_id: str) -> str:
    """DTFx KeySanitation: table keys may not contain / \\ # ? or control characters."""
    out = []
    for ch in instance_id:
        if ch == "^":
            out.append("^^")
        elif ch == "/":
            out.append("^0")
        elif ch == "\\":
            out.append("^1")
        elif ch == "#":
            out.append("^2")
        elif ch == "?":
            out.append("^3")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append("^" + chr(0xC0 + ord(ch) % 0x40))
        else:
            out.append(ch)
    return "".join(out)


def fnv1a(text: str) -> int:
    """The 32-bit FNV-1a hash of the UTF-8 text, as DTFx picks control queues."""
    value = 2166136261
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 16777619) & 0xFFFFFFFF
    return value


@dataclass
class QueuedMessage:
    """A received (or self-sent, leased) queue message and the event it carries."""

    queue: QueueClient
    message_id: str
    pop_receipt: str
    dequeue_count: int
    instance_id: str
    execution_id: str | None
    event: Event


@dataclass
class HistoryState:
    """An instance's current execution's history as stored, with the sentinel's etag."""

    execution_id: str | None
    events: list[Event]
    etag: str | None


class TaskHubStore:
    """Async access to one task hub's tables, queues and blobs."""

    def __init__(self, connection_string: str, hub_name: str, partition_count: int) -> None:
        self.hub = hub_name
        self.partition_count = partition_count
        self._tables = TableServiceClient.from_connection_string(connection_string, **CLIENT_OPTIONS)
        self._queues = QueueServiceClient.from_connection_string(connection_string, **CLIENT_OPTIONS)
        self._blobs = BlobServiceClient.from_connection_string(connection_string, **CLIENT_OPTIONS)
        self.instances: TableClient = self._tables.get_table_client(f"{hub_name}Instances")
        self.history: TableClient = self._tables.get_table_client(f"{hub_name}History")
        lower = hub_name.lower()
        self.control_queues: list[QueueClient] = [
            self._queues.get_queue_client(f"{lower}-control-{i:02d}") for i in range(partition_count)
        ]
        self.workitems: QueueClient = self._queues.get_queue_client(f"{lower}-workitems")
        self.large: ContainerClient = self._blobs.get_container_client(f"{lower}-largemessages")

    async def create_if_missing(self) -> None:
        """Create the task hub's tables, queues and container."""
        for table in (self.instances, self.history):
            try:
                await table.create_table()
            except ResourceExistsError:
                pass
        for queue in (*self.control_queues, self.workitems):
            try:
                await queue.create_queue()
            except ResourceExistsError:
                pass
        try:
            await self.large.create_container()
        except ResourceExistsError:
            pass

    async def close(self) -> None:
        """Close the storage clients."""
        for client in (self._tables, self._queues, self._blobs):
            await client.close()

    # --- queues ------------------------------------------------------------------------------
    @property
    def blob_service(self) -> BlobServiceClient:
        """The storage account's blob service (for partition leases)."""
        return self._blobs

    def partition_of(self, instance_id: str) -> int:
        """The control-queue partition of an instance: FNV-1a of its id, as DTFx computes it."""
        return fnv1a(instance_id) % self.partition_count

    def control_queue_for(self, instance_id: str) -> QueueClient:
        """The control queue of an instance's partition."""
        return self.control_queues[self.partition_of(instance_id)]

    async def _encode(self, instance_id: str, execution_id: str | None, ev: Event, sequence: int) -> str:
        message: dict[str, Any] = {
            "$type": "DurableTask.AzureStorage.MessageData",
            "ActivityId": str(uuid.uuid4()),
            "TaskMessage": {
                "$type": "DurableTask.Core.TaskMessage",
                "Event": {"$type": f"DurableTask.Core.History.{EventType(ev['EventType']).name}Event", **ev},
                "SequenceNumber": 0,
                "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
            },
            "CompressedBlobName": None,
            "SequenceNumber": sequence,
        }
        text = json.dumps(message, separators=(",", ":"))
        if len(text.encode("utf-8")) <= LARGE_MESSAGE_BYTES:
            return text
        name = f"{instance_id}/message-{message['ActivityId']}-{EventType(ev['EventType']).name}.json.gz"
        await self.large.upload_blob(name, gzip.compress(text.encode("utf-8")), overwrite=True)
        message["TaskMessage"] = None
        message["CompressedBlobName"] = name
        return json.dumps(message, separators=(",", ":"))

    async def _decode(self, text: str) -> tuple[str, str | None, Event]:
        message = json.loads(text)
        if message.get("CompressedBlobName"):
            downloader = await self.large.download_blob(message["CompressedBlobName"])
            message = json.loads(gzip.decompress(await downloader.readall()))
        task = message["TaskMessage"]
        ev = {k: v for k, v in task["Event"].items() if k != "$type"}
        instance = task["OrchestrationInstance"]
        return instance["InstanceId"], instance.get("ExecutionId"), ev

    async def send(
        self,
        queue: QueueClient,
        instance_id: str,
        execution_id: str | None,
        ev: Event,
        visible_at: datetime | None = None,
        lease: int | None = None,
    ) -> QueuedMessage | None:
        """Enqueue a message. With `lease`, it is sent already invisible and handed back to the caller to
        process in-process; the queue still holds it, so a crash only delays it until the lease lapses."""
        delay = None
        if visible_at is not None:
            seconds = int((visible_at - datetime.now(UTC)).total_seconds() + 0.999)
            if seconds > 0:
                delay = min(seconds, 7 * 24 * 3600 - 60)
        elif lease is not None:
            delay = lease
        text = await self._encode(instance_id, execution_id, ev, random.getrandbits(31))
        sent = await queue.send_message(text, visibility_timeout=delay)
        if lease is None or visible_at is not None:
            return None
        return QueuedMessage(queue, sent.id, sent.pop_receipt or "", 1, instance_id, execution_id, ev)

    async def send_control(
        self,
        instance_id: str,
        execution_id: str | None,
        ev: Event,
        visible_at: datetime | None = None,
        lease: int | None = None,
    ) -> tuple[int, QueuedMessage | None]:
        """Send to the instance's control queue; returns the partition and the message if leased to us."""
        queue = self.control_queue_for(instance_id)
        leased = await self.send(queue, instance_id, execution_id, ev, visible_at, lease)
        return self.control_queues.index(queue), leased

    async def send_workitem(
        self, instance_id: str, execution_id: str | None, ev: Event, lease: int | None = None
    ) -> QueuedMessage | None:
        """Send an activity work item (leased to the caller with `lease`)."""
        return await self.send(self.workitems, instance_id, execution_id, ev, lease=lease)

    async def receive(self, queue: QueueClient, count: int, visibility: int) -> list[QueuedMessage]:
        """Receive up to `count` messages, hidden for `visibility` seconds; undecodable ones are dropped."""
        messages: list[QueuedMessage] = []
        async for msg in queue.receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=visibility
        ):
            try:
                instance_id, execution_id, ev = await self._decode(str(msg.content))
            except (ValueError, KeyError, TypeError, ResourceNotFoundError):
                # Not a message of ours: drop it rather than loop on it forever.
                await queue.delete_message(msg.id, msg.pop_receipt)
                continue
            messages.append(
                QueuedMessage(
                    queue, msg.id, msg.pop_receipt or "", msg.dequeue_count or 1, instance_id, execution_id, ev
                )
            )
        return messages

    async def delete(self, message: QueuedMessage) -> None:
        """Delete a processed message (gone already is fine)."""
        try:
            await message.queue.delete_message(message.message_id, message.pop_receipt)
        except ResourceNotFoundError:
            pass  # already gone (redelivered and deleted elsewhere)

    async def abandon(self, message: QueuedMessage, delay_seconds: int) -> None:
        """Make a message visible again after `delay_seconds`."""
        try:
            await message.queue.update_message(
                message.message_id, message.pop_receipt, visibility_timeout=delay_seconds
            )
        except ResourceNotFoundError:
            pass

    async def renew(self, message: QueuedMessage, visibility: int) -> None:
        """Extend a message's invisibility (its pop receipt changes)."""
        reply = await message.queue.update_message(
            message.message_id, message.pop_receipt, visibility_timeout=visibility
        )
        message.pop_receipt = reply.pop_receipt or message.pop_receipt

    # --- large table properties ----------------------------------------------------------------
    async def _offload(self, entity: dict[str, Any], prefix: str) -> None:
        for key, value in list(entity.items()):
            if isinstance(value, str) and len(value) * 2 > LARGE_PROPERTY_UTF16_BYTES:
                name = f"{prefix}-{random.getrandbits(32):08X}-{key}.json.gz"
                await self.large.upload_blob(name, gzip.compress(value.encode("utf-8")), overwrite=True)
                entity[key] = ""
                entity[f"{key}BlobName"] = name

    async def _reload(self, entity: dict[str, Any]) -> dict[str, Any]:
        for key in [k for k in entity if k.endswith("BlobName") and entity[k]]:
            downloader = await self.large.download_blob(entity[key])
            entity[key[: -len("BlobName")]] = gzip.decompress(await downloader.readall()).decode("utf-8")
            del entity[key]
        return entity

    # --- history ---------------------------------------------------------------------------
    async def _to_row(self, instance_id: str, execution_id: str, index: int, ev: Event) -> dict[str, Any]:
        pk = sanitize_key(instance_id)
        row: dict[str, Any] = {"PartitionKey": pk, "RowKey": f"{index:016X}", "ExecutionId": execution_id}
        for key, value in ev.items():
            if value is None:
                continue
            if key == "EventType":
                row[key] = EventType(value).name
            elif key == "Timestamp":
                row["_Timestamp"] = parse_time(value)
            elif key in _COMPLEX or isinstance(value, dict | list):
                row[key] = json.dumps(value, separators=(",", ":"))
            elif key in ("FireAt", "ScheduledStartTime"):
                row[key] = parse_time(value)
            else:
                row[key] = value
        await self._offload(row, f"{pk}/history-{row['RowKey']}-{row['EventType']}")
        return row

    @staticmethod
    def _from_row(row: dict[str, Any]) -> Event:
        ev: Event = {}
        for key, value in row.items():
            if key in ("PartitionKey", "RowKey", "ExecutionId", "Timestamp") or key.startswith("odata"):
                continue
            if key == "EventType":
                ev[key] = int(EventType[value])
            elif key == "_Timestamp":
                ev["Timestamp"] = dotnet_time(value)
            elif key in ("FireAt", "ScheduledStartTime") and isinstance(value, datetime):
                ev[key] = dotnet_time(value)
            elif key in _COMPLEX and isinstance(value, str):
                ev[key] = json.loads(value)
            else:
                ev[key] = value
        for required in _REQUIRED_DEFAULTS.get(ev["EventType"], ()):
            ev.setdefault(required, None)
        if ev["EventType"] in (EventType.ExecutionStarted, EventType.TaskScheduled):
            ev["Version"] = ev.get("Version") or ""
        return ev

    async def read_history(self, instance_id: str) -> HistoryState:
        """The current execution's checkpointed history."""
        pk = sanitize_key(instance_id).replace("'", "''")
        rows: list[dict[str, Any]] = []
        sentinel: dict[str, Any] | None = None
        async for entity in self.history.query_entities(f"PartitionKey eq '{pk}'"):
            row = dict(entity)
            if row["RowKey"] == "sentinel":
                sentinel = row
                row["_etag"] = entity.metadata.get("etag")
            else:
                rows.append(row)
        if sentinel is None:
            return HistoryState(None, [], None)
        execution_id = sentinel.get("ExecutionId")
        count = int(sentinel.get("EventCount", 1 << 30))
        # Rows of an older execution or of an unfinished checkpoint are not part of the history.
        mine = sorted((r for r in rows if r.get("ExecutionId") == execution_id), key=lambda r: str(r["RowKey"]))
        mine = [r for r in mine if int(r["RowKey"], 16) < count]
        events = [self._from_row(await self._reload(r)) for r in mine]
        return HistoryState(execution_id, events, sentinel.get("_etag"))

    async def append_history(
        self, instance_id: str, execution_id: str, start: int, events: list[Event], total: int
    ) -> None:
        """Write events[start:] and then the sentinel naming how many rows are valid (the checkpoint)."""
        rows = [await self._to_row(instance_id, execution_id, start + i, ev) for i, ev in enumerate(events)]
        sentinel = {
            "PartitionKey": sanitize_key(instance_id),
            "RowKey": "sentinel",
            "ExecutionId": execution_id,
            "IsCheckpointComplete": True,
            "CheckpointCompletedTimestamp": datetime.now(UTC),
            "EventCount": total,
        }
        batches = [rows[i : i + MAX_BATCH] for i in range(0, len(rows), MAX_BATCH)] or [[]]
        for number, batch in enumerate(batches):
            await self._replace_all(self.history, batch if number < len(batches) - 1 else [*batch, sentinel])

    @staticmethod
    async def _replace_all(table: TableClient, rows: list[dict[str, Any]]) -> None:
        """Upsert (replace) `rows` of one partition in one entity group transaction.

        The same request `TableClient.submit_transaction` sends, built and checked directly: the SDK's
        multipart machinery (an email parser for the answer, a deep copy and a thread pool per part) cost
        a fifth of the host's CPU per job, more than the rest of a checkpoint. Anything but a plain success
        is handed to the SDK, which sends the transaction again (an upsert batch is idempotent, and a
        failed one changed nothing) and raises its own error.
        """
        if len({row["PartitionKey"] for row in rows}) > 1:
            raise ValueError("an entity group transaction takes rows of one partition only")
        base = f"{table.scheme}://{table._primary_hostname}"  # noqa: SLF001 - the SDK's own endpoint
        version = table.api_version
        changeset, batch = f"changeset_{uuid.uuid4()}", f"batch_{uuid.uuid4()}"
        parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
        for content_id, row in enumerate(rows):
            key = (quote(_prepare_key(row[name]), safe="") for name in ("PartitionKey", "RowKey"))
            body = json.dumps(_add_entity_properties(row)).encode("utf-8")
            parts.append(
                f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: {content_id}\r\n\r\n"
                f"PUT {base}/{table.table_name}(PartitionKey='{next(key)}',RowKey='{next(key)}') HTTP/1.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nx-ms-version: {version}\r\n"
                f"DataServiceVersion: 3.0\r\nAccept: application/json\r\n\r\n{body.decode('utf-8')}\r\n"
            )
        parts.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n")
        request = HttpRequest(
            "POST",
            f"{base}/$batch",
            headers={
                "x-ms-version": version,
                "DataServiceVersion": "3.0",
                "MaxDataServiceVersion": "3.0;NetFx",
                "Content-Type": f"multipart/mixed; boundary={batch}",
                "Accept": "application/json",
            },
            content="".join(parts).encode("utf-8"),
        )
        # Streamed, as the SDK asks for it: the pipeline's content decoder knows no multipart answer.
        response = await table._client._client.send_request(request, stream=True)  # noqa: SLF001 - signed, retried
        content = await response.read()
        statuses = _PART_STATUS.findall(content) if response.status_code == 202 else []
        if len(statuses) != len(rows) or any(not status.startswith(b"2") for status in statuses):
            await table.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows])

    # --- instances -----------------------------------------------------------------------------
    async def read_instance(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's row, large properties reloaded; None if there is none."""
        return (await self.read_instance_versioned(instance_id))[0]

    async def read_instance_versioned(self, instance_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The instance's row (as read_instance) and its ETag; (None, None) if there is none."""
        try:
            entity = await self.instances.get_entity(sanitize_key(instance_id), "")
        except ResourceNotFoundError:
            return None, None
        return await self._reload(dict(entity)), entity.metadata.get("etag")

    async def create_execution(self, instance_id: str, fields: dict[str, Any], etag: str | None) -> bool:
        """Write a new execution's row, as AzureTableTrackingStore.SetNewExecutionAsync does: an insert where the
        start read no row (`etag` None), else a replace of the row it read (If-Match `etag`). False if another
        start wrote first (409 or 412), which leaves that start's row alone."""
        entity = await self._instance_entity(instance_id, fields)
        try:
            if etag is None:
                await self.instances.create_entity(entity)
            else:
                await self.instances.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    async def write_instance(self, instance_id: str, fields: dict[str, Any], merge: bool = True) -> None:
        """Write (merge, or replace) the instance's row; large properties go to blobs."""
        entity = await self._instance_entity(instance_id, fields)
        await self.instances.upsert_entity(entity, mode=UpdateMode.MERGE if merge else UpdateMode.REPLACE)

    async def _instance_entity(self, instance_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The instance row's entity with `fields` (None ones left out), large properties offloaded to blobs."""
        pk = sanitize_key(instance_id)
        entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": "", "InstanceId": instance_id, "TaskHubName": self.hub}
        entity.update({k: v for k, v in fields.items() if v is not None})
        await self._offload(entity, f"{pk}/instance")
        return entity

    async def query_instances(
        self, filter_text: str | None, top: int | None, continuation: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of instance rows matching an OData filter, and the next continuation token."""
        token = json.loads(base64.b64decode(continuation)) if continuation else None
        pages = self.instances.query_entities(filter_text or "RowKey eq ''", results_per_page=top or 100).by_page(
            continuation_token=token
        )
        items: list[dict[str, Any]] = []
        async for page in pages:
            async for entity in page:
                items.append(await self._reload(dict(entity)))
            break
        next_token = getattr(pages, "continuation_token", None)
        encoded = base64.b64encode(json.dumps(next_token).encode()).decode() if next_token else None
        return items, encoded

    async def iter_instances(self, filter_text: str) -> AsyncIterator[dict[str, Any]]:
        """Every instance row matching an OData filter."""
        async for entity in self.instances.query_entities(filter_text):
            yield dict(entity)

    async def purge(self, instance_id: str) -> bool:
        """Delete the instance's row, history and blobs; False if nothing was there."""
        pk = sanitize_key(instance_id)
        found = await self.read_instance(instance_id)
        keys = [
            (e["PartitionKey"], e["RowKey"])
            async for e in self.history.query_entities(
                f"PartitionKey eq '{pk.replace(chr(39), chr(39) * 2)}'", select=["PartitionKey", "RowKey"]
            )
        ]
        for i in range(0, len(keys), 100):
            await self.history.submit_transaction(
                [("delete", {"PartitionKey": p, "RowKey": r}) for p, r in keys[i : i + 100]]
            )
        async for blob in self.large.list_blobs(name_starts_with=f"{pk}/"):
            await self.large.delete_blob(blob.name)
        if found is None:
            return bool(keys)
        try:
            await self.instances.delete_entity(pk, "")
        except ResourceNotFoundError:
            pass
        return True
