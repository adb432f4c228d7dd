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
    done: bool = False
    outcome: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[I, R]):
    """Items submitted while a round is in flight are applied together in the next round.

    `apply` gets up to `max_items` items (never two with the same key: one transaction must not touch a
    row twice) and returns one outcome per item, or raises: then every item of the round gets the error,
    and with `fail_waiting` so does every item still waiting (a request must not wait behind an outage
    for another round that fails too: it answers 503 at once and its client retries).

    Whoever finds no round in flight leads the next one in its own thread: no background thread, so
    nothing runs when nobody submits.
    """

    def __init__(
        self,
        apply: Callable[[list[I]], list[R]],
        *,
        max_items: int,
        key: Callable[[I], str],
        fail_waiting: bool = False,
    ) -> None:
        """A group that applies items with `apply`, up to `max_items` per round."""
        self._apply = apply
        self._max_items = max_items
        self._key = key
        self._fail_waiting = fail_waiting
        self._lock = threading.Condition()
        self._waiting: list[_Slot[I, R]] = []
        self._leading = False
        self.rounds = 0  # rounds applied so far (for tests and benchmarks)

    def submit(self, items: Sequence[I]) -> list[R]:
        """Apply `items` (in rounds with whatever else is waiting); their outcomes, in order.

        Raises the first error of a round that carried one of them (items in other rounds may have
        been applied: the caller undoes or retries as for any partial failure).
        """
        slots = [_Slot[I, R](item, self._key(item)) for item in items]
        with self._lock:
            self._waiting.extend(slots)
        while True:
            with self._lock:
                self._lock.wait_for(lambda: all(slot.done for slot in slots) or not self._leading)
                if all(slot.done for slot in slots):
                    break
                self._leading = True
                round_ = self._take()
            try:
                self._run(round_)
            finally:
                with self._lock:
                    self._leading = False
                    self._lock.notify_all()
        for slot in slots:
            if slot.error is not None:
                raise slot.error
        return [slot.outcome for slot in slots]  # type: ignore[misc]  # done without error: set

    def _take(self) -> list[_Slot[I, R]]:
        """The next round: waiting items in arrival order, one per key, at most max_items."""
        taken: list[_Slot[I, R]] = []
        keys: set[str] = set()
        rest: list[_Slot[I, R]] = []
        for slot in self._waiting:
            if len(taken) < self._max_items and slot.key not in keys:
                keys.add(slot.key)
                taken.append(slot)
            else:
                rest.append(slot)
        self._waiting = rest
        return taken

    def _run(self, round_: list[_Slot[I, R]]) -> None:
        try:
            outcomes = self._apply([slot.item for slot in round_])
        except Exception as exc:
            with self._lock:
                failed = round_
                if self._fail_waiting:
                    failed = [*round_, *self._waiting]
                    self._waiting = []
                for slot in failed:
                    slot.error, slot.done = exc, True
            return
        with self._lock:
            self.rounds += 1
            for slot, outcome in zip(round_, outcomes, strict=True):
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
