"""NCRONTAB schedules (six fields, seconds first), as Functions timer triggers use them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}


class ScheduleError(ValueError):
    """An NCRONTAB expression the host would refuse."""

    pass


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ScheduleError(f"value out of range {low}-{high} in {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int] | None) -> int:
    key = text.lower()
    if names and key in names:
        return names[key]
    if not text.isdigit():
        raise ScheduleError(f"bad value {text!r}")
    return int(text)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed six-field NCRONTAB schedule (with seconds), as timer triggers take it."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse `sec min hour day month weekday`; raises ScheduleError."""
        fields = expression.split()
        if len(fields) != 6:
            raise ScheduleError(f"NCRONTAB needs six fields (sec min hour day month weekday): {expression!r}")
        sec, minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, 0, 7, _DAYS)
        weekdays = frozenset(0 if d == 7 else d for d in weekdays)
        return cls(
            _field(sec, 0, 59),
            _field(minute, 0, 59),
            _field(hour, 0, 23),
            _field(day, 1, 31),
            _field(month, 1, 12, _MONTHS),
            weekdays,
            day != "*",
            weekday != "*",
        )

    def _day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        by_day = moment.day in self.days
        by_weekday = (moment.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return by_day or by_weekday  # cron semantics: either restriction matches
        return by_day and by_weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment`."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(366 * 5):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate >= start:
                                return candidate
            day += timedelta(days=1)
        raise ScheduleError("schedule never fires")
