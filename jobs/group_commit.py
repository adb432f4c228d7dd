"""Group commit and single-flight reads: many threads of one process share one storage round trip.

The admission ledger is one row that every decision replaces (storage.admission). Threads of one
process that decide each on their own collide on it and retry; instead, what arrives while a
transaction is in flight waits and rides in the next one (`GroupCommit`), and readers that arrive
while a read is in flight share its answer (`SingleFlight`).

Nothing here is state that correctness depends on: a caller returns only after the round trip that
carries its item has finished (durability is the transaction's, as before), and a crash loses only
callers that had not been answered yet. Several processes each have their own groups and still
serialize on the ledger's ETag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")
T = TypeVar("T")


@dataclass(eq=False)
class _Slot(Generic[I, R]):
    item: I
    key: str
    urgent: bool
    done: bool = False
    outcome: R | None = None
    error: BaseException | None = None
    put_back: bool = False  # carried by a round that failed for its urgent items' sake: next round is patient


@dataclass
class _Round(Generic[I, R]):
    slots: list[_Slot[I, R]]
    urgent: bool  # carries urgent items: applied the urgent way (fail fast)
    began: float


class GroupCommit(Generic[I, R]):
    """Items submitted while a round is in flight are applied together in the next round.

    `apply` gets up to `max_items` items (never two with the same key: one transaction must not touch a
    row twice) and returns one outcome per item, or raises: then every item of the round gets the error.

    Items may be urgent (`urgent`: a request's, whose client waits) or patient (a background step's). A round
    carries both kinds; `apply` sees which items it has and applies a round with an urgent item the urgent
    way, failing fast. When such a round fails, its urgent items get the error, and so does every urgent item
    still waiting (a request must not wait behind an outage for another round that fails too: it answers
    503 at once and its client retries), while its patient items are put back and go first, in a round of
    patient items only, which may ride the outage out. An urgent item that finds such a patient round in
    flight for longer than `patience` seconds does not wait for it: it leads a round of urgent items beside
    it (the one time two rounds of a group are in flight at once).

    Whoever finds no round in flight leads the next one in its own thread: no background thread, so
    nothing runs when nobody submits.
    """

    def __init__(
        self,
        apply: Callable[[list[I]], list[R]],
        *,
        max_items: int,
        key: Callable[[I], str],
        urgent: Callable[[I], bool] = lambda _item: False,
        patience: float = 0.25,
    ) -> None:
        """A group that applies items with `apply`, up to `max_items` per round."""
        self._apply = apply
        self._max_items = max_items
        self._key = key
        self._urgent = urgent
        self._patience = patience
        self._lock = threading.Condition()
        self._waiting: list[_Slot[I, R]] = []
        self._in_flight: list[_Round[I, R]] = []
        self.rounds = 0  # rounds applied so far (for tests and benchmarks)

    def submit(self, items: Sequence[I]) -> list[R]:
        """Apply `items` (in rounds with whatever else is waiting); their outcomes, in order.

        Raises the first error of a round that carried one of them (items in other rounds may have
        been applied: the caller undoes or retries as for any partial failure).
        """
        slots = [_Slot[I, R](item, self._key(item), self._urgent(item)) for item in items]
        with self._lock:
            self._waiting.extend(slots)
        while True:
            with self._lock:
                while not all(slot.done for slot in slots):
                    # Only a caller whose urgent items still wait may go beside a round (they fill it).
                    urgent = any(slot.urgent and not slot.done for slot in slots)
                    if not self._in_flight:
                        round_ = self._take(urgent_only=False)
                        break
                    if urgent and self._may_go_beside():
                        round_ = self._take(urgent_only=True)
                        break
                    self._lock.wait(self._patience if urgent else None)
                else:
                    break
                self._in_flight.append(round_)
            try:
                self._run(round_)
            finally:
                with self._lock:
                    self._in_flight.remove(round_)
                    self._lock.notify_all()
        for slot in slots:
            if slot.error is not None:
                raise slot.error
        return [slot.outcome for slot in slots]  # type: ignore[misc]  # done without error: set

    def _may_go_beside(self) -> bool:
        """Whether urgent items may go now although a round is in flight: it is a lone patient round (one that
        may be riding out an outage) that has been in flight longer than `patience`."""
        if len(self._in_flight) != 1:
            return False
        current = self._in_flight[0]
        return not current.urgent and time.monotonic() - current.began >= self._patience

    def _take(self, *, urgent_only: bool) -> _Round[I, R]:
        """The next round: waiting items in arrival order, one per key, at most max_items; patient items only
        after a failed urgent round put some back (they go first), urgent items only beside a patient round."""
        patient_only = not urgent_only and any(slot.put_back for slot in self._waiting)
        taken: list[_Slot[I, R]] = []
        keys: set[str] = set()
        rest: list[_Slot[I, R]] = []
        for slot in self._waiting:
            fits = (slot.urgent or not urgent_only) and (not slot.urgent or not patient_only)
            if fits and len(taken) < self._max_items and slot.key not in keys:
                keys.add(slot.key)
                taken.append(slot)
            else:
                rest.append(slot)
        self._waiting = rest
        return _Round(taken, any(slot.urgent for slot in taken), time.monotonic())

    def _run(self, round_: _Round[I, R]) -> None:
        try:
            outcomes = self._apply([slot.item for slot in round_.slots])
        except Exception as exc:
            with self._lock:
                failed, put_back = round_.slots, []
                if round_.urgent:
                    failed = [slot for slot in round_.slots if slot.urgent]
                    put_back = [slot for slot in round_.slots if not slot.urgent]
                    failed += [slot for slot in self._waiting if slot.urgent]
                    self._waiting = [slot for slot in self._waiting if not slot.urgent]
                for slot in failed:
                    slot.error, slot.done = exc, True
                for slot in put_back:
                    slot.put_back = True
                self._waiting[:0] = put_back
            return
        with self._lock:
            self.rounds += 1
            for slot, outcome in zip(round_.slots, outcomes, strict=True):
                slot.outcome, slot.done = outcome, True


class SingleFlight(Generic[T]):
    """Callers that arrive while a read is in flight get that read's answer instead of reading again.

    Only for reads whose answer may be a moment old (backpressure is approximate by design; every
    decision re-reads what it decides on).
    """

    def __init__(self, read: Callable[[], T]) -> None:
        """A shared `read`."""
        self._read = read
        self._lock = threading.Lock()
        self._flight: Future[T] | None = None
        self.reads = 0  # reads made so far (for tests)

    def get(self) -> T:
        """The answer of the read in flight, or of a new one."""
        with self._lock:
            flight, lead = self._flight, self._flight is None
            if flight is None:
                flight = self._flight = Future()
        if lead:
            try:
                self.reads += 1
                flight.set_result(self._read())
            except Exception as exc:
                flight.set_exception(exc)
            finally:
                with self._lock:
                    self._flight = None
        return flight.result()
