"""Dead letters: jobs that failed for good and intake messages that could not be read.

Table `DeadLetters` (an indexed table, storage.indexed_table):
- record row: PartitionKey = "record", RowKey = record id (idempotency: recording twice changes nothing)
- index row:  PartitionKey = "index",  RowKey = "<inverted ms>_<record id>" (newest first)
Each record is also sent once, as JSON, to the `jobs-deadletter` queue for whoever watches it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from azure.data.tables import TableClient
from azure.data.tables.aio import TableClient as AsyncTableClient
from azure.storage.queue import TextBase64EncodePolicy

from shared.clock import parse_iso
from shared.contracts import DeadLetterRecord
from shared.settings import Settings
from storage import indexed_table
from storage.clients import queue_service, table_service
from storage.indexed_table import INDEX_PARTITION, Page, older_than
from storage.names import DEADLETTER_QUEUE, DEADLETTERS_TABLE

RECORD_PARTITION = "record"
MAX_RAW_MESSAGE_CHARS = 30_000  # a table string property holds 64 KiB of UTF-16
_MAX_QUEUE_JSON_CHARS = 40_000  # a queue message holds 64 KiB once base64-encoded (48 KiB of JSON)

LAYOUT = indexed_table.Layout(primary=lambda record_id: (RECORD_PARTITION, record_id))
DeadLetterPage = Page[DeadLetterRecord]

_FIELDS = (
    "id", "source", "job_id", "kind", "input_ref", "input_content_type", "options",
    "error_type", "reason", "attempts", "raw_message", "created_at", "webhook",
)  # fmt: skip


def _index_key(record: DeadLetterRecord) -> str:
    return indexed_table.index_key(parse_iso(record["created_at"]), record["id"])


def _fields(record: DeadLetterRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {"index_key": _index_key(record)}
    for key in _FIELDS:
        value = record.get(key)
        if value is None:
            continue
        if key in ("options", "webhook"):
            value = json.dumps(value)
        elif key == "raw_message":
            value = str(value)[:MAX_RAW_MESSAGE_CHARS]
        fields[key] = value
    return fields


def _record(entity: dict[str, Any]) -> DeadLetterRecord:
    def text(key: str) -> str | None:
        value = entity.get(key)
        return str(value) if value is not None else None

    options = entity.get("options")
    webhook = entity.get("webhook")
    record: DeadLetterRecord = {
        "id": str(entity["id"]),
        "source": cast(Any, str(entity["source"])),
        "job_id": text("job_id"),
        "kind": text("kind"),
        "input_ref": text("input_ref"),
        "input_content_type": text("input_content_type"),
        "options": json.loads(options) if isinstance(options, str) else None,
        "error_type": str(entity.get("error_type", "")),
        "reason": str(entity.get("reason", "")),
        "attempts": int(entity.get("attempts", 0)),
        "raw_message": text("raw_message"),
        "created_at": str(entity["created_at"]),
    }
    if isinstance(webhook, str):
        record["webhook"] = json.loads(webhook)
    return record


def _queue_text(record: DeadLetterRecord) -> str:
    """The queue message: the record as JSON, its raw message cut until it fits (ASCII JSON, base64-encoded
    by the queue client, so 4/3 of its length must stay under the 64 KiB limit); the table keeps the rest."""
    text = json.dumps(record)
    raw = str(record.get("raw_message") or "")
    while len(text) > _MAX_QUEUE_JSON_CHARS and raw:
        raw = raw[: len(raw) // 2]
        text = json.dumps({**record, "raw_message": raw or None, "truncated": True})
    return text


def _table(settings: Settings) -> TableClient:
    return table_service(settings).get_table_client(DEADLETTERS_TABLE)


def record_dead_letter(settings: Settings, record: DeadLetterRecord) -> None:
    """Record a dead letter once (idempotent on record["id"]) and announce it on the dead-letter queue."""
    with _table(settings) as table:
        primary = LAYOUT.primary(record["id"])
        queued = False
        if not indexed_table.create_sync(table, primary, {**_fields(record), "queued": False}):
            existing = indexed_table.read_sync(table, primary) or {}
            queued = bool(existing.get("queued"))
            record = _record(existing)  # the first recording wins
        indexed_table.put_sync(table, (INDEX_PARTITION, _index_key(record)), _fields(record))
        if not queued:
            queue = queue_service(settings).get_queue_client(
                DEADLETTER_QUEUE, message_encode_policy=TextBase64EncodePolicy()
            )
            with queue:
                queue.send_message(_queue_text(record))
            indexed_table.merge_sync(table, [primary], {"queued": True})


def job_ids_dead_lettered_before(settings: Settings, cutoff: datetime) -> list[str]:
    """Ids of the jobs whose dead letters were recorded before `cutoff` (their inputs can go with them)."""
    with _table(settings) as table:
        return [
            str(entity["job_id"])
            for entity in indexed_table.scan_index_sync(
                table, filters=[older_than(cutoff)], select=["job_id", "source"]
            )
            if entity.get("source") == "job" and entity.get("job_id")
        ]


def has_dead_letter(settings: Settings, record_id: str) -> bool:
    """Whether a dead letter with this id exists."""
    with _table(settings) as table:
        return indexed_table.read_sync(table, LAYOUT.primary(record_id), select=["RowKey"]) is not None


def purge_dead_letters_before(settings: Settings, cutoff: datetime) -> int:
    """Delete the dead letters recorded before `cutoff`; returns how many were deleted."""
    deleted = 0
    with _table(settings) as table:
        for entity in list(indexed_table.scan_index_sync(table, filters=[older_than(cutoff)], select=["RowKey", "id"])):
            indexed_table.delete_sync(table, LAYOUT.rows(str(entity["id"]), str(entity["RowKey"])))
            deleted += 1
    return deleted


async def list_dead_letters(table: AsyncTableClient, *, limit: int, after: str | None) -> DeadLetterPage:
    """Newest dead letters first; `after` is a previous page's continuation."""
    return await indexed_table.read_page(table, _record, limit=limit, after=after)


async def get_dead_letter(table: AsyncTableClient, record_id: str) -> DeadLetterRecord | None:
    """The dead letter with this id, or None."""
    entity = await indexed_table.read(table, LAYOUT.primary(record_id))
    return _record(entity) if entity is not None else None
