"""Queue intake: jobs-inbox takes the POST /api/jobs request; poison messages become dead letters."""

from __future__ import annotations

import json
import uuid

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from jobs.requests import job_id_for
from storage.names import INBOX_POISON_QUEUE, INBOX_QUEUE
from tests.api.probes import eventually, instances, queue_messages

VECTORS = {"kind": "vector-normalize", "input": {"vector_data": [[3.0, 4.0]]}}


def send(conn: str, text: str) -> None:
    """Send as a producer does: in Azure the queue exists before any producer (infra/bicep creates it), so
    the test creates it too rather than racing devhost's listener, which creates it when it starts."""
    queue = QueueClient.from_connection_string(conn, INBOX_QUEUE, message_encode_policy=TextBase64EncodePolicy())
    with queue:
        try:
            queue.create_queue()
        except ResourceExistsError:
            pass
        queue.send_message(text)


def test_a_message_starts_the_job_its_key_names_through_either_door(devhost, azurite):
    key = f"erp-{uuid.uuid4()}"
    job_id = job_id_for(key)
    send(azurite.connection_string, json.dumps({**VECTORS, "idempotency_key": key}))
    polled = eventually(lambda: (r := devhost.client.get(f"/api/jobs/{job_id}")).status_code != 404 and r)
    assert polled.json()["kind"] == "vector-normalize"
    final = devhost.wait_for_job(f"/api/jobs/{job_id}")
    assert final.json()["status"] == "COMPLETED"

    http = devhost.client.post("/api/jobs", json=VECTORS, headers={"Idempotency-Key": key})
    assert http.status_code == 202 and http.json()["id"] == job_id
    send(azurite.connection_string, json.dumps({**VECTORS, "idempotency_key": key}))  # a duplicate message
    eventually(lambda: queue_messages(azurite.connection_string, INBOX_QUEUE) == 0)
    assert [i["instanceId"] for i in instances(devhost, instanceIdPrefix=job_id)] == [job_id]


def test_a_message_without_a_key_is_keyed_by_its_message_id(devhost, azurite):
    before = {i["instanceId"] for i in instances(devhost)}
    send(azurite.connection_string, json.dumps({"kind": "simulate", "options": {"chunks": 1}}))
    started = eventually(lambda: {i["instanceId"] for i in instances(devhost)} - before)
    assert len(started) == 1
    job_id = started.pop()
    assert devhost.wait_for_job(f"/api/jobs/{job_id}").json()["status"] == "COMPLETED"


def test_poison_messages_are_dead_lettered_with_their_raw_text_and_removed(devhost, azurite):
    marker = uuid.uuid4().hex
    texts = [f"not json {marker}", json.dumps({"kind": "simulate", "options": {"chunks": 0}, "note": marker})]
    for text in texts:
        send(azurite.connection_string, text)

    def dead_letters():
        items = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
        found = [item for item in items if item["source"] == "poison" and marker in (item["raw_message"] or "")]
        return found if len(found) == 2 else None

    found = eventually(dead_letters, timeout=90, interval=0.5)
    assert {item["raw_message"] for item in found} == set(texts)
    for item in found:
        assert item["job_id"] is None and item["reason"] and item["error_type"] == "poison_message"
        one = devhost.client.get(item["links"]["self"])
        assert one.status_code == 200 and one.json()["raw_message"] == item["raw_message"]
        replay = devhost.client.post(item["links"]["replay"])
        assert replay.status_code == 409
    eventually(lambda: queue_messages(azurite.connection_string, INBOX_POISON_QUEUE) == 0)
    eventually(lambda: queue_messages(azurite.connection_string, INBOX_QUEUE) == 0)


def test_a_poison_message_says_which_check_failed_even_when_it_needs_storage(devhost, azurite):
    key = f"erp-{uuid.uuid4()}"
    job_id = job_id_for(key)
    send(azurite.connection_string, json.dumps({**VECTORS, "idempotency_key": key}))
    eventually(lambda: devhost.client.get(f"/api/jobs/{job_id}").status_code != 404)
    assert devhost.wait_for_job(f"/api/jobs/{job_id}").json()["status"] == "COMPLETED"
    marker = uuid.uuid4().hex
    reused = {"kind": "vector-normalize", "input": {"vector_data": [[1.0, 0.0]]}, "idempotency_key": key}
    missing = {"kind": "csv-report", "input_ref": f"uploads/{marker}", "options": {"group_by": "g"}}
    texts = {"reused": json.dumps({**reused, "deadline_seconds": 3600}), "missing": json.dumps(missing)}
    for text in texts.values():
        send(azurite.connection_string, text)

    def dead_letters():
        items = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
        found = {item["raw_message"]: item for item in items if item["raw_message"] in texts.values()}
        return found if len(found) == 2 else None

    found = eventually(dead_letters, timeout=90, interval=0.5)
    assert f"already names job {job_id}, created by a different request" in found[texts["reused"]]["reason"]
    assert "input_ref" in found[texts["missing"]]["reason"]
    assert [i["instanceId"] for i in instances(devhost, instanceIdPrefix=job_id)] == [job_id]  # nothing started
