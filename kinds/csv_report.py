"""`csv-report`: per-group counts and metric statistics of an RFC 4180 CSV, in chunks split on row boundaries.

Chunks are byte ranges ending just after a newline that lies outside quoted fields. Outside a quoted field
the number of `"` seen since the start of the file is even (an escaped quote `""` adds two), so one streaming
pass counting quotes and newlines with C-speed `bytes.count`/`bytes.find` finds the boundaries. Sums are
carried as exact Shewchuk partials so that every chunking gives the identical, correctly rounded total.

Input that is not RFC 4180 (a `"` inside an unquoted field) is split by quote parity all the same; the
csv module may then read such a row differently from a single pass.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain, compress, filterfalse, islice
from operator import itemgetter
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from kinds.base import ByteSource, ChunkStopped, NonRetryableError, SourceReader, chunk_size_bytes, require_source

NAME = "csv-report"

ROWS_PER_STOP_CHECK = 4096
"""Rows per batch: the hot loop works column-wise on a batch and calls `should_stop()` between batches."""

_BUFFERED_ROWS_LIMIT = 1 << 12
"""Rows of metric values buffered before they are folded into exact partials: small enough to stay in cache."""

_DECODE_BUFFER_BYTES = 1 << 20

_NUMBER = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
"""A decimal number: sign, digits with optional fraction or a fraction alone, exponent, spaces around."""

# Cheap pre-check: a cell that starts and ends like a plain number and is ASCII without `_` is a decimal
# number exactly when float() accepts it (float's extras - inf, nan, `_`, Unicode digits, other
# whitespace - all fail the pre-check and go through the regex).
_FIRST_CHARS = frozenset("0123456789+-.")
_LAST_CHARS = frozenset("0123456789.")

_FLOAT_EXTRAS = ("_", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")
"""What float() accepts beyond a decimal number in ASCII, apart from inf and nan: `_` and other whitespace."""

_GROUP_MASKS = [bytes(int(code == group) for code in range(256)) for group in range(16)]
"""bytes.translate tables: group code -> 1, any other code -> 0 (batches with up to 16 groups)."""

_EXACT_INTEGER_SUM_LIMIT = float(2**53)

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
            total = math.fsum(chain(values, [-p for p in partials]))
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
        low, high = min(values), max(values)
        if max(-low, high) * len(values) < _EXACT_INTEGER_SUM_LIMIT and all(map(float.is_integer, values)):
            # Integers whose running sums stay below 2**53 add exactly in plain floating point.
            self.partials = exact_partials([*self.partials, sum(values)])
        else:
            self.partials = exact_partials([*self.partials, *values] if self.partials else values)
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)

    def to_partial(self) -> dict[str, Any]:
        return {"count": self.count, "partials": self.partials, "min": self.minimum, "max": self.maximum}


def _text_lines(source: ByteSource, start: int, end: int) -> io.TextIOWrapper:
    # newline="" keeps line ends as they are, which the csv module needs for quoted newlines; only a
    # range starting at 0 may begin with a BOM.
    raw = io.BufferedReader(SourceReader(source, start, end - start), buffer_size=_DECODE_BUFFER_BYTES)
    text = io.TextIOWrapper(raw, encoding="utf-8-sig" if start == 0 else "utf-8", errors="strict", newline="")
    text._CHUNK_SIZE = _DECODE_BUFFER_BYTES  # type: ignore[attr-defined]  # larger decode steps: fewer calls
    return text


class _GcPause:
    """Pause the cyclic garbage collector while chunks are aggregated (re-entrant across threads).

    Batches of rows outlive the young generation, so the collector would keep scanning them (a quarter of
    the run time); the loop makes no reference cycles. The collector is back on when the last chunk ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._was_enabled:
                    gc.enable()


_gc_paused = _GcPause()


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


def _header_end(source: ByteSource) -> int:
    """Offset just after the header row (the first row that is not an empty line)."""
    length = 64 * 1024
    while True:
        data = source.read(0, min(length, source.size))
        complete = len(data) >= source.size
        position = segment = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        odd_quotes = 0
        while (newline := data.find(b"\n", position)) >= 0:
            odd_quotes ^= data.count(b'"', position, newline) & 1
            position = newline + 1
            if not odd_quotes:
                if data[segment:position].strip(b"\r\n"):
                    return position
                segment = position
        if complete:
            return source.size  # the header is the last line
        length *= 4


def _row_boundaries(source: ByteSource, chunk_bytes: int, first_target: int) -> list[int]:
    """Chunk ends: the first row boundary past each target, the next target `chunk_bytes` further on.

    Checks that the input is UTF-8 on the way.
    """
    size = source.size
    boundaries: list[int] = []
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    next_target = first_target
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
        # The first chunk holds the header row (and any empty lines before it) plus data rows.
        first_target = max(chunk_bytes, _header_end(source) - 1)
        edges = [0, *_row_boundaries(source, chunk_bytes, first_target), source.size]
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
            with _gc_paused(), _text_lines(source, start, end) as text:
                batches = _without_header(_row_batches(text)) if start == 0 else _row_batches(text)
                row_count, counts, totals = _aggregate(batches, group_index, metric_indices, should_stop)
        except (UnicodeDecodeError, csv.Error) as error:
            raise _invalid_input(error) from None
        return {
            "index": chunk.get("index"),
            "rows": row_count,
            "groups": {
                value: {"count": count, "metrics": [t.to_partial() for t in totals[value]]}
                for value, count in counts.items()
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


def _row_batches(text: io.TextIOWrapper) -> Iterator[list[list[str]]]:
    """The rows of a text (empty lines included, as []) in batches of `ROWS_PER_STOP_CHECK`."""
    rows = csv.reader(text)
    while batch := list(islice(rows, ROWS_PER_STOP_CHECK)):
        yield batch


def _without_header(batches: Iterator[list[list[str]]]) -> Iterator[list[list[str]]]:
    """The batches without the first row that is not an empty line (the header)."""
    for batch in batches:
        for position, row in enumerate(batch):
            if row:
                yield batch[position + 1 :]
                yield from batches
                return


def _numbers(cells: list[str]) -> tuple[list[float], bool]:
    """The value of each cell, NaN where it is not a decimal number; and whether there may be such a NaN."""
    nan = math.nan
    values: list[float] = []
    remaining = iter(cells)
    failed = False
    while True:  # float() in C over the column; a cell it refuses becomes NaN and the map goes on after it
        try:
            values.extend(map(float, remaining))
            break
        except ValueError:
            values.append(nan)
            failed = True
    joined = "".join(cells)
    if joined.isascii() and not any(extra in joined for extra in _FLOAT_EXTRAS):
        # What float() accepted is a decimal number, except "nan" (a NaN already) and "inf" or an overflowing
        # exponent (an infinity).
        may_have_nan = failed or "n" in joined or "N" in joined
        if may_have_nan:
            if math.inf not in values and -math.inf not in values:
                return values, True
        elif (total := sum(values)) - total == 0.0:
            return values, False
    return [nan if (value := parse_decimal(cell)) is None else value for cell in cells], True


def _fold(
    pending: dict[str, list[list[float]]], totals: dict[str, list[_MetricTotals]], keys: Iterable[str], nans: bool
) -> None:
    """Fold the buffered metric values of these groups into their totals."""
    for key in keys:
        columns = pending[key]
        for values, metric_totals in zip(columns, totals[key], strict=True):
            if values:
                metric_totals.add(list(filterfalse(math.isnan, values)) if nans else values)
        pending[key] = [[] for _ in columns]


def _aggregate(
    batches: Iterator[list[list[str]]], group_index: int, metric_indices: list[int], should_stop: Callable[[], bool]
) -> tuple[int, dict[str, int], dict[str, list[_MetricTotals]]]:
    """Row count, rows per group and metric totals per group.

    The hot loop works on batches of rows column by column with C-speed builtins (itemgetter, map, float,
    compress); Python code runs per batch and per group, plus one append per row when a batch has many
    groups. Buffers hold floats only, which the garbage collector does not track.
    """
    width = max([group_index, *metric_indices]) + 1
    key_of = itemgetter(group_index)
    cells_of = [itemgetter(i) for i in metric_indices]
    counts: dict[str, int] = {}
    totals: dict[str, list[_MetricTotals]] = {}
    pending: dict[str, list[list[float]]] = {}  # per group, per metric: values waiting to be folded
    row_count = 0
    buffered_rows = 0
    nans = False
    touched: set[str] = set()  # groups with buffered values
    for batch in batches:
        if should_stop():
            raise ChunkStopped(f"stopped after {row_count} rows")
        try:
            keys = list(map(key_of, batch))
            cells = [list(map(cell_of, batch)) for cell_of in cells_of]
        except IndexError:
            # Empty lines are not rows; a short row's missing cells are empty.
            batch = [row if len(row) >= width else row + [""] * (width - len(row)) for row in batch if row]
            keys = list(map(key_of, batch))
            cells = [list(map(cell_of, batch)) for cell_of in cells_of]
        if not keys:
            continue
        row_count += len(keys)
        distinct = set(keys)
        for key in distinct:
            if key not in counts:
                counts[key] = 0
                pending[key] = [[] for _ in cells_of]
                totals[key] = [_MetricTotals() for _ in cells_of]
        columns: list[list[float]] = []
        for column_cells in cells:
            values, has_nan = _numbers(column_cells)
            nans = nans or has_nan
            columns.append(values)
        if len(distinct) == 1:
            counts[keys[0]] += len(keys)
            for buffer, values in zip(pending[keys[0]], columns, strict=True):
                buffer.extend(values)
        elif len(distinct) <= len(_GROUP_MASKS):
            # One byte per row says its group; bytes.translate turns it into a 0/1 mask per group (C speed).
            codes = {key: code for code, key in enumerate(distinct)}
            rows_group = bytes(map(codes.__getitem__, keys))
            for key, code in codes.items():
                counts[key] += rows_group.count(code)
                if columns:
                    mask = rows_group.translate(_GROUP_MASKS[code])
                    for buffer, values in zip(pending[key], columns, strict=True):
                        buffer.extend(compress(values, mask))
        elif not columns:
            for key in keys:
                counts[key] += 1
        else:
            rows_of: dict[str, list[int]] = {key: [] for key in distinct}
            add_row = {key: positions.append for key, positions in rows_of.items()}
            for position, key in enumerate(keys):
                add_row[key](position)
            for key, positions in rows_of.items():
                counts[key] += len(positions)
                for buffer, values in zip(pending[key], columns, strict=True):
                    buffer.extend(map(values.__getitem__, positions))
        if columns:
            touched |= distinct
            buffered_rows += len(keys)
            if buffered_rows >= _BUFFERED_ROWS_LIMIT + 64 * len(touched):  # fold a few dozen values at once
                _fold(pending, totals, touched, nans)
                buffered_rows, nans, touched = 0, False, set()
    _fold(pending, totals, touched, nans)
    return row_count, counts, totals


def single_pass_report(source: ByteSource, options: Mapping[str, Any]) -> dict[str, Any]:
    """The reference: the report of one plain row-by-row pass of the csv module over the whole input.

    Shares only the number rule and the exact summation with the chunked path (no boundaries, no batches,
    no column-wise grouping), so tests can compare the two on any input.
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
                    if (value := parse_decimal(cell)) is not None:
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
