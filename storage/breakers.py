"""Circuit breakers for webhook destinations, one per host, shared by every instance of the app.

Table `WebhookBreakers`: PartitionKey "breaker", RowKey = the host name. Every change is a
read-modify-write guarded by the row's ETag (If-Match; create-if-absent for the first failure), so
concurrent deliveries on any number of instances agree on one state:

- closed: deliveries go ahead; each failure (5xx, 429, timeout, no connection) adds one to `failures`,
  an answer from the host (2xx, 4xx) resets it; WEBHOOK_BREAKER_FAILURES in a row open it.
- open until `open_until`: nobody calls the host; deliveries wait that long (on durable timers).
- half_open: after the open period the first delivery to ask takes the probe (`probe_until`, a lease,
  so a crashed prober does not wedge it); the others keep waiting. The probe's success closes the
  breaker, its failure opens it for another period.

Times are the wall clock of the instance that writes (instances share the breaker, not a replay).
A host with no row is closed: a success writes nothing unless it changes the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.data.tables.aio import TableClient as AsyncTableClient

from shared.clock import iso, parse_iso
from shared.settings import Settings
from storage.clients import table_service
from storage.names import WEBHOOK_BREAKERS_TABLE

PARTITION = "breaker"
PROBE_LEASE_SECONDS = 30.0
"""How long a half-open probe holds the breaker: longer than one attempt (connect + read timeouts)."""
MIN_WAIT_SECONDS = 1.0
CONCURRENCY_ATTEMPTS = 20
MAX_LISTED = 100

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Gate:
    """May a delivery call the host now: allowed (as the probe, when half-open), or wait this long."""

    allowed: bool
    wait_seconds: float = 0.0
    probe: bool = False


def _table(settings: Settings) -> TableClient:
    return table_service(settings).get_table_client(WEBHOOK_BREAKERS_TABLE)


def _replace(table: TableClient, entity: Any, fields: dict[str, Any]) -> bool:
    """Replace the row if nobody changed it since it was read; False on a lost race."""
    row = {"PartitionKey": PARTITION, "RowKey": entity["RowKey"], **fields}
    try:
        table.update_entity(
            row, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
        )
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    return True


def _read(table: TableClient, host: str) -> Any:
    try:
        return table.get_entity(PARTITION, host)
    except ResourceNotFoundError:
        return None


def _seconds_until(moment: str | None, now: datetime) -> float:
    if not moment:
        return 0.0
    return (parse_iso(moment) - now).total_seconds()


def acquire(settings: Settings, host: str, now: datetime) -> Gate:
    """Whether a delivery may call `host` now; takes the probe when the open period is over."""
    with _table(settings) as table:
        for _ in range(CONCURRENCY_ATTEMPTS):
            entity = _read(table, host)
            state = str(entity.get("state", "closed")) if entity is not None else "closed"
            if state == "closed":
                return Gate(allowed=True)
            lease_field = "open_until" if state == "open" else "probe_until"
            remaining = _seconds_until(entity.get(lease_field), now)
            if remaining > 0:
                return Gate(allowed=False, wait_seconds=max(MIN_WAIT_SECONDS, remaining))
            probe_until = iso(now + timedelta(seconds=PROBE_LEASE_SECONDS))
            fields = {**_fields(entity), "state": "half_open", "probe_until": probe_until, "updated_at": iso(now)}
            if _replace(table, entity, fields):
                return Gate(allowed=True, probe=True)
        return Gate(allowed=False, wait_seconds=MIN_WAIT_SECONDS)  # heavy contention: ask again shortly


def _fields(entity: Any) -> dict[str, Any]:
    return {key: value for key, value in dict(entity).items() if key not in ("PartitionKey", "RowKey")}


def record(settings: Settings, host: str, *, success: bool, now: datetime) -> State:
    """Record an attempt's result (success: the host answered 2xx/4xx); returns the breaker's new state."""
    threshold = settings.webhook_breaker_failures
    open_until = iso(now + timedelta(seconds=settings.webhook_breaker_open_seconds))
    with _table(settings) as table:
        for _ in range(CONCURRENCY_ATTEMPTS):
            entity = _read(table, host)
            if entity is None:
                if success:
                    return "closed"
                state: State = "open" if threshold <= 1 else "closed"
                row = {"PartitionKey": PARTITION, "RowKey": host, "state": state, "failures": 1,
                       "open_until": open_until if state == "open" else "", "updated_at": iso(now)}  # fmt: skip
                try:
                    table.create_entity(row)
                except ResourceExistsError:
                    continue
                return state
            current = str(entity.get("state", "closed"))
            failures = int(entity.get("failures", 0))
            if success:
                if current == "closed" and failures == 0:
                    return "closed"
                fields = {"state": "closed", "failures": 0, "open_until": "", "probe_until": "", "updated_at": iso(now)}
            else:
                failures += 1
                if current == "half_open" or (current == "closed" and failures >= threshold):
                    fields = {"state": "open", "failures": failures, "open_until": open_until, "probe_until": "",
                              "updated_at": iso(now)}  # fmt: skip
                else:
                    # Still closed below the threshold, or already open (an attempt that began before it opened).
                    fields = {**_fields(entity), "failures": failures, "updated_at": iso(now)}
            if _replace(table, entity, fields):
                new_state: State = "closed" if success else cast(State, fields["state"])
                return new_state
        raise RuntimeError(f"breaker of {host} is too contended to update")


def breaker_view(entity: Any) -> dict[str, Any]:
    """A breaker as /api/health shows it."""
    view: dict[str, Any] = {"state": str(entity.get("state", "closed")), "failures": int(entity.get("failures", 0))}
    for key in ("open_until", "probe_until", "updated_at"):
        if entity.get(key):
            view[key] = str(entity[key])
    return view


async def list_breakers(table: AsyncTableClient) -> dict[str, dict[str, Any]]:
    """Every breaker that is not plainly closed (open, half-open, or counting failures), by host; at most MAX_LISTED."""
    breakers: dict[str, dict[str, Any]] = {}
    async for entity in table.query_entities(f"PartitionKey eq '{PARTITION}'", results_per_page=MAX_LISTED):
        view = breaker_view(entity)
        if view["state"] != "closed" or view["failures"]:
            breakers[str(entity["RowKey"])] = view
        if len(breakers) >= MAX_LISTED:
            break
    return breakers
