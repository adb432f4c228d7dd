"""An indexed table: each item has a primary row and an index row that sorts newest first.

The Jobs and DeadLetters tables both keep this layout:
- primary row: where the item's id says (`layout.primary(id)`): a point read by id, and, created with
  `create_entity`, an arbiter between concurrent writers of the same id;
- index row:   PartitionKey = "index", RowKey = "<inverted ms>_<id>": one range query lists the newest
  items first, a page at a time (the continuation is the last RowKey served), and `RowKey ge <cutoff>`
  finds everything older than a moment.
Both rows carry the same fields, so a listing page needs no second read. Writes go to both rows and
ignore a row that is already gone (a concurrent delete wins).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables.aio import TableClient as AsyncTableClient

INDEX_PARTITION = "index"
_MAX_MS = 10**13 - 1  # inverted timestamps stay 13 digits until the year 2286

Item = TypeVar("Item")
Keys = tuple[str, str]


def inverted_time_key(moment: datetime) -> str:
    """A RowKey prefix that sorts newest first."""
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}"


def index_key(moment: datetime, item_id: str) -> str:
    """The index RowKey of an item created at `moment`."""
    return f"{inverted_time_key(moment)}_{item_id}"


def quote(value: str) -> str:
    """A string literal for an OData filter."""
    return "'" + value.replace("'", "''") + "'"


def older_than(cutoff: datetime) -> str:
    """The filter clause of the index rows created before `cutoff` (older items have larger keys)."""
    return f"RowKey ge {quote(inverted_time_key(cutoff))}"


def newer_than(cutoff: datetime) -> str:
    """The filter clause of the index rows created at or after `cutoff` (a key range: newer items sort first)."""
    return f"RowKey le {quote(inverted_time_key(cutoff) + '_~')}"


@dataclass(frozen=True)
class Layout:
    """Where an item's primary row lives, given its id."""

    primary: Callable[[str], Keys]

    def rows(self, item_id: str, index_row_key: str) -> tuple[Keys, Keys]:
        """The keys of both rows of an item: index first, so a reader never finds an index row alone
        after a delete, and a listing never shows an item whose primary row is already gone."""
        return (INDEX_PARTITION, index_row_key), self.primary(item_id)


def row(keys: Keys, fields: Mapping[str, Any]) -> dict[str, Any]:
    """An entity: the keys plus the fields."""
    return {"PartitionKey": keys[0], "RowKey": keys[1], **fields}


@dataclass(frozen=True)
class Page(Generic[Item]):
    """One page of a newest-first listing."""

    items: list[Item]
    continuation: str | None  # the index RowKey of the last item, when more may follow


def _index_query(after: str | None, filters: Iterable[str]) -> str:
    clauses = [f"PartitionKey eq {quote(INDEX_PARTITION)}"]
    if after:
        clauses.append(f"RowKey gt {quote(after)}")
    clauses.extend(filters)
    return " and ".join(clauses)


# --- async: the API -------------------------------------------------------------------------------


async def create(table: AsyncTableClient, keys: Keys, fields: Mapping[str, Any]) -> bool:
    """Create a row; False if it exists (the arbiter between concurrent writers of one id)."""
    try:
        await table.create_entity(row(keys, fields))
    except ResourceExistsError:
        return False
    return True


async def put(table: AsyncTableClient, keys: Keys, fields: Mapping[str, Any]) -> None:
    """Write a row whole, whether or not it exists."""
    await table.upsert_entity(row(keys, fields), mode=UpdateMode.REPLACE)


async def read(table: AsyncTableClient, keys: Keys, select: list[str] | None = None) -> dict[str, Any] | None:
    """A row (only the `select` properties, if given), or None."""
    try:
        return dict(await table.get_entity(*keys, select=select))
    except ResourceNotFoundError:
        return None


async def merge(table: AsyncTableClient, rows: Iterable[Keys], fields: Mapping[str, Any]) -> None:
    """Merge `fields` into each row that still exists."""
    for keys in rows:
        try:
            await table.update_entity(row(keys, fields), mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            pass


async def delete(table: AsyncTableClient, rows: Iterable[Keys]) -> None:
    """Delete each row (idempotent)."""
    for keys in rows:
        try:
            await table.delete_entity(*keys)
        except ResourceNotFoundError:
            pass


async def read_page(
    table: AsyncTableClient,
    convert: Callable[[dict[str, Any]], Item],
    *,
    limit: int,
    after: str | None,
    filters: Iterable[str] = (),
) -> Page[Item]:
    """Newest items first, at most `limit`; `after` is a previous page's continuation."""
    items: list[Item] = []
    last_key: str | None = None
    has_more = False
    entities = table.query_entities(_index_query(after, filters), results_per_page=min(limit + 1, 1000))
    async for entity in entities:
        if len(items) == limit:
            has_more = True
            break
        items.append(convert(dict(entity)))
        last_key = str(entity["RowKey"])
    return Page(items, last_key if has_more else None)


async def scan_index(
    table: AsyncTableClient, *, filters: Iterable[str] = (), select: list[str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every index row (newest first) matching `filters`."""
    async for entity in table.query_entities(_index_query(None, filters), select=select, results_per_page=1000):
        yield dict(entity)


# --- sync: activities and timers -----------------------------------------------------------------------


def create_sync(table: TableClient, keys: Keys, fields: Mapping[str, Any]) -> bool:
    """Create a row; False if it exists."""
    try:
        table.create_entity(row(keys, fields))
    except ResourceExistsError:
        return False
    return True


def put_sync(table: TableClient, keys: Keys, fields: Mapping[str, Any]) -> None:
    """Write a row whole, whether or not it exists."""
    table.upsert_entity(row(keys, fields), mode=UpdateMode.REPLACE)


def read_sync(table: TableClient, keys: Keys, select: list[str] | None = None) -> dict[str, Any] | None:
    """A row, or None."""
    try:
        return dict(table.get_entity(*keys, select=select))
    except ResourceNotFoundError:
        return None


def merge_sync(table: TableClient, rows: Iterable[Keys], fields: Mapping[str, Any]) -> None:
    """Merge `fields` into each row that still exists."""
    for keys in rows:
        try:
            table.update_entity(row(keys, fields), mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            pass


def delete_sync(table: TableClient, rows: Iterable[Keys]) -> None:
    """Delete each row (idempotent)."""
    for keys in rows:
        try:
            table.delete_entity(*keys)
        except ResourceNotFoundError:
            pass


def scan_index_sync(
    table: TableClient, *, filters: Iterable[str] = (), select: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every index row (newest first) matching `filters`."""
    for entity in table.query_entities(_index_query(None, filters), select=select):
        yield dict(entity)
