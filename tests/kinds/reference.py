"""The csv-report reference: one plain row-by-row pass of the csv module over the whole input.

Tests hold the chunked path (`kinds.csv_report`: row boundaries, Arrow, column-wise grouping, binned exact
sums) to this on any input. It shares only the option model, the number rule (`parse_decimal`) and the
exact-sum units with that path, so a bug in boundaries, parsing or grouping shows as a difference.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping
from typing import Any

from kinds.base import ByteSource, NonRetryableError, SourceReader
from kinds.csv_report import CsvReportOptions, parse_decimal
from kinds.exact_sum import to_float, units_of


class _Totals:
    """Count, exact sum, min and max of one metric in one group, a value at a time."""

    __slots__ = ("count", "units", "minimum", "maximum")

    def __init__(self) -> None:
        self.count = 0
        self.units = 0
        self.minimum: float | None = None
        self.maximum: float | None = None

    def add(self, value: float) -> None:
        self.count += 1
        self.units += units_of(value)
        self.minimum = value if self.minimum is None else min(self.minimum, value)
        self.maximum = value if self.maximum is None else max(self.maximum, value)

    def statistics(self) -> dict[str, Any]:
        try:
            total = to_float(self.units)
        except OverflowError:
            raise NonRetryableError("invalid_input", "a metric sum exceeds the range of a float") from None
        count = self.count
        return {
            "count": count,
            "sum": total,
            "min": self.minimum if count else None,
            "max": self.maximum if count else None,
            "mean": total / count if count else None,
        }


def _columns(header: list[str], options: CsvReportOptions) -> tuple[int, list[int]]:
    positions: dict[str, int] = {}
    for index, column in enumerate(header):
        positions.setdefault(column, index)  # the first of equal names counts
    unknown = [c for c in [options.group_by, *options.metrics] if c not in positions]
    if unknown:
        raise NonRetryableError("unknown_column", f"unknown column(s) {', '.join(map(repr, unknown))}")
    return positions[options.group_by], [positions[m] for m in options.metrics]


def single_pass_report(source: ByteSource, options: Mapping[str, Any]) -> dict[str, Any]:
    """The report of one pass of `csv.reader` over the whole input (empty lines are not rows)."""
    parsed = CsvReportOptions.model_validate(dict(options))
    counts: dict[str, int] = {}
    stats: dict[str, list[_Totals]] = {}
    rows = 0
    # A reference has no cell size limit; restored after, so that it cannot hide one in the code under test.
    limit = csv.field_size_limit(sys.maxsize)
    raw = io.BufferedReader(SourceReader(source, 0, source.size))
    try:
        with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="") as text:
            reader = (row for row in csv.reader(text) if row)
            header = next(reader, None)
            if header is None:
                raise NonRetryableError("invalid_input", "the input is empty or has no header row")
            group_index, metric_indices = _columns(header, parsed)
            for row in reader:
                rows += 1
                key = row[group_index] if group_index < len(row) else ""
                counts[key] = counts.get(key, 0) + 1
                totals = stats.setdefault(key, [_Totals() for _ in metric_indices])
                for j, index in enumerate(metric_indices):
                    cell = row[index] if index < len(row) else ""
                    if (value := parse_decimal(cell)) is not None:
                        totals[j].add(value)
    except (UnicodeDecodeError, csv.Error) as error:
        raise NonRetryableError("invalid_input", f"the input is not valid: {error}") from None
    finally:
        csv.field_size_limit(limit)
    groups = {
        key: {
            "count": counts[key],
            "metrics": {column: t.statistics() for column, t in zip(parsed.metrics, stats[key], strict=True)},
        }
        for key in sorted(counts)
    }
    return {"rows": rows, "group_by": parsed.group_by, "groups": groups}
