"""The storage meter in front of a real Azurite: requests reach Azurite and come back unchanged through the
shared loopback proxy (bench/loopback_proxy.py), and each is counted once, by service, owner and operation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from bench.storage_meter import MeteredStorage
from devhost.azurite import development_connection_string
from devhost.testing.azurite import Azurite, free_port

HUB = "MeterHub"


@pytest.fixture
def metered() -> Iterator[tuple[MeteredStorage, str]]:
    # An Azurite of its own: the session's holds the app's queues and containers already (CreateQueue would
    # answer 409 there, and count differently).
    azurite = Azurite.start()
    upstream = (azurite.blob_port, azurite.queue_port, azurite.table_port)
    listen = (free_port(), free_port(), free_port())
    storage = MeteredStorage(upstream, listen, HUB).start()
    try:
        yield storage, development_connection_string(listen)
    finally:
        storage.stop()
        azurite.stop()


def test_each_request_is_forwarded_and_counted_once_by_owner(metered: tuple[MeteredStorage, str]) -> None:
    storage, connection = metered
    with BlobServiceClient.from_connection_string(connection) as blobs:
        container = blobs.create_container("meter-payloads")
        container.upload_blob("a.txt", b"x" * 200_000)  # one PutBlob, whatever its size
        assert container.download_blob("a.txt").readall() == b"x" * 200_000  # the answer came back whole
        assert [b.name for b in container.list_blobs()] == ["a.txt"]
        for name in ("b.txt", "c.txt"):
            container.upload_blob(name, b"y")
        assert [answer.status_code for answer in container.delete_blobs("b.txt", "c.txt")] == [202, 202]
        assert [b.name for b in container.list_blobs()] == ["a.txt"]
    with QueueServiceClient.from_connection_string(connection) as queues:
        inbox = queues.create_queue("jobs-inbox")
        inbox.send_message("hello")
        received = inbox.receive_message()
        assert received is not None and received.content == "hello"
    with TableServiceClient.from_connection_string(connection) as tables:
        history = tables.create_table(f"{HUB}History")
        history.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(3)])
        assert len(list(history.query_entities("PartitionKey eq 'p'"))) == 3

    counts = storage.meter.snapshot()
    assert counts[("blob", "app", "CreateContainer")] == 1
    assert counts[("blob", "app", "PutBlob")] == 3
    assert counts[("blob", "app", "GetBlob")] == 1
    assert counts[("blob", "app", "ListBlobs")] == 2
    assert counts[("blob", "app", "BlobBatch")] == 1  # billed once, and each Delete Blob in it once
    assert counts[("blob", "app", "DeleteBlob")] == 2
    assert counts[("queue", "host", "CreateQueue")] == 1  # jobs-inbox: the host's trigger queue
    assert counts[("queue", "host", "PutMessage")] == 1
    assert counts[("queue", "host", "GetMessages")] == 1
    assert counts[("table", "durable", "EntityGroupTransaction")] == 1  # a batch is one billed transaction
    assert counts[("table", "durable", "QueryEntities")] == 1
    assert storage.meter.batched_changes["durable"] == 3
    assert storage.meter.request_bytes["app"] > 200_000
