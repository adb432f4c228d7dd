"""Structured job events for Application Insights.

Each event is one log line `longrun.<event> key=value ...` on the `longrun` logger. The Functions
host ships it to the `traces` table, where the workbook and alerts in infra/ parse it with
`parse-kv` (see docs/operations.md). Values never carry payloads or secrets: ids, kinds, phases,
counts and durations only.
"""

from __future__ import annotations

import logging
import re
from typing import Any

logger = logging.getLogger("longrun")

_UNSAFE = re.compile(r"[\s=\"]")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    # Keep one event on one parseable line: spaces and '=' would break parse-kv.
    return _UNSAFE.sub("_", text)[:200]


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Write one structured event, e.g. log_event("job.completed", job_id=..., duration_ms=...)."""
    parts = [f"longrun.{event}"]
    parts += [f"{key}={_format(value)}" for key, value in fields.items() if value is not None]
    logger.log(level, " ".join(parts))
