"""Job kinds: each kind is one module with plan / process_chunk / merge, registered here by name.

Adding a kind: write `kinds/<name>.py` with a class following `kinds.base.JobKind` and a `KIND` instance,
then add one line to `_KINDS`. Kinds are pure Python over a `kinds.base.ByteSource`: no Azure, no Durable.
"""

from __future__ import annotations

from kinds import csv_report, simulate, vector_normalize
from kinds.base import JobKind

_KINDS: dict[str, JobKind] = {
    csv_report.NAME: csv_report.KIND,
    vector_normalize.NAME: vector_normalize.KIND,
}
_TEST_KINDS: dict[str, JobKind] = {
    simulate.NAME: simulate.KIND,  # demos and fault tests only (ENABLE_SIMULATE_KIND)
}


def get_kind(name: str, *, simulate_enabled: bool) -> JobKind | None:
    """The job kind called `name`, or None if there is none (or it is not enabled)."""
    if name in _KINDS:
        return _KINDS[name]
    if simulate_enabled:
        return _TEST_KINDS.get(name)
    return None


def kind_names(*, simulate_enabled: bool) -> list[str]:
    """Names of the job kinds that can be submitted."""
    return sorted([*_KINDS, *(_TEST_KINDS if simulate_enabled else {})])
