"""jobs.group_commit on its own: threads of one process share rounds, each caller gets its own outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pytest

from jobs.group_commit import GroupCommit, SingleFlight
from tests.api.probes import eventually


def test_items_submitted_while_a_round_is_in_flight_ride_in_the_next_one_and_each_gets_its_own_outcome():
    rounds: list[list[int]] = []
    in_flight = threading.Lock()

    def apply(items: list[int]) -> list[int]:
        assert in_flight.acquire(blocking=False), "two rounds at once"
        try:
            rounds.append(list(items))
            time.sleep(0.02)  # a storage round trip
            return [item * 10 for item in items]
        finally:
            in_flight.release()

    group: GroupCommit[int, int] = GroupCommit(apply, max_items=5, key=str)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: group.submit([n])[0], range(64)))
    assert answers == [n * 10 for n in range(64)]
    applied = [item for items in rounds for item in items]
    assert sorted(applied) == list(range(64))  # every item applied exactly once
    assert all(len(items) <= 5 for items in rounds)
    assert len(rounds) < 40, f"{len(rounds)} rounds for 64 items: nothing was combined"
    assert group.rounds == len(rounds)


def test_a_round_never_carries_one_key_twice():
    seen: list[list[str]] = []

    def apply(items: list[str]) -> list[str]:
        seen.append(list(items))
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(apply, max_items=10, key=lambda item: item)
    assert group.submit(["a", "a", "b"]) == ["A", "A", "B"]
    assert seen == [["a", "b"], ["a"]]  # one transaction must not touch a row twice


def test_a_failed_round_of_patient_items_fails_only_the_callers_it_carried():
    gate = threading.Event()

    def apply(items: list[str]) -> list[str]:
        gate.wait(5)
        if "bad" in items:
            raise RuntimeError("storage said no")
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(apply, max_items=1, key=lambda item: item)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.submit, ["x"])
        time.sleep(0.1)  # "x" is in flight: the next two wait, each for a round of its own
        bad = pool.submit(group.submit, ["bad"])
        time.sleep(0.05)
        other = pool.submit(group.submit, ["y"])
        time.sleep(0.1)
        gate.set()
        assert first.result(5) == ["X"]
        with pytest.raises(RuntimeError):
            bad.result(5)
        assert other.result(5) == ["Y"]


def test_an_outage_fails_every_waiting_urgent_caller_at_once():
    calls = 0
    gate = threading.Event()

    def apply(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        gate.wait(5)
        raise ConnectionError("storage is down")

    group: GroupCommit[int, int] = GroupCommit(apply, max_items=2, key=str, urgent=lambda _: True)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(group.submit, [n]) for n in range(8)]
        time.sleep(0.2)
        gate.set()
        for future in futures:
            assert isinstance(future.exception(5), ConnectionError)
    assert calls == 1  # the waiting callers did not each try again behind the outage


def _patient_and_urgent_behind_a_round(
    fails: Callable[[list[str]], bool],
) -> tuple[list[list[str]], Future[list[str]], Future[list[str]]]:
    """A patient item ("p1") and an urgent one ("u1") arrive while a round is in flight (shorter than the
    patience); `fails` says which rounds storage fails. The rounds applied, and the two callers' futures."""
    rounds: list[list[str]] = []
    gate = threading.Event()

    def apply(items: list[str]) -> list[str]:
        rounds.append(list(items))
        if items == ["first"]:
            gate.wait(5)
        if fails(items):
            raise ConnectionError("storage did not answer in time")
        return [item.upper() for item in items]

    # A patience far above the time the round is held: on a busy machine the gate may open late, and "u1" must
    # not go beside the round then (the next test covers that case on purpose).
    group: GroupCommit[str, str] = GroupCommit(
        apply, max_items=10, key=str, urgent=lambda item: item.startswith("u"), patience=5.0
    )
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.submit, ["first"])
        eventually(lambda: rounds == [["first"]], timeout=5, interval=0.005)
        patient = pool.submit(group.submit, ["p1"])
        # "p1" is queued before "u1" arrives, so the next round's order is known.
        eventually(lambda: len(group._waiting) == 1, timeout=5, interval=0.005)
        urgent = pool.submit(group.submit, ["u1"])
        eventually(lambda: len(group._waiting) == 2, timeout=5, interval=0.005)
        gate.set()
        assert first.result(5) == ["FIRST"]
        wait([patient, urgent], timeout=5)
    return rounds, patient, urgent


def test_urgent_and_patient_items_ride_in_one_round():
    """A request's join and an activity's leave of one process share a transaction instead of colliding."""
    rounds, patient, urgent = _patient_and_urgent_behind_a_round(lambda _items: False)
    assert (patient.result(0), urgent.result(0)) == (["P1"], ["U1"])
    assert rounds == [["first"], ["p1", "u1"]]


def test_a_failed_urgent_round_fails_the_urgent_items_and_puts_the_patient_ones_back_first():
    """The fail-fast client failed a round that carried an activity's change: the request answers 503 at once,
    and the activity's change goes again, with the patient client, in a round of patient changes only."""
    rounds, patient, urgent = _patient_and_urgent_behind_a_round(
        lambda items: any(item.startswith("u") for item in items)
    )
    assert isinstance(urgent.exception(0), ConnectionError)
    assert patient.result(0) == ["P1"]
    assert rounds == [["first"], ["p1", "u1"], ["p1"]]


def test_an_urgent_item_goes_beside_a_patient_round_in_flight_longer_than_its_patience():
    """An activity's round may be riding out a storage outage for a minute: a request does not wait for it."""
    gate = threading.Event()
    in_flight = 0
    most = 0
    lock = threading.Lock()

    def apply(items: list[str]) -> list[str]:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            if items == ["p1"]:
                gate.wait(5)  # the patient client retrying
            return [item.upper() for item in items]
        finally:
            with lock:
                in_flight -= 1

    group: GroupCommit[str, str] = GroupCommit(
        apply, max_items=10, key=str, urgent=lambda item: item.startswith("u"), patience=0.2
    )
    with ThreadPoolExecutor(4) as pool:
        patient = pool.submit(group.submit, ["p1"])
        time.sleep(0.05)
        began = time.monotonic()
        assert pool.submit(group.submit, ["u1"]).result(5) == ["U1"]
        waited = time.monotonic() - began
        assert not patient.done()
        gate.set()
        assert patient.result(5) == ["P1"]
    assert 0.1 <= waited < 1.0, waited  # waited out the patience (0.2 s, less the 0.05 s already in flight)
    assert most == 2


def test_callers_arriving_while_a_read_is_in_flight_share_it():
    gate = threading.Event()
    answers = iter(range(100))

    def read() -> int:
        gate.wait(5)
        return next(answers)

    shared: SingleFlight[int] = SingleFlight(read)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(shared.get) for _ in range(8)]
        time.sleep(0.2)
        gate.set()
        assert [future.result(5) for future in futures] == [0] * 8
    assert shared.reads == 1
    assert shared.get() == 1  # a caller after the read reads afresh
