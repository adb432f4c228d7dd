"""Queue triggers (base64, dequeue count, poison queue) and NCRONTAB timer triggers."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.ncrontab import CronSchedule, ScheduleError
from devhost.testing.azurite import Azurite
from devhost.testing.harness import DevHost
from tests.devhost.conftest import queue_client, wait_until


def send(azurite: Azurite, queue: str, text: str, encode: bool = True) -> None:
    client = queue_client(azurite, queue)
    try:
        client.create_queue()
    except Exception:  # noqa: BLE001 - it may exist already
        pass
    client.send_message(base64.b64encode(text.encode()).decode() if encode else text)


def depth(azurite: Azurite, queue: str) -> int:
    client = queue_client(azurite, queue)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_good_messages_are_consumed_and_bad_ones_go_to_poison(azurite: Azurite, sample_host: DevHost) -> None:
    queue = sample_host.env["SAMPLE_QUEUE"]
    send(azurite, queue, "hello")
    send(azurite, queue, "fail please")
    send(azurite, queue, "%%% not base64 %%%", encode=False)
    wait_until(lambda: depth(azurite, f"{queue}-poison") == 2, timeout=30)
    wait_until(lambda: depth(azurite, queue) == 0, timeout=10)
    poisoned = [m.content for m in queue_client(azurite, f"{queue}-poison").peek_messages(max_messages=10)]
    assert sorted(poisoned) == sorted([base64.b64encode(b"fail please").decode(), "%%% not base64 %%%"])
    logs = sample_host.logs()
    assert "DequeueCount=3" in logs  # tried maxDequeueCount (3) times before poisoning
    assert "has reached MaxDequeueCount of 3" in logs


def test_timer_trigger_follows_its_schedule(azurite: Azurite, sample_factory: Any) -> None:
    host = sample_factory(env={"TICK_SCHEDULE": "*/1 * * * * *"})
    wait_until(lambda: depth(azurite, host.env["TICK_QUEUE"]) >= 2, timeout=15)


def test_no_timers_flag_disables_timers(azurite: Azurite, sample_factory: Any) -> None:
    host = sample_factory(env={"TICK_SCHEDULE": "*/1 * * * * *"}, args=["--no-timers"])
    time.sleep(2.5)
    assert depth(azurite, host.env["TICK_QUEUE"]) == 0


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 1, 1, 10, 3, 7, tzinfo=UTC), datetime(2026, 1, 1, 10, 5, tzinfo=UTC)),
        ("0 30 9 * * 1-5", datetime(2026, 11, 27, 10, 0, tzinfo=UTC), datetime(2026, 11, 30, 9, 30, tzinfo=UTC)),
        ("15 0 0 1 Jan *", datetime(2026, 6, 1, tzinfo=UTC), datetime(2027, 1, 1, 0, 0, 15, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 1, 1, 0, 0, 59, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)),
        ("0 0 0 29 2 *", datetime(2026, 3, 1, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_ncrontab_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(after) == expected


@pytest.mark.parametrize("expression", ["* * * * *", "61 * * * * *", "0 0 0 * * funday", "*/0 * * * * *"])
def test_ncrontab_rejects_bad_expressions(expression: str) -> None:
    with pytest.raises(ScheduleError):
        CronSchedule.parse(expression)
