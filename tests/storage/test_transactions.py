"""storage.transactions against Azurite: the hand-framed `$batch` must store and answer exactly what
`TableClient.submit_transaction` does (same rows, same ETags, same failing index), and leave to the SDK
what it cannot read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from storage.transactions import transact


@pytest.fixture()
def table(azurite) -> TableClient:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return service.create_table_if_not_exists(f"tx{uuid.uuid4().hex[:12]}")


def _row(partition: str, key: str) -> dict[str, object]:
    # Every property type the ledger and queue rows use, and some they may: the serialization is the SDK's.
    return {
        "PartitionKey": partition, "RowKey": key, "count": 7, "ratio": 0.25, "flag": True,
        "text": "déjà vu / 'quoted' & more", "json": '{"normal":3}', "when": datetime(2026, 12, 2, tzinfo=UTC),
    }  # fmt: skip


IF_MATCH = MatchConditions.IfNotModified


def _replace(entity: dict[str, object], etag: str) -> tuple[object, ...]:
    return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": IF_MATCH})


def _ledger(etag: str) -> tuple[object, ...]:
    return _replace({"PartitionKey": "p", "RowKey": "ledger", "n": 1}, etag)


def test_an_applied_transaction_stores_what_the_sdk_stores_and_returns_the_etags_a_read_sees(table):
    table.create_entity({"PartitionKey": "p", "RowKey": "ledger", "n": 0})
    table.create_entity({"PartitionKey": "p", "RowKey": "gone", "n": 0})
    etag = table.get_entity("p", "ledger").metadata["etag"]
    gone = table.get_entity("p", "gone").metadata["etag"]
    outcome = transact(
        table,
        [
            _replace({"PartitionKey": "p", "RowKey": "ledger", "n": 1}, etag),
            ("create", _row("p", "mine")),
            ("upsert", {"PartitionKey": "p", "RowKey": "merged", "n": 2}, {"mode": UpdateMode.MERGE}),
            ("delete", {"PartitionKey": "p", "RowKey": "gone"}, {"etag": gone, "match_condition": IF_MATCH}),
        ],
    )  # fmt: skip
    assert outcome.failed is None
    assert outcome.etags[0] == table.get_entity("p", "ledger").metadata["etag"] != etag
    assert outcome.etags[1] == table.get_entity("p", "mine").metadata["etag"]
    assert table.get_entity("p", "ledger")["n"] == 1 and table.get_entity("p", "merged")["n"] == 2
    assert [e["RowKey"] for e in table.query_entities("RowKey eq 'gone'")] == []

    table.submit_transaction([("create", _row("p", "theirs"))])
    mine, theirs = dict(table.get_entity("p", "mine")), dict(table.get_entity("p", "theirs"))
    assert {k: v for k, v in mine.items() if k != "RowKey"} == {k: v for k, v in theirs.items() if k != "RowKey"}
    assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in theirs.items()}


@pytest.mark.parametrize("case", ["stale ledger", "row exists", "row vanished"])
def test_a_refused_transaction_names_the_operation_as_the_sdk_does_and_changes_nothing(table, case):
    table.create_entity({"PartitionKey": "p", "RowKey": "ledger", "n": 0})
    table.create_entity({"PartitionKey": "p", "RowKey": "taken", "n": 0})
    etag = table.get_entity("p", "ledger").metadata["etag"]
    stale = "W/\"datetime'2020-01-01T00%3A00%3A00.0000000Z'\""
    never = {"PartitionKey": "p", "RowKey": "never"}
    operations = {
        "stale ledger": [_ledger(stale), ("create", _row("p", "a"))],
        "row exists": [_ledger(etag), ("create", _row("p", "b")), ("create", {"PartitionKey": "p", "RowKey": "taken"})],
        "row vanished": [_ledger(etag), ("delete", never, {"etag": etag, "match_condition": IF_MATCH})],
    }[case]
    with pytest.raises(TableTransactionError) as sdk:
        table.submit_transaction(operations)
    outcome = transact(table, operations)
    assert outcome.failed == sdk.value.index == {"stale ledger": 0, "row exists": 2, "row vanished": 1}[case]
    assert outcome.status == sdk.value.status_code
    assert table.get_entity("p", "ledger").metadata["etag"] == etag  # nothing written
    assert sorted(e["RowKey"] for e in table.list_entities()) == ["ledger", "taken"]


def test_a_refusal_it_cannot_read_is_raised_by_the_sdk(table):
    # Two operations on one row: the service refuses the whole batch (400), not a condition.
    operations = [("create", _row("p", "twice")), ("upsert", _row("p", "twice"))]
    with pytest.raises(HttpResponseError) as refused:
        transact(table, operations)
    assert refused.value.status_code == 400
    assert list(table.list_entities()) == []
