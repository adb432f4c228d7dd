"""The circuit breaker against real Table storage (Azurite): its states, and one probe among many contenders.

Many instances share a breaker row: concurrent writers are settled by the row's ETag, so when the open
period ends exactly one of many concurrent deliveries becomes the probe, and concurrent failures are
all counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from activities.resources import ensure_local_resources
from devhost.testing.azurite import Azurite
from shared.clock import utc_now
from shared.settings import Settings, get_settings
from storage import breakers


@pytest.fixture
def settings(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("WEBHOOK_BREAKER_FAILURES", "3")
    monkeypatch.setenv("WEBHOOK_BREAKER_OPEN_SECONDS", "60")
    get_settings.cache_clear()
    ensure_local_resources(get_settings())
    yield get_settings()
    get_settings.cache_clear()


def test_failures_in_a_row_open_it_an_answer_resets_the_count(settings: Settings) -> None:
    host, now = f"{uuid.uuid4().hex}.test:443", utc_now()
    assert breakers.acquire(settings, host, now).allowed
    assert breakers.record(settings, host, success=False, now=now) == "closed"
    assert breakers.record(settings, host, success=False, now=now) == "closed"
    assert breakers.record(settings, host, success=True, now=now) == "closed"  # a 2xx/4xx: the host is there
    for _ in range(2):
        assert breakers.record(settings, host, success=False, now=now) == "closed"
    assert breakers.record(settings, host, success=False, now=now) == "open"
    gate = breakers.acquire(settings, host, now + timedelta(seconds=10))
    assert not gate.allowed and gate.wait_seconds == pytest.approx(50.0)


def test_after_the_open_period_one_probe_decides(settings: Settings) -> None:
    host, now = f"{uuid.uuid4().hex}.test:443", utc_now()
    for _ in range(3):
        breakers.record(settings, host, success=False, now=now)
    later = now + timedelta(seconds=61)
    probe = breakers.acquire(settings, host, later)
    assert probe.allowed and probe.probe
    other = breakers.acquire(settings, host, later)
    assert not other.allowed and other.wait_seconds == pytest.approx(breakers.PROBE_LEASE_SECONDS)
    # The probe fails: open for another period.
    assert breakers.record(settings, host, success=False, now=later) == "open"
    assert not breakers.acquire(settings, host, later + timedelta(seconds=30)).allowed
    # The next probe succeeds: closed, everyone may call again.
    again = later + timedelta(seconds=61)
    assert breakers.acquire(settings, host, again).probe
    assert breakers.record(settings, host, success=True, now=again) == "closed"
    assert breakers.acquire(settings, host, again).allowed


def test_a_probe_that_never_reports_back_is_taken_over_after_its_lease(settings: Settings) -> None:
    host, now = f"{uuid.uuid4().hex}.test:443", utc_now()
    for _ in range(3):
        breakers.record(settings, host, success=False, now=now)
    later = now + timedelta(seconds=61)
    assert breakers.acquire(settings, host, later).probe  # this prober crashes
    assert breakers.acquire(settings, host, later + timedelta(seconds=breakers.PROBE_LEASE_SECONDS + 1)).probe


def test_many_instances_at_once_get_exactly_one_probe_and_count_every_failure(settings: Settings) -> None:
    host, now = f"{uuid.uuid4().hex}.test:443", utc_now()
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: breakers.record(settings, host, success=False, now=now), range(8)))
    assert states.count("open") >= 1
    table = breakers._table(settings)
    assert int(table.get_entity(breakers.PARTITION, host)["failures"]) == 8, "a lost update would lose a failure"
    later = now + timedelta(seconds=61)
    with ThreadPoolExecutor(8) as pool:
        gates = list(pool.map(lambda _: breakers.acquire(settings, host, later), range(8)))
    assert sum(gate.probe for gate in gates) == 1
    assert sum(gate.allowed for gate in gates) == 1
