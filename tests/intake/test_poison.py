"""The poison trigger never fails for good: a poison queue has no poison queue, so a message it keeps
failing on would come back forever (#9: the app's side of the strict host)."""

from __future__ import annotations

import uuid

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from storage.names import DEADLETTERS_TABLE, INBOX_POISON_QUEUE
from tests.api.probes import eventually, queue_messages


def test_a_poison_message_whose_dead_letter_json_is_too_big_for_a_queue_is_still_dead_lettered(devhost, azurite):
    """10,000 emoji are 40 kB of UTF-8 (a valid queue message) but 120 kB of ASCII JSON: announcing the
    dead letter with its whole raw text failed every time (RequestBodyTooLarge), so the trigger failed
    forever. The announcement now carries a shortened raw text; the table keeps the rest."""
    marker = uuid.uuid4().hex
    text = marker + "\U0001f600" * 10_000
    queue = QueueClient.from_connection_string(
        azurite.connection_string, INBOX_POISON_QUEUE, message_encode_policy=TextBase64EncodePolicy()
    )
    with queue:
        try:
            queue.create_queue()  # as the host does when it moves its first poison message (run alone, none exists)
        except ResourceExistsError:
            pass
        queue.send_message(text)
    table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(DEADLETTERS_TABLE)

    def announced() -> bool:
        try:
            rows = list(table.query_entities("PartitionKey eq 'record' and source eq 'poison'"))
        except ResourceNotFoundError:
            return False  # the trigger has not run yet: it creates the table locally
        return any(str(row.get("raw_message", "")).startswith(marker) and row.get("queued") is True for row in rows)

    eventually(announced, timeout=60, interval=0.5)
    eventually(lambda: queue_messages(azurite.connection_string, INBOX_POISON_QUEUE) == 0, timeout=30)
    items = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
    [item] = [item for item in items if (item["raw_message"] or "").startswith(marker)]
    assert item["raw_message"] == text[: len(item["raw_message"])] and item["error_type"] == "poison_message"
