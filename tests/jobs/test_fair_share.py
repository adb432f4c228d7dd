"""The admission decision alone (jobs.admission.choose): weighted fair sharing between lanes, FIFO, client caps."""

from __future__ import annotations

from jobs.admission import Limits, choose
from storage.admission import Ledger, QueueEntry, lane_of_key

WEIGHTS = {"high": 6, "normal": 3, "low": 1}


def limits(per_client: int = 1000) -> Limits:
    return Limits(max_running=10**6, per_client=per_client, max_pending=10**6, weights=WEIGHTS, recheck_seconds=60)


def entries(lane: str, count: int, client: str = "c") -> list[QueueEntry]:
    return [
        QueueEntry(
            key=f"q_{lane}_{n:013d}_{lane}{n}",
            job_id=f"{lane}{n}",
            lane=lane_of_key(f"q_{lane}_"),
            client=client,
            number=n + 1,
            admitted=False,
            enqueued_at="",
            etag="*",
        )  # fmt: skip
        for n in range(count)
    ]


def admit_one_at_a_time(ledger: Ledger, waiting: dict[str, list[QueueEntry]], picks: int) -> list[str]:
    """As in production under load: each release frees one slot, and one decision fills it."""
    order: list[str] = []
    for _ in range(picks):
        (chosen,) = choose(ledger, waiting, limits(), 1)
        waiting[chosen.lane].remove(chosen)
        order.append(chosen.lane)
        ledger.running -= 1  # the job ran and released its slot
    return order


def test_every_lane_gets_its_weights_share_and_none_waits_longer_than_the_sum_of_weights():
    ledger = Ledger(pending={"high": 1000, "normal": 1000, "low": 1000})
    waiting = {lane: entries(lane, 1000) for lane in WEIGHTS}
    order = admit_one_at_a_time(ledger, waiting, 1000)
    assert order.count("high") == 600 and order.count("normal") == 300 and order.count("low") == 100
    for lane, weight in WEIGHTS.items():
        positions = [i for i, picked in enumerate(order) if picked == lane]
        gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
        assert max(gaps) <= sum(WEIGHTS.values()) // weight + 1, lane  # never starved
    assert [e.job_id for e in waiting["low"][:3]] == ["low100", "low101", "low102"]  # FIFO: the oldest went first


def test_high_jobs_arriving_behind_a_low_backlog_take_six_of_every_seven_slots():
    ledger = Ledger(pending={"low": 100})
    waiting = {"low": entries("low", 100)}
    assert admit_one_at_a_time(ledger, waiting, 3) == ["low"] * 3
    waiting["high"] = entries("high", 5)
    ledger.pending["high"] = 5
    order = admit_one_at_a_time(ledger, waiting, 7)
    assert order[:6].count("high") == 5 and order[:6].count("low") == 1  # at most one low in between
    assert order[6] == "low"


def test_a_client_at_its_cap_is_skipped_and_the_next_client_in_the_lane_goes_first():
    ledger = Ledger(pending={"normal": 3}, clients={"greedy": 1}, running=1)
    waiting = {"normal": [*entries("normal", 2, client="greedy"), *entries("normal", 1, client="polite")]}
    chosen = choose(ledger, waiting, limits(per_client=1), free=5)
    assert [e.client for e in chosen] == ["polite"]
    assert ledger.clients == {"greedy": 1, "polite": 1} and ledger.running == 2 and ledger.pending["normal"] == 2
