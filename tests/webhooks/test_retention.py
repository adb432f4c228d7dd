"""Retention forgets a job's terminal webhook delivery with the job.

A module of its own: devhosts on one Azurite share the `webhook-events` queue, so another module's host
could start this host's delivery in its own task hub.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.orchestrators.helpers import WEBHOOKS
from tests.orchestrators.test_retention import _backdate
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import WEBHOOK_ENV, submit

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


def test_retention_purges_a_jobs_terminal_delivery_with_the_job(devhost_factory: Any, receiver: Receiver) -> None:
    retained = devhost_factory(env={**WEBHOOK_ENV, "RETENTION_SCHEDULE": "*/1 * * * * *"})
    job_id = submit(retained, receiver)
    receiver.wait_for(lambda got: len(got) >= 1)
    instance = f"{WEBHOOKS}/instances/webhook-msg_{job_id}_completed"
    deadline = time.monotonic() + 30
    while (answer := retained.client.get(instance)).status_code != 200 or answer.json()["runtimeStatus"] != "Completed":
        assert time.monotonic() < deadline, "the delivery never completed"
        time.sleep(0.2)
    _backdate(retained, job_id, days=8)
    while retained.client.get(instance).status_code != 404:
        assert time.monotonic() < deadline, "the delivery's history outlived its job"
        time.sleep(0.2)
