"""A callback is checked at submit, through every door: a URL the app may not call is a 422 naming the field,
and nothing is stored or started (the same Idempotency-Key then names a new job). Production-like settings:
https only, no allowlist."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.api.probes import eventually
from tests.conftest import DEFAULT_TEST_ENV
from tests.intake.test_inbox import send

VECTORS = {"kind": "vector-normalize", "input": {"vector_data": [[3.0, 4.0]]}}


@pytest.fixture(scope="module")
def devhost(azurite: Azurite) -> Iterator[DevHost]:
    """Production's callback rules, whatever the local settings say: https only, no allowlist."""
    env = {**DEFAULT_TEST_ENV, "WEBHOOK_ALLOW_HTTP": "false", "WEBHOOK_ALLOWED_HOSTS": ""}
    host = DevHost(azurite.connection_string, env=env).start()
    try:
        yield host
    finally:
        host.stop(timeout=20)


REFUSED = [
    ("http://hooks.example.com/x", "https"),
    ("https://127.0.0.1/x", "loopback"),
    ("https://localhost:8443/x", "loopback"),
    ("https://[::1]/x", "loopback"),
    ("https://[::ffff:127.0.0.1]/x", "loopback"),
    ("https://10.0.0.5/x", "private"),
    ("https://192.168.0.10/x", "private"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://[fd00:ec2::254]/x", "metadata"),
    ("https://169.254.10.10/x", "link-local"),
    ("https://224.0.0.251/x", "multicast"),
    ("https://0.0.0.0/x", "unspecified"),
    ("notaurl", "https"),
    ("https://hooks.example.com/a b", "spaces"),
]


def post(devhost: DevHost, body: dict[str, Any], key: str) -> Any:
    return devhost.client.post("/api/jobs", json=body, headers={"Idempotency-Key": key})


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_a_callback_the_app_may_not_call_is_a_422_and_stores_nothing(devhost: DevHost, url: str, why: str) -> None:
    key = f"cb-{uuid.uuid4()}"
    refused = post(devhost, {**VECTORS, "callback": {"url": url}}, key)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    [error] = problem["errors"]
    assert error["field"] == "callback.url" and why in error["message"], error
    assert url not in refused.text, "errors never echo the submitted value"
    # Nothing was recorded under the key: a different request with it is a new job, not a 409.
    assert post(devhost, VECTORS, key).status_code == 202


@pytest.mark.parametrize(
    ("callback", "field"),
    [
        ({"url": "https://hooks.example.com/x", "events": ["finished"]}, "callback.events"),
        ({"url": "https://hooks.example.com/x", "events": []}, "callback.events"),
        ({"url": "https://hooks.example.com/x", "secret": "x"}, "callback.secret"),
        ({"events": ["completed"]}, "callback.url"),
        ({"url": 5}, "callback.url"),
    ],
)
def test_malformed_callbacks_are_422_naming_the_field(devhost: DevHost, callback: Any, field: str) -> None:
    response = post(devhost, {**VECTORS, "callback": callback}, f"cb-{uuid.uuid4()}")
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


def test_a_raw_submit_carries_its_callback_in_the_query(devhost: DevHost) -> None:
    params = {"kind": "csv-report", "group_by": "g", "metrics": "v", "callback_url": "https://127.0.0.1/hook"}
    response = devhost.client.post(
        "/api/jobs", params=params, content=b"g,v\na,1\n", headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["callback_url"]
    params["callback_events"] = "completed,nope"
    response = devhost.client.post(
        "/api/jobs", params=params, content=b"g,v\na,1\n", headers={"Content-Type": "text/csv"}
    )
    assert [e["field"] for e in response.json()["errors"]] == ["callback_events"]
    # callback_* are never taken for the kind's options.
    del params["callback_url"], params["callback_events"]
    assert (
        devhost.client.post(
            "/api/jobs", params=params, content=b"g,v\na,1\n", headers={"Content-Type": "text/csv"}
        ).status_code
        == 202
    )


def test_a_queued_submission_with_a_refused_callback_is_dead_lettered_saying_why(
    devhost: DevHost, azurite: Any
) -> None:
    marker = uuid.uuid4().hex
    text = json.dumps({**VECTORS, "callback": {"url": "https://169.254.169.254/"}, "idempotency_key": marker})
    send(azurite.connection_string, text)

    def dead_letter() -> Any:
        items = devhost.client.get("/api/dead-letters", params={"limit": 100}).json()["items"]
        return next((item for item in items if item["raw_message"] == text), None)

    record = eventually(dead_letter, timeout=90, interval=0.5)
    assert "callback.url" in record["reason"] and "metadata" in record["reason"]
