"""How long things take in the Durable runtime: Azure's defaults, host.json's settings, test-only overrides.

Defaults are DurableTask.AzureStorage's (`AzureStorageOrchestrationServiceSettings`): control-queue and
work-item visibility 5 min, partition lease 30 s (renewed every 10 s); the timer limits are the Azure
Storage provider's (`AzureStorageDurabilityProvider.MaximumDelayTime` 6 days and
`LongRunningTimerIntervalLength` 3 days), which the extension sends to the SDK in the orchestration
context (`maximumShortTimerDuration`, `longRunningTimerIntervalDuration`). host.json may set the two
visibilities (`extensions.durableTask.storageProvider`, 1-60 min, as the extension validates).

Tests override them with environment variables (seconds or a .NET TimeSpan), so that crash recovery takes
seconds and the SDK's long-timer path can be exercised in seconds; Azure has no such knobs:
`DEVHOST_CONTROL_QUEUE_VISIBILITY`, `DEVHOST_WORK_ITEM_VISIBILITY`, `DEVHOST_PARTITION_LEASE` (0: no
partition leases), `DEVHOST_MAXIMUM_SHORT_TIMER`, `DEVHOST_LONG_TIMER_INTERVAL`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from devhost.config import ConfigError, parse_timespan

ENV_CONTROL_VISIBILITY = "DEVHOST_CONTROL_QUEUE_VISIBILITY"
ENV_WORK_ITEM_VISIBILITY = "DEVHOST_WORK_ITEM_VISIBILITY"
ENV_PARTITION_LEASE = "DEVHOST_PARTITION_LEASE"
ENV_MAXIMUM_SHORT_TIMER = "DEVHOST_MAXIMUM_SHORT_TIMER"
ENV_LONG_TIMER_INTERVAL = "DEVHOST_LONG_TIMER_INTERVAL"

# Fast values for tests: recovery from a SIGKILL in about 15 s instead of up to 5 min. Azure blob leases
# last 15-60 s, so 15 s is the shortest partition lease there is.
FAST_TEST_TIMINGS = {
    ENV_CONTROL_VISIBILITY: "15",
    ENV_WORK_ITEM_VISIBILITY: "15",
    ENV_PARTITION_LEASE: "15",
}


def dotnet_timespan(value: timedelta) -> str:
    """A TimeSpan as .NET writes it (`d.hh:mm:ss[.fffffff]`), which the SDK's parse_timespan_attrib reads."""
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    if value.microseconds:
        text += f".{value.microseconds:06d}0"
    return f"{days}.{text}" if days else text


def _seconds(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_timespan(text)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class DurableTimings:
    """The Durable runtime's timings (see the module docstring)."""

    control_queue_visibility: int = 300
    work_item_visibility: int = 300
    partition_lease: int = 30  # seconds; 0: no partition leases (every partition is this host's at once)
    maximum_short_timer: timedelta = timedelta(days=6)
    long_timer_interval: timedelta = timedelta(days=3)

    @property
    def lease_renew_interval(self) -> float:
        """DTFx renews a 30 s lease every 10 s."""
        return self.partition_lease / 3

    @property
    def work_item_renew_interval(self) -> float:
        """How often a running activity's work item has its visibility extended."""
        return max(1.0, self.work_item_visibility / 3)

    @classmethod
    def load(cls, host_json: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> DurableTimings:
        """host.json's storageProvider settings, then the test-only environment overrides."""
        env = os.environ if env is None else env
        provider = ((host_json or {}).get("extensions") or {}).get("durableTask", {}).get("storageProvider") or {}
        values: dict[str, Any] = {}
        for key, field_name in (
            ("controlQueueVisibilityTimeout", "control_queue_visibility"),
            ("workItemQueueVisibilityTimeout", "work_item_visibility"),
        ):
            if key in provider:
                seconds = parse_timespan(provider[key])
                if not 60 <= seconds <= 3600:
                    raise ConfigError(f"durableTask.storageProvider.{key} must be between 1 and 60 minutes")
                values[field_name] = int(seconds)
        for name, field_name in (
            (ENV_CONTROL_VISIBILITY, "control_queue_visibility"),
            (ENV_WORK_ITEM_VISIBILITY, "work_item_visibility"),
            (ENV_PARTITION_LEASE, "partition_lease"),
        ):
            if env.get(name):
                values[field_name] = max(0, int(_seconds(env[name], name)))
        lease = values.get("partition_lease", cls.partition_lease)
        if lease and not 15 <= lease <= 60:
            raise ConfigError(f"{ENV_PARTITION_LEASE} must be 0 (off) or 15-60 seconds, as blob leases are")
        for name, field_name in (
            (ENV_MAXIMUM_SHORT_TIMER, "maximum_short_timer"),
            (ENV_LONG_TIMER_INTERVAL, "long_timer_interval"),
        ):
            if env.get(name):
                values[field_name] = timedelta(seconds=_seconds(env[name], name))
        timings = cls(**values)
        if min(timings.control_queue_visibility, timings.work_item_visibility) < 1:
            raise ConfigError("queue visibilities must be at least 1 second")
        if not timedelta(0) < timings.long_timer_interval <= timings.maximum_short_timer:
            raise ConfigError(f"{ENV_LONG_TIMER_INTERVAL} must be positive and at most {ENV_MAXIMUM_SHORT_TIMER}")
        return timings
