"""Queue triggers as the storage queue extension runs them (issue #9, item 5).

Sources (Azure/azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.Queues and .Common):
`QueueListenerFactory.CreatePoisonQueueReference` gives a queue whose name ends in "-poison" no poison
queue; `QueueProcessor.CompleteProcessingMessageAsync` then leaves a failed message invisible ("to prevent
a fast infinite loop") and `BeginProcessingMessageAsync` stops invoking once DequeueCount exceeds
maxDequeueCount, so the message stays in the queue for ever. `QueueListener` receives with a 10-minute
visibility and renews it at half-time while the function runs (`CreateUpdateMessageVisibilityTimer`);
`StorageQueuesWebJobsBuilderExtensions`'s `MessageDecodingFailed` handler moves a message that is not
valid base64 to the poison queue without invoking the function. DEVHOST_QUEUE_LISTENER_VISIBILITY shrinks
the 10 minutes for these tests.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from devhost.testing.azurite import Azurite
from tests.devhost.conftest import queue_client, wait_until


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _exists(azurite: Azurite, name: str) -> bool:
    try:
        queue_client(azurite, name).get_queue_properties()
    except Exception:  # noqa: BLE001 - not there
        return False
    return True


def _reports(azurite: Azurite, queue: str) -> list[dict[str, Any]]:
    if not _exists(azurite, queue):
        return []
    return [json.loads(m.content) for m in queue_client(azurite, queue).peek_messages(max_messages=32)]


def _send(azurite: Azurite, queue: str, text: str, encode: bool = True) -> str:
    wait_until(lambda: _exists(azurite, queue), timeout=30)  # the listener creates its queue
    content = base64.b64encode(text.encode()).decode() if encode else text
    return str(queue_client(azurite, queue).send_message(content).id)


def test_a_trigger_on_a_poison_queue_never_poisons_and_never_lets_go(azurite: Azurite, sample_factory: Any) -> None:
    dead, reports = _unique("dead") + "-poison", _unique("reports")
    host = sample_factory(env={"DEAD_QUEUE": dead, "REPORT_QUEUE": reports, "DEVHOST_QUEUE_LISTENER_VISIBILITY": "2"})
    _send(azurite, dead, "cannot be handled")
    # maxDequeueCount is 3 in the sample's host.json: three invocations, each after the failed one's
    # invisibility ran out (not released at once with visibilityTimeout 00:00:00)...
    wait_until(lambda: len(_reports(azurite, reports)) >= 3, timeout=30)
    time.sleep(5)  # ... and no fourth, though the message keeps coming back
    seen = sorted(_reports(azurite, reports), key=lambda r: r["at"])
    assert [r["dequeue_count"] for r in seen] == [1, 2, 3]
    gaps = [b["at"] - a["at"] for a, b in zip(seen, seen[1:], strict=False)]
    # Each comes back 2 s after the one before it was received; the invocations themselves may begin a little
    # later or sooner after their receipt, so measured between invocations a margin is kept (released at
    # once, they would come 0.1 s apart).
    assert all(gap >= 1.0 for gap in gaps), gaps
    assert not _exists(azurite, f"{dead}-poison")

    def back_again() -> bool:
        visible = queue_client(azurite, dead).peek_messages(max_messages=1)
        return bool(visible) and int(visible[0].dequeue_count or 0) >= 4

    wait_until(back_again, timeout=15)  # still there, dequeued again and left alone
    assert "Executed 'Functions.dead_message' (Failed" in host.logs()


def test_a_message_that_is_not_base64_goes_to_poison_without_an_invocation(
    azurite: Azurite, sample_factory: Any
) -> None:
    slow, reports = _unique("slow"), _unique("reports")
    host = sample_factory(env={"SLOW_QUEUE": slow, "REPORT_QUEUE": reports})
    message_id = _send(azurite, slow, "%%% not base64 %%%", encode=False)
    wait_until(lambda: _exists(azurite, f"{slow}-poison"), timeout=30)
    wait_until(lambda: bool(queue_client(azurite, f"{slow}-poison").peek_messages()), timeout=30)
    poisoned = queue_client(azurite, f"{slow}-poison").peek_messages()
    assert [m.content for m in poisoned] == ["%%% not base64 %%%"]
    logs = host.logs()
    assert logs.count(f"Message decoding has failed! Check MessageEncoding settings. MessageId={message_id}") == 1
    assert f"failed on message {message_id}" not in logs
    assert _reports(azurite, reports) == []


def test_a_message_stays_hidden_while_a_long_function_runs(azurite: Azurite, sample_factory: Any) -> None:
    slow, reports = _unique("slow"), _unique("reports")
    # 4 s, renewed every 2 s: the 6 s function outlives one visibility, and a pause of a second on a busy
    # machine does not let the message show again between two renewals.
    host = sample_factory(env={"SLOW_QUEUE": slow, "REPORT_QUEUE": reports, "DEVHOST_QUEUE_LISTENER_VISIBILITY": "4"})
    _send(azurite, slow, "sleep 6")
    wait_until(lambda: "Executed 'Functions.slow_message' (Succeeded" in host.logs(), timeout=30)
    time.sleep(1)
    seen = _reports(azurite, reports)
    assert len(seen) == 1, seen  # renewed every 2 s: never visible, never delivered twice
    # Received with the listener's visibility (4 s here, 10 min in Azure), not longer.
    assert 0 < seen[0]["next_visible"] - seen[0]["inserted"] <= 10
    assert queue_client(azurite, slow).get_queue_properties().approximate_message_count == 0
