"""devhost's own storage traffic per job (issue #15): the cuts keep what is written, and what is read.

- a history batch built by hand (`TaskHubStore._replace_all`) stores exactly what the SDK's
  `submit_transaction` stores, and a batch the service refuses raises the SDK's own error;
- an instance this host starts is not read back before its first episode (no history query, one row read:
  the existence check `DurableClient.StartNewAsync` makes too), and still runs and completes;
- a finished activity does not poll an empty work-item queue (the poller backs off as DTFx's does), yet a
  work item that waited for a slot runs as soon as one frees.
Counted at the wire with the counting proxy of `bench/storage_meter.py`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from azure.data.tables import TableTransactionError, UpdateMode

from bench.storage_meter import Meter, MeteredStorage, metered_devhost
from devhost.durable.store import TaskHubStore
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import MANAGEMENT, SAMPLE_APP, sample_env, start_orchestration


def _rows(pk: str) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    events = [
        {
            "PartitionKey": pk,
            "RowKey": f"{i:016X}",
            "ExecutionId": "e1",
            "EventType": "TaskScheduled",
            "_Timestamp": now,
            "EventId": i,
            "Ratio": 1.5,
            "IsPlayed": True,
            "Input": "[\"caf\\u00e9 \u2603 'quoted'\"]",
        }
        for i in range(3)
    ]
    return [*events, {"PartitionKey": pk, "RowKey": "sentinel", "EventCount": 3, "CheckpointCompletedTimestamp": now}]


async def _compare_batches(azurite: Azurite) -> None:
    store = TaskHubStore(azurite.connection_string, "t" + uuid.uuid4().hex[:12], 4)
    try:
        await store.create_if_missing()
        mine, theirs = "it's^0mine", "it's^0theirs"  # a quote and a sanitized slash in the key
        await store._replace_all(store.history, _rows(mine))
        await store.history.submit_transaction([("upsert", r, {"mode": UpdateMode.REPLACE}) for r in _rows(theirs)])

        async def read(pk: str) -> list[dict[str, object]]:
            escaped = pk.replace("'", "''")
            rows = [dict(e) async for e in store.history.query_entities(f"PartitionKey eq '{escaped}'")]
            for row in rows:
                row.pop("PartitionKey")
                row.pop("_Timestamp", None)
                row.pop("CheckpointCompletedTimestamp", None)
            return sorted(rows, key=lambda r: str(r["RowKey"]))

        assert await read(mine) == await read(theirs)
        assert len(await read(mine)) == 4
        # A second write replaces the rows (an upsert batch, as the SDK's).
        changed = _rows(mine)
        changed[0]["Input"] = "replaced"
        del changed[0]["Ratio"]
        await store._replace_all(store.history, changed)
        first = (await read(mine))[0]
        assert first["Input"] == "replaced" and "Ratio" not in first
        # Refused by the service (a '/' in a key): the SDK's error, and nothing was written.
        with pytest.raises(TableTransactionError):
            await store._replace_all(store.history, _rows("refused/key"))
        assert await read("refused/key") == []
        with pytest.raises(ValueError, match="one partition"):
            await store._replace_all(store.history, [*_rows("a")[:1], *_rows("b")[:1]])
    finally:
        await store.close()


def test_a_hand_built_history_batch_stores_what_the_sdk_stores(azurite: Azurite) -> None:
    """The $batch request of azure-data-tables' `TableClient.submit_transaction` (aio/_base_client_async.py,
    `_batch_send`), sent through the same signed pipeline; the rows read back are the same."""
    asyncio.run(_compare_batches(azurite))


class WorkItemMeter(Meter):
    """The counting proxy's meter, also counting receives from the task hub's work-item queue alone."""

    work_item_receives = 0

    def record(self, service: str, method: str, target: str, body: bytes, size: int) -> None:
        """Count one request."""
        super().record(service, method, target, body, size)
        path = urlsplit(target).path
        if service == "queue" and method == "GET" and path.endswith("-workitems/messages"):
            with self.lock:
                self.work_item_receives += 1


@pytest.fixture
def metered_host(azurite: Azurite) -> Iterator[tuple[DevHost, MeteredStorage]]:
    env = sample_env(DEVHOST_PARTITION_LEASE="0")
    with metered_devhost(azurite, env=env, args=["--app-dir", str(SAMPLE_APP)], meter=WorkItemMeter) as metered:
        yield metered


def _wait_completed(host: DevHost, instance_id: str, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = host.client.get(f"{MANAGEMENT}/instances/{instance_id}")
        if response.status_code == 200:
            body: dict[str, object] = response.json()
            return body
        time.sleep(0.05)
    raise TimeoutError(instance_id)


def _durable(counts: Counter[tuple[str, str, str]]) -> Counter[str]:
    return Counter({f"{service}/{op}": n for (service, owner, op), n in counts.items() if owner == "durable"})


def test_a_started_instance_is_not_read_back_and_completions_do_not_poll_an_empty_queue(
    metered_host: tuple[DevHost, MeteredStorage],
) -> None:
    """A sequence of 60 no-op activities started here completes with no history query at all, and the
    work-item queue is received from on the poller's backoff (at most once a second here, the sample's
    `maxQueuePollingInterval`), not once per completion as before. The fan-out then runs work items that
    waited in the queue for a slot (16 slots for 40 items)."""
    host, storage = metered_host
    meter = storage.meter
    assert isinstance(meter, WorkItemMeter)
    _wait_completed(host, start_orchestration(host, "sequence_noop", 2))  # warm the workers
    before, receives_before, started = meter.snapshot(), meter.work_item_receives, time.monotonic()
    instance_id = start_orchestration(host, "sequence_noop", 60)
    status = _wait_completed(host, instance_id, timeout=120)
    elapsed = time.monotonic() - started
    during = _durable(meter.snapshot() - before)
    receives = meter.work_item_receives - receives_before
    assert status["runtimeStatus"] == "Completed" and status["output"] == 60, status
    assert during["table/QueryEntities"] == 0, during
    assert during["queue/PutMessage"] >= 61, during  # the start and 60 work items: each still goes to the queue
    # Backoff from 50 ms doubling to 1 s after the warm-up's last activity, then once a second.
    allowed = 6 + elapsed * 1.2
    assert allowed < 60, f"too slow to tell: {elapsed:.1f} s"
    assert receives <= allowed, (receives, elapsed)

    fan_out = start_orchestration(host, "fan_out", 40)
    result = _wait_completed(host, fan_out, timeout=120)
    assert result["runtimeStatus"] == "Completed" and result["output"] == sum(range(40)), result
