"""`csv-report`: per-group counts and metric statistics of an RFC 4180 CSV, in chunks split on row boundaries.

Chunks are byte ranges ending just after a newline that lies outside quoted fields. Outside a quoted field
the number of `"` seen since the start of the file is even (an escaped quote `""` adds two), so one streaming
pass counting quotes and newlines with C-speed `bytes.count`/`bytes.find` finds the boundaries. Sums are
carried as exact Shewchuk partials so that every chunking gives the identical, correctly rounded total.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from kinds.base import ByteSource, ChunkStopped, NonRetryableError, SourceReader, chunk_size_bytes, require_source

NAME = "csv-report"

ROWS_PER_STOP_CHECK = 4096
"""Rows between two `should_stop()` calls: a few milliseconds of work."""

_BUFFERED_VALUES_LIMIT = 1 << 20
"""Metric values buffered before they are folded into exact partials: bounds a chunk's memory."""

_DECODE_BUFFER_BYTES = 1 << 20

_NUMBER = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
"""A decimal number: sign, digits with optional fraction or a fraction alone, exponent, spaces around."""

# Cheap pre-check: a cell that starts and ends like a plain number and is ASCII without `_` is a decimal
# number exactly when float() accepts it (float's extras - inf, nan, `_`, Unicode digits, other
# whitespace - all fail the pre-check and go through the regex).
_FIRST_CHARS = frozenset("0123456789+-.")
_LAST_CHARS = frozenset("0123456789.")

_STATS = ("count", "sum", "min", "max", "mean")

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class CsvReportOptions(BaseModel):
    """Options of `csv-report`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    group_by: ColumnName = Field(description="Column whose values define the groups.")
    metrics: list[ColumnName] = Field(
        default_factory=list, max_length=100, description="Numeric columns to summarize per group."
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: Any) -> Any:
        # Query parameters carry metrics as "amount,qty".
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics")
    @classmethod
    def _drop_duplicates(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


def parse_decimal(cell: str) -> float | None:
    """The value of a cell if it is a decimal number (finite), else None."""
    if cell and cell[0] in _FIRST_CHARS and cell[-1] in _LAST_CHARS and cell.isascii() and "_" not in cell:
        try:
            value = float(cell)
        except ValueError:
            return None
    elif _NUMBER.fullmatch(cell):
        value = float(cell)
    else:
        return None
    return value if value - value == 0.0 else None  # an exponent can overflow to inf


def exact_partials(values: list[float]) -> list[float]:
    """Non-overlapping floats whose exact sum is the exact sum of `values` (usually one or two)."""
    partials: list[float] = []
    try:
        total = math.fsum(values)
        while total != 0.0:
            partials.append(total)
            total = math.fsum([*values, *(-p for p in partials)])
    except OverflowError:
        raise NonRetryableError("invalid_input", "a metric sum exceeds the range of a float") from None
    return partials


class _MetricTotals:
    """Count, exact sum partials, min and max of the numbers of one metric in one group."""

    __slots__ = ("count", "partials", "minimum", "maximum")

    def __init__(self) -> None:
        self.count = 0
        self.partials: list[float] = []
        self.minimum: float | None = None
        self.maximum: float | None = None

    def add(self, values: list[float]) -> None:
        if not values:
            return
        self.count += len(values)
        self.partials = exact_partials([*self.partials, *values])
        low, high = min(values), max(values)
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)

    def to_partial(self) -> dict[str, Any]:
        return {"count": self.count, "partials": self.partials, "min": self.minimum, "max": self.maximum}


class _Group:
    __slots__ = ("rows", "values", "totals")

    def __init__(self, metric_count: int) -> None:
        self.rows = 0
        self.values: list[list[float]] = [[] for _ in range(metric_count)]
        self.totals = [_MetricTotals() for _ in range(metric_count)]

    def flush(self) -> None:
        for values, totals in zip(self.values, self.totals, strict=True):
            totals.add(values)
            values.clear()


def _text_lines(source: ByteSource, start: int, end: int) -> io.TextIOWrapper:
    # newline="" keeps line ends as they are, which the csv module needs for quoted newlines; only a
    # range starting at 0 may begin with a BOM.
    raw = io.BufferedReader(SourceReader(source, start, end - start), buffer_size=_DECODE_BUFFER_BYTES)
    text = io.TextIOWrapper(raw, encoding="utf-8-sig" if start == 0 else "utf-8", errors="strict", newline="")
    text._CHUNK_SIZE = _DECODE_BUFFER_BYTES  # type: ignore[attr-defined]  # larger decode steps: fewer calls
    return text


def _first_row(rows: Iterator[list[str]]) -> list[str] | None:
    """The first non-empty row (the header); empty lines are not rows."""
    for row in rows:
        if row:
            return row
    return None


def _column_indices(header: list[str], options: CsvReportOptions) -> tuple[int, list[int]]:
    positions: dict[str, int] = {}
    for index, column in enumerate(header):
        positions.setdefault(column, index)
    unknown = [c for c in [options.group_by, *options.metrics] if c not in positions]
    if unknown:
        raise NonRetryableError("unknown_column", f"unknown column(s) {', '.join(map(repr, unknown))}")
    return positions[options.group_by], [positions[m] for m in options.metrics]


def _invalid_input(error: Exception) -> NonRetryableError:
    if isinstance(error, UnicodeDecodeError):
        return NonRetryableError("invalid_input", f"the input is not valid UTF-8 (byte {error.start} of a block)")
    return NonRetryableError("invalid_input", f"the input is not valid CSV: {error}")


def _read_header(source: ByteSource) -> list[str]:
    if source.size == 0:
        raise NonRetryableError("invalid_input", "the input is empty")
    try:
        with _text_lines(source, 0, source.size) as text:
            header = _first_row(csv.reader(text))
    except (UnicodeDecodeError, csv.Error) as error:
        raise _invalid_input(error) from None
    if header is None:
        raise NonRetryableError("invalid_input", "the input has no header row")
    return header


def _row_boundaries(source: ByteSource, chunk_bytes: int) -> list[int]:
    """Chunk ends: the first row boundary at least `chunk_bytes` after the previous one; checks UTF-8 too."""
    size = source.size
    boundaries: list[int] = []
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    next_target = chunk_bytes
    searching = False  # past the target, looking for a newline outside quotes
    odd_quotes = 0  # parity of the quotes before `offset + i`
    offset = 0
    for block in source.stream(0, size):
        try:
            if not block.isascii() or decoder.getstate()[0]:
                decoder.decode(block)
        except UnicodeDecodeError as error:
            raise NonRetryableError(
                "invalid_input", f"the input is not valid UTF-8 (at byte {offset + error.start})"
            ) from None
        length = len(block)
        i = 0
        while next_target < size:
            if searching:
                newline = block.find(b"\n", i)
                if newline < 0:
                    break
                odd_quotes ^= block.count(b'"', i, newline) & 1
                i = newline + 1
                if not odd_quotes:
                    boundaries.append(offset + i)
                    next_target = offset + i + chunk_bytes
                    searching = False
            else:
                target = next_target - offset
                if target >= length:
                    break
                odd_quotes ^= block.count(b'"', i, target) & 1
                i = target
                searching = True
        odd_quotes ^= block.count(b'"', i) & 1
        offset += length
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise NonRetryableError("invalid_input", "the input is not valid UTF-8 (truncated at the end)") from None
    return [b for b in boundaries if b < size]


class CsvReport:
    """The `csv-report` job kind."""

    name = NAME
    requires_input = True
    input_content_types: tuple[str, ...] = ("text/csv",)

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated options: `group_by` and `metrics` (a list, or a comma-separated string)."""
        return CsvReportOptions.model_validate(dict(raw)).model_dump()

    def validate_inline_input(self, data: Any) -> None:
        """CSV input comes as an uploaded blob or a raw body, never as JSON."""
        raise ValueError("csv-report takes its input as text/csv, not as a JSON `input`")

    def plan(
        self, source: ByteSource | None, options: dict[str, Any], target_chunk_bytes: int, max_chunks: int
    ) -> list[dict[str, Any]]:
        """Check the header and columns, then split the input on row boundaries (one streaming pass)."""
        source = require_source(source)
        parsed = CsvReportOptions.model_validate(options)
        group_index, metric_indices = _column_indices(_read_header(source), parsed)
        chunk_bytes = chunk_size_bytes(source.size, target_chunk_bytes, max_chunks)
        edges = [0, *_row_boundaries(source, chunk_bytes), source.size]
        return [
            {
                "index": index,
                "start": start,
                "end": end,
                "group_index": group_index,
                "metric_indices": metric_indices,
            }
            for index, (start, end) in enumerate(zip(edges, edges[1:], strict=False))
        ]

    def process_chunk(
        self,
        source: ByteSource | None,
        chunk: dict[str, Any],
        options: dict[str, Any],
        attempt: int,
        should_stop: Callable[[], bool],
    ) -> dict[str, Any]:
        """Counts and metric partials of the rows in [start, end); the chunk at 0 skips the header."""
        source = require_source(source)
        start, end = int(chunk["start"]), int(chunk["end"])
        group_index = int(chunk["group_index"])
        metric_indices = [int(i) for i in chunk["metric_indices"]]
        if should_stop():
            raise ChunkStopped(f"chunk {chunk.get('index')} stopped before it started")
        try:
            with _text_lines(source, start, end) as text:
                rows = csv.reader(text)
                if start == 0:
                    _first_row(rows)
                row_count, groups = _aggregate(rows, group_index, metric_indices, should_stop)
        except (UnicodeDecodeError, csv.Error) as error:
            raise _invalid_input(error) from None
        return {
            "index": chunk.get("index"),
            "rows": row_count,
            "groups": {
                value: {"count": group.rows, "metrics": [t.to_partial() for t in group.totals]}
                for value, group in groups.items()
            },
        }

    def merge(self, partials: Iterable[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """The report: row count and, per group, its row count and per-metric count/sum/min/max/mean."""
        parsed = CsvReportOptions.model_validate(options)
        rows = 0
        counts: dict[str, int] = {}
        metrics: dict[str, list[tuple[int, list[float], float | None, float | None]]] = {}
        for partial in partials:
            rows += int(partial["rows"])
            for value, group in partial["groups"].items():
                counts[value] = counts.get(value, 0) + int(group["count"])
                per_metric = metrics.setdefault(value, [(0, [], None, None) for _ in parsed.metrics])
                for j, part in enumerate(group["metrics"]):
                    count, sums, low, high = per_metric[j]
                    per_metric[j] = (
                        count + int(part["count"]),
                        [*sums, *part["partials"]],
                        _pick(min, low, part["min"]),
                        _pick(max, high, part["max"]),
                    )
        groups: dict[str, Any] = {}
        for value in sorted(counts):
            groups[value] = {
                "count": counts[value],
                "metrics": {
                    column: _statistics(count, sums, low, high)
                    for column, (count, sums, low, high) in zip(parsed.metrics, metrics[value], strict=True)
                },
            }
        return {"rows": rows, "group_by": parsed.group_by, "groups": groups}

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """Rows, group count and the largest groups' row counts, kept under 2 KB."""
        groups: dict[str, Any] = result.get("groups", {})
        largest = sorted(groups.items(), key=lambda item: (-int(item[1]["count"]), item[0]))
        summary: dict[str, Any] = {
            "rows": result.get("rows", 0),
            "group_by": result.get("group_by"),
            "groups": len(groups),
            "metrics": list(next(iter(groups.values()))["metrics"]) if groups else [],
            "largest_groups": {},
        }
        for value, group in largest[:10]:
            summary["largest_groups"][value[:64]] = group["count"]
            if len(json.dumps(summary)) > 1800:
                del summary["largest_groups"][value[:64]]
                break
        if len(json.dumps(summary)) > 1800:
            summary["metrics"] = summary["metrics"][:5]
            summary["group_by"] = str(summary["group_by"])[:64]
        return summary

    def render(self, result: dict[str, Any], fmt: str) -> tuple[bytes, str] | None:
        """CSV: group, count, then count/sum/min/max/mean per metric (empty cells for null)."""
        if fmt != "csv":
            return None
        groups: dict[str, Any] = result.get("groups", {})
        metric_names = list(next(iter(groups.values()))["metrics"]) if groups else []
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["group", "count", *(f"{m}_{stat}" for m in metric_names for stat in _STATS)])
        for value, group in groups.items():
            cells: list[Any] = [value, group["count"]]
            for m in metric_names:
                stats = group["metrics"][m]
                cells.extend("" if stats[stat] is None else repr(stats[stat]) for stat in _STATS)
            writer.writerow(cells)
        return out.getvalue().encode("utf-8"), "text/csv; charset=utf-8"


def _pick(choose: Callable[[float, float], float], current: float | None, new: float | None) -> float | None:
    if current is None:
        return new
    if new is None:
        return current
    return choose(current, new)


def _statistics(count: int, sums: list[float], low: float | None, high: float | None) -> dict[str, Any]:
    total = math.fsum(sums) if sums else 0.0
    return {
        "count": count,
        "sum": total,
        "min": low if count else None,
        "max": high if count else None,
        "mean": total / count if count else None,
    }


def _aggregate(
    rows: Iterator[list[str]], group_index: int, metric_indices: list[int], should_stop: Callable[[], bool]
) -> tuple[int, dict[str, _Group]]:
    """Row count and per-group totals of the rows: the hot loop, kept free of per-row allocations."""
    metric_count = len(metric_indices)
    width = max([group_index, *metric_indices]) + 1
    groups: dict[str, _Group] = {}
    row_count = 0
    since_check = 0
    since_flush = 0
    first, last = _FIRST_CHARS, _LAST_CHARS
    number = _NUMBER.fullmatch
    single = metric_indices[0] if metric_count == 1 else -1
    cells_of = itemgetter(*metric_indices) if metric_count > 1 else None
    for row in rows:
        if len(row) < width:
            if not row:
                continue  # empty lines are not rows
            row = row + [""] * (width - len(row))  # a short row's missing cells are empty
        row_count += 1
        key = row[group_index]
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(metric_count)
        group.rows += 1
        if metric_count:
            cells = (row[single],) if cells_of is None else cells_of(row)
            for values, cell in zip(group.values, cells, strict=False):
                if cell and cell[0] in first and cell[-1] in last and cell.isascii() and "_" not in cell:
                    try:
                        value = float(cell)
                    except ValueError:
                        continue
                elif cell and number(cell):
                    value = float(cell)
                else:
                    continue
                if value - value == 0.0:
                    values.append(value)
        since_check += 1
        if since_check == ROWS_PER_STOP_CHECK:
            since_check = 0
            if should_stop():
                raise ChunkStopped(f"stopped after {row_count} rows")
            since_flush += ROWS_PER_STOP_CHECK * metric_count
            if since_flush >= _BUFFERED_VALUES_LIMIT:
                since_flush = 0
                for buffered in groups.values():
                    buffered.flush()
    for buffered in groups.values():
        buffered.flush()
    return row_count, groups


def single_pass_report(source: ByteSource, options: Mapping[str, Any]) -> dict[str, Any]:
    """The reference: the report of one plain pass of the csv module over the whole input.

    Written independently of the chunked path (a regex for numbers, no chunking) so tests can compare them.
    """
    parsed = CsvReportOptions.model_validate(dict(options))
    counts: dict[str, int] = {}
    stats: dict[str, list[_MetricTotals]] = {}
    pending: dict[str, list[list[float]]] = {}
    rows = 0
    try:
        with _text_lines(require_source(source), 0, source.size) as text:
            reader = csv.reader(text)
            header = _first_row(reader)
            if source.size == 0 or header is None:
                raise NonRetryableError("invalid_input", "the input is empty or has no header row")
            group_index, metric_indices = _column_indices(header, parsed)
            for row in reader:
                if not row:
                    continue
                rows += 1
                key = row[group_index] if group_index < len(row) else ""
                counts[key] = counts.get(key, 0) + 1
                buffers = pending.setdefault(key, [[] for _ in metric_indices])
                for j, index in enumerate(metric_indices):
                    cell = row[index] if index < len(row) else ""
                    if _NUMBER.fullmatch(cell) and math.isfinite(value := float(cell)):
                        buffers[j].append(value)
                        if len(buffers[j]) >= 65536:
                            stats.setdefault(key, [_MetricTotals() for _ in metric_indices])[j].add(buffers[j])
                            buffers[j] = []
    except (UnicodeDecodeError, csv.Error) as error:
        raise _invalid_input(error) from None
    groups: dict[str, Any] = {}
    for key in sorted(counts):
        totals = stats.setdefault(key, [_MetricTotals() for _ in metric_indices])
        for j, values in enumerate(pending[key]):
            totals[j].add(values)
        groups[key] = {
            "count": counts[key],
            "metrics": {
                column: _statistics(t.count, t.partials, t.minimum, t.maximum)
                for column, t in zip(parsed.metrics, totals, strict=True)
            },
        }
    return {"rows": rows, "group_by": parsed.group_by, "groups": groups}


KIND = CsvReport()
