"""Dead letters: jobs that failed for good and intake messages that could not be read.

Table `DeadLetters` (two rows per record, like the Jobs table):
- record row: PartitionKey = "record", RowKey = record id (idempotency: recording twice changes nothing)
- index row:  PartitionKey = "index",  RowKey = "<inverted ms>_<record id>" (newest first)
Each record is also sent once, as JSON, to the `jobs-deadletter` queue for whoever watches it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables.aio import TableClient as AsyncTableClient
from azure.storage.queue import TextBase64EncodePolicy

from shared.contracts import DeadLetterRecord
from shared.job_store import inverted_time_key, parse_iso
from shared.settings import Settings
from shared.storage import DEADLETTER_QUEUE, DEADLETTERS_TABLE, queue_service, table_service

RECORD_PARTITION = "record"
INDEX_PARTITION = "index"
MAX_RAW_MESSAGE_CHARS = 30_000  # a table string property holds 64 KiB of UTF-16
_MAX_QUEUE_JSON_CHARS = 40_000  # a queue message holds 64 KiB once base64-encoded

_FIELDS = (
    "id", "source", "job_id", "kind", "input_ref", "input_content_type", "options",
    "error_type", "reason", "attempts", "raw_message", "created_at",
)  # fmt: skip


def _index_key(record: DeadLetterRecord) -> str:
    return f"{inverted_time_key(parse_iso(record['created_at']))}_{record['id']}"


def _entity(record: DeadLetterRecord, partition_key: str, row_key: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key, "index_key": _index_key(record)}
    for key in _FIELDS:
        value = record.get(key)
        if value is None:
            continue
        if key == "options":
            value = json.dumps(value)
        elif key == "raw_message":
            value = str(value)[:MAX_RAW_MESSAGE_CHARS]
        entity[key] = value
    return entity


def _record(entity: dict[str, Any]) -> DeadLetterRecord:
    def text(key: str) -> str | None:
        value = entity.get(key)
        return str(value) if value is not None else None

    options = entity.get("options")
    return {
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


def _queue_text(record: DeadLetterRecord) -> str:
    text = json.dumps(record)
    if len(text) > _MAX_QUEUE_JSON_CHARS and record.get("raw_message"):
        text = json.dumps({**record, "raw_message": str(record["raw_message"])[:20_000], "truncated": True})
    return text


def _table(settings: Settings) -> TableClient:
    return table_service(settings).get_table_client(DEADLETTERS_TABLE)


def record_dead_letter(settings: Settings, record: DeadLetterRecord) -> None:
    """Record a dead letter once (idempotent on record["id"]) and announce it on the dead-letter queue."""
    with _table(settings) as table:
        try:
            table.create_entity({**_entity(record, RECORD_PARTITION, record["id"]), "queued": False})
            queued = False
        except ResourceExistsError:
            existing = table.get_entity(RECORD_PARTITION, record["id"])
            queued = bool(existing.get("queued"))
            record = _record(dict(existing))  # the first recording wins
        table.upsert_entity(_entity(record, INDEX_PARTITION, _index_key(record)), mode=UpdateMode.REPLACE)
        if not queued:
            queue = queue_service(settings).get_queue_client(
                DEADLETTER_QUEUE, message_encode_policy=TextBase64EncodePolicy()
            )
            with queue:
                queue.send_message(_queue_text(record))
            table.update_entity(
                {"PartitionKey": RECORD_PARTITION, "RowKey": record["id"], "queued": True}, mode=UpdateMode.MERGE
            )


def job_ids_dead_lettered_before(settings: Settings, cutoff: datetime) -> list[str]:
    """Ids of the jobs whose dead letters were recorded before `cutoff` (their inputs can go with them)."""
    query = f"PartitionKey eq '{INDEX_PARTITION}' and RowKey ge '{inverted_time_key(cutoff)}'"
    with _table(settings) as table:
        return [
            str(entity["job_id"])
            for entity in table.query_entities(query, select=["job_id", "source"])
            if entity.get("source") == "job" and entity.get("job_id")
        ]


def has_dead_letter(settings: Settings, record_id: str) -> bool:
    with _table(settings) as table:
        try:
            table.get_entity(RECORD_PARTITION, record_id, select=["RowKey"])
        except ResourceNotFoundError:
            return False
        return True


def purge_dead_letters_before(settings: Settings, cutoff: datetime) -> int:
    """Delete the dead letters recorded before `cutoff`; returns how many were deleted."""
    # Older records have larger inverted keys: everything after the cutoff's key is older.
    query = f"PartitionKey eq '{INDEX_PARTITION}' and RowKey ge '{inverted_time_key(cutoff)}'"
    deleted = 0
    with _table(settings) as table:
        for entity in list(table.query_entities(query, select=["RowKey", "id"])):
            for partition_key, row_key in ((RECORD_PARTITION, str(entity["id"])), (INDEX_PARTITION, entity["RowKey"])):
                try:
                    table.delete_entity(partition_key, row_key)
                except ResourceNotFoundError:
                    pass
            deleted += 1
    return deleted


@dataclass(frozen=True)
class DeadLetterPage:
    items: list[DeadLetterRecord]
    continuation: str | None


async def list_dead_letters(table: AsyncTableClient, *, limit: int, after: str | None) -> DeadLetterPage:
    """Newest dead letters first; `after` is a previous page's continuation."""
    query = f"PartitionKey eq '{INDEX_PARTITION}'"
    if after:
        query += " and RowKey gt '" + after.replace("'", "''") + "'"
    items: list[DeadLetterRecord] = []
    last_key: str | None = None
    has_more = False
    async for entity in table.query_entities(query, results_per_page=min(limit + 1, 1000)):
        if len(items) == limit:
            has_more = True
            break
        items.append(_record(dict(entity)))
        last_key = str(entity["RowKey"])
    return DeadLetterPage(items, last_key if has_more else None)


async def get_dead_letter(table: AsyncTableClient, record_id: str) -> DeadLetterRecord | None:
    try:
        entity = await table.get_entity(RECORD_PARTITION, record_id)
    except ResourceNotFoundError:
        return None
    return _record(dict(entity))
