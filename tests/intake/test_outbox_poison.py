"""The outboxes' poison queues are emptied by the orphan sweep (maintenance.poison), none left unseen.

The host moves a message it failed `maxDequeueCount` times to `<queue>-poison`
(Azure/azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.Queues `QueueProcessor.
CopyMessageToPoisonQueueAsync`, which creates the poison queue on first use). An undeliverable job event
becomes a replayable webhook dead letter; anything else on that queue a poison dead letter; a poisoned
admission notice is dropped (the job's recheck covers it).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from activities.resources import ensure_local_resources
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from maintenance.poison import (
    ADMISSIONS_POISON_QUEUE,
    WEBHOOK_EVENTS_POISON_QUEUE,
    drain_poison_queues,
    report_unread_intake_poison,
)
from shared.settings import get_settings
from storage.names import DEADLETTERS_TABLE, INBOX_POISON_QUEUE
from tests.api.probes import queue_messages
from tests.conftest import DEFAULT_TEST_ENV
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import WEBHOOK_ENV


@pytest.fixture
def settings(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    get_settings.cache_clear()
    ensure_local_resources(get_settings())  # the timer's orphan sweep runs first and ensures them (storage_clients)
    yield
    get_settings.cache_clear()


def _poison(azurite: Azurite, queue_name: str, text: str, encoded: bool = True) -> None:
    """Put `text` on a poison queue: base64 as the host writes it, or as is (`encoded=False`)."""
    policy = TextBase64EncodePolicy() if encoded else None
    queue = QueueClient.from_connection_string(azurite.connection_string, queue_name, message_encode_policy=policy)
    with queue:
        try:
            queue.create_queue()  # as the host does when it moves its first poison message
        except ResourceExistsError:
            pass
        queue.send_message(text)


def _event(job_id: str, url: str) -> dict[str, object]:
    payload = {
        "type": "job.completed",
        "timestamp": "2026-12-01T00:00:00Z",
        "data": {"id": job_id, "status": "COMPLETED"},
    }
    return {
        "webhook_id": f"msg_{job_id}_completed",
        "job_id": job_id,
        "kind": "simulate",
        "type": "job.completed",
        "url": url,
        "payload": payload,
    }


def test_an_empty_sweep_finds_no_poison_queues(azurite: Azurite, settings: None) -> None:
    """No poison queue exists before the host's first poisoned message: the sweep finds nothing and fails not."""
    counts = drain_poison_queues(get_settings())
    assert counts == {WEBHOOK_EVENTS_POISON_QUEUE: 0, ADMISSIONS_POISON_QUEUE: 0}


def test_a_poisoned_job_event_becomes_a_webhook_dead_letter_that_replays(
    azurite: Azurite, settings: None, devhost_factory: object
) -> None:
    receiver = Receiver().start()
    try:
        host: DevHost = devhost_factory(env={**DEFAULT_TEST_ENV, **WEBHOOK_ENV})  # type: ignore[operator]
        job_id = uuid.uuid4().hex
        event = _event(job_id, receiver.url())
        _poison(azurite, WEBHOOK_EVENTS_POISON_QUEUE, json.dumps(event))
        _poison(azurite, WEBHOOK_EVENTS_POISON_QUEUE, "not an event " + job_id)
        _poison(azurite, ADMISSIONS_POISON_QUEUE, job_id)

        counts = drain_poison_queues(get_settings())

        assert counts == {WEBHOOK_EVENTS_POISON_QUEUE: 2, ADMISSIONS_POISON_QUEUE: 1}
        for queue_name in (WEBHOOK_EVENTS_POISON_QUEUE, ADMISSIONS_POISON_QUEUE):
            assert queue_messages(azurite.connection_string, queue_name) == 0
        letters = host.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
        [webhook] = [item for item in letters if item["job_id"] == job_id]
        assert webhook["source"] == "webhook" and webhook["error_type"] == "poison_message"
        [other] = [item for item in letters if (item["raw_message"] or "").endswith(job_id)]
        assert other["source"] == "poison"

        # Replayed like any undelivered event: the same webhook-id and body, signed.
        response = host.client.post(f"/api/dead-letters/{webhook['id']}/replay")
        assert response.status_code == 202, response.text
        [delivery] = receiver.wait_for(lambda got: len(got) >= 1, timeout=60)
        assert delivery.status == 200 and delivery.verified
        assert delivery.headers["webhook-id"] == event["webhook_id"]
        assert delivery.json == event["payload"]

        # A second sweep finds nothing: every message was recorded once and removed.
        assert drain_poison_queues(get_settings()) == {WEBHOOK_EVENTS_POISON_QUEUE: 0, ADMISSIONS_POISON_QUEUE: 0}
    finally:
        receiver.stop()


def test_messages_that_are_not_base64_text_are_drained_too(azurite: Azurite, settings: None) -> None:
    """Anyone with access to the account can put bytes there: they are recorded (or dropped) like any other,
    and do not stop the sweep at the message before the good ones behind them."""
    marker = uuid.uuid4().hex
    not_utf8 = base64.b64encode(b"\xff\xfe" + marker.encode()).decode()  # base64, but not of UTF-8 text
    _poison(azurite, WEBHOOK_EVENTS_POISON_QUEUE, f"not base64 {marker}", encoded=False)
    _poison(azurite, WEBHOOK_EVENTS_POISON_QUEUE, not_utf8, encoded=False)
    _poison(azurite, WEBHOOK_EVENTS_POISON_QUEUE, "readable " + marker)
    _poison(azurite, WEBHOOK_EVENTS_POISON_QUEUE, f"pas de base64 ni d'ASCII é {marker}", encoded=False)
    _poison(azurite, ADMISSIONS_POISON_QUEUE, f"not base64 {marker}", encoded=False)

    counts = drain_poison_queues(get_settings())

    assert counts == {WEBHOOK_EVENTS_POISON_QUEUE: 4, ADMISSIONS_POISON_QUEUE: 1}
    for queue_name in (WEBHOOK_EVENTS_POISON_QUEUE, ADMISSIONS_POISON_QUEUE):
        assert queue_messages(azurite.connection_string, queue_name) == 0
    table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(DEADLETTERS_TABLE)
    recorded = {str(row.get("raw_message")) for row in table.query_entities("PartitionKey eq 'record'")}
    # Each kept as the text it decodes to, or as stored when it is not base64 of UTF-8.
    assert {f"not base64 {marker}", not_utf8, f"readable {marker}", f"pas de base64 ni d'ASCII é {marker}"} <= recorded


def test_intake_messages_no_trigger_can_read_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not base64: the host moves it to jobs-inbox-poison at once and cannot read it there either
    (Azure/azure-sdk-for-net, WebJobs Storage Queues: the MessageDecodingFailed handler calls
    HandlePoisonMessageAsync, and a poison queue has no poison queue). Its listener holds it, so the sweep
    can only report it. A private Azurite: the session's hosts must not meet a message they can never remove."""
    private = Azurite.start()
    try:
        monkeypatch.setenv("AzureWebJobsStorage", private.connection_string)
        get_settings.cache_clear()
        assert report_unread_intake_poison(get_settings()) == 0  # no poison queue yet
        _poison(private, INBOX_POISON_QUEUE, '{"kind": "simulate"}', encoded=False)  # a producer forgot base64
        with caplog.at_level(logging.WARNING, logger="longrun"):
            assert report_unread_intake_poison(get_settings()) == 1
        assert [
            getattr(r, "messages", None) for r in caplog.records if r.getMessage() == "longrun.intake.poison_unread"
        ] == [1]
    finally:
        get_settings.cache_clear()
        private.stop()
