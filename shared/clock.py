"""Time, the one way the app reads and writes it: aware UTC datetimes and fixed-width ISO 8601 text.

Table filters compare timestamps as strings (`finished_at lt '...'`), so every timestamp the app
writes has the same width and zone; and every timestamp it reads (its own, Durable's, a client's)
goes through `parse_iso`, which takes a naive value as UTC rather than as local time.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO 8601 UTC (`2026-01-02T03:04:05.000006Z`), so string order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (a naive value is taken as UTC)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
