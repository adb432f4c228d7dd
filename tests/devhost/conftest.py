"""Fixtures for devhost's own tests: the sample app, served by a real devhost process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from devhost.durable.timings import FAST_TEST_TIMINGS
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost

SAMPLE_APP = Path(__file__).parent / "sample_app"
MANAGEMENT = "/runtime/webhooks/durabletask"


def sample_env(**extra: str) -> dict[str, str]:
    return {
        **FAST_TEST_TIMINGS,
        "SAMPLE_QUEUE": f"sample-{uuid.uuid4().hex[:12]}",
        "TICK_QUEUE": f"ticks-{uuid.uuid4().hex[:12]}",
        **extra,
    }


@pytest.fixture
def sample_factory(devhost_factory: Callable[..., DevHost]) -> Callable[..., DevHost]:
    """Like devhost_factory, serving the sample app instead of the product."""

    def start(env: dict[str, str] | None = None, args: list[str] | None = None, wait: bool = True) -> DevHost:
        return devhost_factory(
            env=sample_env(**(env or {})), args=["--app-dir", str(SAMPLE_APP), *(args or [])], wait=wait
        )

    return start


@pytest.fixture(scope="module")
def sample_host(azurite: Azurite) -> Iterator[DevHost]:
    host = DevHost(azurite.connection_string, env=sample_env(), args=["--app-dir", str(SAMPLE_APP)]).start()
    try:
        yield host
    finally:
        host.stop(timeout=20)


def start_orchestration(host: DevHost, name: str, payload: Any = None) -> str:
    response = (
        host.client.post(f"/api/start/{name}", json=payload)
        if payload is not None
        else host.client.post(f"/api/start/{name}")
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_status(host: DevHost, instance_id: str, timeout: float = 60.0, **params: str) -> dict[str, Any]:
    """Poll the management API until the instance stops answering 202."""
    deadline = time.monotonic() + timeout
    while True:
        response = host.client.get(f"{MANAGEMENT}/instances/{instance_id}", params=params)
        if response.status_code != 202:
            assert response.status_code == 200, response.text
            return dict(response.json())
        if time.monotonic() > deadline:
            raise TimeoutError(f"{instance_id} still running: {response.text}")
        time.sleep(0.05)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def queue_client(azurite: Azurite, name: str) -> QueueClient:
    return QueueClient.from_connection_string(azurite.connection_string, name)


def client_for(host: DevHost) -> httpx.Client:
    return host.client
