"""`csv-report`: per-group counts and metric statistics of an RFC 4180 CSV, in chunks split on row boundaries.

Chunks are byte ranges ending just after a line end that lies outside quoted fields. Outside a quoted field
the number of `"` seen since the start of the file is even (an escaped quote `""` adds two). Planning does not
read the input to count them: it reads a small window at each chunk's target offset and guesses the quote
state there from the quotes in the window (`_quoted_at`). Each chunk counts the quotes of its range as it
reads it, so once all chunks are done their parities, summed in order, prove every boundary right or show
it inside a quoted field; `CsvReport.reconcile` then moves such a boundary to the first line end outside
quotes and reads the chunks beside it again. A wrong guess costs time, never a wrong report. Each chunk is
aggregated column-wise by Arrow's CSV reader (`kinds.csv_columns`); sums are carried as exact integers
(`kinds.exact_sum`) so that every chunking gives the identical, correctly rounded total.

The tests hold the chunked path to a reference, one row-by-row pass of the csv module (tests/kinds/reference.py).
Input that is not RFC 4180 (a `"` inside an unquoted field, a quote left open at the end) is split
by quote parity all the same, and Arrow may then read such a row differently from the csv module.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import re
import sys
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from kinds.base import (
    ByteSource,
    ChunkStopped,
    NonRetryableError,
    chunk_size_bytes,
    map_large_allocations,
    require_source,
)
from kinds.exact_sum import from_json, to_float, units_of

# Planning and chunks stream the input in blocks of megabytes: let the C heap give each back when freed.
map_large_allocations()

NAME = "csv-report"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

MAX_HEADER_BYTES = 64 * 1024 * 1024
"""The header row is read whole, in memory: a longer one is refused (cells of data rows have no such limit)."""

_NUMBER = re.compile(r"[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
"""A decimal number: sign, digits with optional fraction or a fraction alone, exponent, spaces around."""

# Cheap pre-check: a cell that starts and ends like a plain number and is ASCII without `_` is a decimal
# number exactly when float() accepts it (float's extras - inf, nan, `_`, Unicode digits, other
# whitespace - all fail the pre-check and go through the regex).
_FIRST_CHARS = frozenset("0123456789+-.")
_LAST_CHARS = frozenset("0123456789.")

_STATS = ("count", "sum", "min", "max", "mean")

WORK_BYTES_PER_SECOND = 20_000_000
"""What one worker thread reports per second, measured on this project's 2-core machine (16 MB in 0.8 s,
two metrics with exact sums); an estimate for running small jobs whole, on the slow side."""

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class CsvReportOptions(BaseModel):
    """Options of `csv-report`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    group_by: ColumnName = Field(description="Column whose values define the groups.")
    metrics: list[ColumnName] = Field(
        default_factory=list, max_length=100, description="Numeric columns to summarize per group."
    )

    @field_validator("metrics", mode="before", json_schema_input_type=list[ColumnName] | str)
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
    return _read_header_row(source)[0]


def _read_header_row(source: ByteSource) -> tuple[list[str], int]:
    """The header's cells and the offset just after it."""
    if source.size == 0:
        raise NonRetryableError("invalid_input", "the input is empty")
    data = _header_bytes(source)
    # The csv module refuses cells over 128 KiB by default; this read is bounded by MAX_HEADER_BYTES instead.
    csv.field_size_limit(sys.maxsize)
    try:
        # newline="" keeps line ends as they are, which the csv module needs for quoted newlines.
        header = _first_row(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as error:
        raise _invalid_input(error) from None
    if header is None:
        raise NonRetryableError("invalid_input", "the input has no header row")
    return header, len(data)


_LINE_END = re.compile(rb"\r\n?|\n")
"""A line end as the csv module reads them: CRLF, CR or LF (mixed in one file too)."""

_CR, _LF = 0x0D, 0x0A


def _header_end(source: ByteSource) -> int:
    """Offset just after the header row (the first row that is not an empty line)."""
    return len(_header_bytes(source))


def _header_bytes(source: ByteSource) -> bytes:
    """The input up to just after the header row (the first row that is not an empty line).

    The header is read whole, in memory: one longer than MAX_HEADER_BYTES is refused.
    """
    length = 64 * 1024
    limit = MAX_HEADER_BYTES
    while True:
        data = source.read(0, min(length, source.size))
        complete = len(data) >= source.size
        position = segment = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        odd_quotes = 0
        for line_end in _LINE_END.finditer(data, position):
            if line_end.end() == len(data) and data[-1] == _CR and not complete:
                break  # a CR at the end of what was read may be the first half of a CRLF: read more
            odd_quotes ^= data.count(b'"', position, line_end.start()) & 1
            position = line_end.end()
            if not odd_quotes:
                if data[segment:position].strip(b"\r\n"):
                    return data[:position]
                segment = position
        if complete:
            return data  # the header is the last line
        if len(data) > limit:
            raise NonRetryableError(
                "invalid_input",
                f"the header row is longer than {limit // (1024 * 1024)} MiB (with blank lines before it)",
            )
        length = min(length * 4, limit + 1)


GUESS_WINDOW_BYTES = 64 * 1024
"""What planning reads at each chunk's target offset to place the chunk's end (one ranged read each)."""

_QUOTE_RUN = re.compile(rb'"+')
_FIELD_ENDS = b",\r\n"
_QUOTE = 0x22


def _quoted_at(window: bytes) -> bool:
    """A guess whether `window[1]` lies inside a quoted field (`window[0]` is the byte before it).

    RFC 4180 quotes whole fields and doubles a quote inside one: an opening quote follows a comma or a line
    end and a closing quote is followed by one. So a run of an odd number of quotes followed by another byte
    opens a field (it is outside quotes before the run), and one that follows another byte closes a field
    (inside before it); the parity of the quotes between `window[1]` and the first such run gives the state at
    `window[1]`. A window without one is guessed outside. A wrong guess (input that is not RFC 4180, a
    quoted field longer than the window) costs time, not correctness: `CsvReport.reconcile` checks it.
    """
    odd = 0
    for run in _QUOTE_RUN.finditer(window, 1):
        start, end = run.span()
        if (end - start) & 1 and not (start == 1 and window[0] == _QUOTE):  # a run cut by the window: unknown
            if end < len(window) and window[end] not in _FIELD_ENDS:
                return bool(odd)
            if window[start - 1] not in _FIELD_ENDS:
                return not odd
        odd ^= (end - start) & 1
    return False


def _row_end_after(source: ByteSource, offset: int, odd_quotes: int, head: bytes = b"") -> int:
    """Offset just after the first line end at or after `offset` that lies outside quotes (the size if none).

    `odd_quotes`: the parity of the quotes before `offset`, known or guessed. `head`: bytes from `offset` on
    already read. A line end is a LF, a CR or a CRLF, and a boundary never falls between a CR and its LF.
    """
    size = source.size
    if not head and offset < size:
        head = source.read(offset, GUESS_WINDOW_BYTES)
    blocks = itertools.chain([head], source.stream(offset + len(head), size - offset - len(head)))
    position = offset
    after_cr = False
    for block in blocks:
        if not block:
            continue
        if after_cr:
            return position + (1 if block[0] == _LF else 0)
        i = 0
        for line_end in _LINE_END.finditer(block):
            odd_quotes ^= block.count(b'"', i, line_end.start()) & 1
            i = line_end.end()
            if odd_quotes:
                continue
            if i == len(block) and block[i - 1] == _CR:
                after_cr = True  # perhaps the first half of a CRLF: the next block tells
                break
            return position + i
        else:
            odd_quotes ^= block.count(b'"', i) & 1
        position += len(block)
    return size


WINDOW_READS_IN_FLIGHT = 8
"""Windows read at once: a 1 GB input has 128 of them, and one after another they were half a second."""


def _guessed_boundaries(source: ByteSource, chunk_bytes: int, first_target: int) -> list[int]:
    """Chunk ends: the first line end outside quotes (as guessed from a window) past each target, the targets
    `chunk_bytes` apart. Reads a window per chunk, not the input, several at once."""

    def boundary_after(target: int) -> int:
        window = source.read(target - 1, GUESS_WINDOW_BYTES + 1)
        return _row_end_after(source, target, int(_quoted_at(window)), window[1:])

    targets = range(first_target, source.size, chunk_bytes)
    if len(targets) <= 1:
        found = [boundary_after(target) for target in targets]
    else:
        found = []
        with ThreadPoolExecutor(max_workers=min(WINDOW_READS_IN_FLIGHT, len(targets))) as pool:
            # A slice at a time: a read that fails or hears a stop (planning.StoppableSource) ends the
            # planning after the reads in flight, not after all of them.
            for first in range(0, len(targets), WINDOW_READS_IN_FLIGHT):
                found.extend(pool.map(boundary_after, targets[first : first + WINDOW_READS_IN_FLIGHT]))
    # Targets in one long row find the same boundary; the last row's end is the input's.
    return sorted({boundary for boundary in found if boundary < source.size})


def _quote_parity(source: ByteSource, start: int, end: int) -> int:
    """Parity of the quotes in [start, end)."""
    odd = 0
    for block in source.stream(start, end - start):
        odd ^= block.count(b'"') & 1
    return odd


class CsvReport:
    """The `csv-report` job kind."""

    name = NAME
    description = "Per-group row counts and count/sum/min/max/mean of numeric columns of an RFC 4180 CSV."
    requires_input = True
    input_content_types: tuple[str, ...] = ("text/csv",)
    options_model = CsvReportOptions
    input_model = None  # CSV comes as a raw body or an upload, never inside JSON
    render_formats: Mapping[str, str] = {"csv": CSV_MEDIA_TYPE}
    streams_chunks = True  # a chunk reads its range in pieces through Arrow's blocks; its partial is per group

    def parse_options(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validated options: `group_by` and `metrics` (a list, or a comma-separated string)."""
        return CsvReportOptions.model_validate(dict(raw)).model_dump()

    def validate_inline_input(self, data: Any) -> None:
        """CSV input comes as an uploaded blob or a raw body, never as JSON."""
        raise ValueError("csv-report takes its input as text/csv, not as a JSON `input`")

    def plan(
        self, source: ByteSource | None, options: dict[str, Any], target_chunk_bytes: int, max_chunks: int
    ) -> list[dict[str, Any]]:
        """Check the header and columns, then split the input at line ends guessed to be row boundaries.

        Reads the header and a window per chunk; the chunks check the input (UTF-8) and the boundaries
        (`reconcile`).
        """
        source = require_source(source)
        parsed = CsvReportOptions.model_validate(options)
        header, header_end = _read_header_row(source)
        group_index, metric_indices = _column_indices(header, parsed)
        chunk_bytes = chunk_size_bytes(source.size, target_chunk_bytes, max_chunks)
        # The first chunk holds the header row (and any empty lines before it) plus data rows.
        first_target = max(chunk_bytes, header_end - 1)
        edges = [0, *_guessed_boundaries(source, chunk_bytes, first_target), source.size]
        return [
            {
                "index": index,
                "start": start,
                "end": end,
                "columns": len(header),
                "group_index": group_index,
                "metric_indices": metric_indices,
                "guessed": True,  # its boundaries are checked by `reconcile`
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
        """Counts and metric partials of the rows in [start, end); the chunk at 0 skips the header.

        The partial carries the parity of the range's quotes (`quotes_odd`), and an error reading the range
        as CSV (`invalid`) instead of raising it: either may come from a boundary inside a quoted field,
        which `reconcile` finds and corrects before the error counts.
        """
        source = require_source(source)
        start, end = int(chunk["start"]), int(chunk["end"])
        group_index = int(chunk["group_index"])
        metric_indices = [int(i) for i in chunk["metric_indices"]]
        if should_stop():
            raise ChunkStopped(f"chunk {chunk.get('index')} stopped before it started")
        # Plans made before the header width was part of them read it here.
        columns = int(chunk["columns"]) if "columns" in chunk else len(_read_header(source))
        if start == 0:
            start = min(_header_end(source), end)
        # Arrow and numpy load with the first chunk, not with the app: Flex Consumption runs HTTP triggers on
        # instances of their own, which never process a chunk.
        from kinds.csv_columns import InvalidCsv, RowRange, aggregate_range

        rows = RowRange(start, end, columns, group_index, metric_indices)
        try:
            totals = aggregate_range(source, rows, should_stop)
        except InvalidCsv as error:
            odd = _quote_parity(source, start, end)
            return {"index": chunk.get("index"), "rows": 0, "groups": {}, "quotes_odd": odd, "invalid": error.message}
        return {
            "index": chunk.get("index"),
            "rows": totals.rows,
            "groups": totals.groups(),
            "quotes_odd": totals.quotes_odd,
        }

    def reconcile(
        self,
        source: ByteSource | None,
        chunks: Sequence[dict[str, Any]],
        partials: Iterable[dict[str, Any]],
        options: dict[str, Any],
        should_stop: Callable[[], bool],
    ) -> Iterator[dict[str, Any]]:
        """The partials in order, each boundary proved right by the quote parities, or moved and its chunks redone.

        The parity of the quotes before a boundary is the sum of the parities of the chunks before it. A
        boundary at an odd parity lies inside a quoted field: it moves to the first line end outside quotes
        past it, and the chunks on either side are read again over their corrected ranges (one partial is
        held at a time). An error a chunk held back (`invalid`) is raised once its range is known right.
        A chunk of an older plan (exact boundaries, no `guessed` mark) is taken as it is.
        """
        odd = 0  # parity of the quotes before the current chunk's planned start
        moved_start: int | None = None  # the current chunk's corrected start, when its boundary moved
        last = len(chunks) - 1
        for index, (chunk, partial) in enumerate(zip(chunks, partials, strict=True)):
            if "quotes_odd" not in partial:
                if not chunk.get("guessed"):
                    yield partial  # an exact plan's chunk (planned before boundaries were guessed)
                    continue
                # Processed by a version that did not count quotes (an instance not yet updated): count them.
                partial = {**partial, "quotes_odd": _quote_parity(require_source(source), chunk["start"], chunk["end"])}
            odd ^= int(partial["quotes_odd"])
            end_moves = bool(odd) and index < last
            if moved_start is not None or end_moves:
                start = int(chunk["start"]) if moved_start is None else moved_start
                end = _row_end_after(require_source(source), int(chunk["end"]), 1) if end_moves else int(chunk["end"])
                end = max(start, end)
                partial = self.process_chunk(source, {**chunk, "start": start, "end": end}, options, 1, should_stop)
                moved_start = end if end_moves else None
            if "invalid" in partial:
                raise NonRetryableError("invalid_input", str(partial["invalid"]))
            yield partial

    def work_seconds(self, input_size: int, chunks: Sequence[dict[str, Any]], options: dict[str, Any]) -> float | None:
        """Proportional to the input's size."""
        return input_size / WORK_BYTES_PER_SECOND

    def merge(self, partials: Iterable[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """The report: row count and, per group, its row count and per-metric count/sum/min/max/mean."""
        parsed = CsvReportOptions.model_validate(options)
        rows = 0
        counts: dict[str, int] = {}
        metrics: dict[str, list[tuple[int, int, float | None, float | None]]] = {}
        for partial in partials:
            rows += int(partial["rows"])
            for value, group in partial["groups"].items():
                counts[value] = counts.get(value, 0) + int(group["count"])
                per_metric = metrics.setdefault(value, [(0, 0, None, None) for _ in parsed.metrics])
                for j, part in enumerate(group["metrics"]):
                    count, units, low, high = per_metric[j]
                    per_metric[j] = (
                        count + int(part["count"]),
                        units + _partial_units(part),
                        _pick(min, low, part["min"]),
                        _pick(max, high, part["max"]),
                    )
        groups: dict[str, Any] = {}
        for value in sorted(counts):
            groups[value] = {
                "count": counts[value],
                "metrics": {
                    column: _statistics(count, units, low, high)
                    for column, (count, units, low, high) in zip(parsed.metrics, metrics[value], strict=True)
                },
            }
        return {"rows": rows, "group_by": parsed.group_by, "groups": groups}

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """Rows, group count and the largest groups' row counts (keys shown by `display_key`), under 2 KB."""
        groups: dict[str, Any] = result.get("groups", {})
        largest = sorted(groups.items(), key=lambda item: (-int(item[1]["count"]), item[0]))
        summary: dict[str, Any] = {
            "rows": result.get("rows", 0),
            "group_by": result.get("group_by"),
            "groups": len(groups),
            "metrics": list(next(iter(groups.values()))["metrics"]) if groups else [],
            "largest_groups": {},
        }
        shown: dict[str, int] = summary["largest_groups"]
        for value, group in largest[:10]:
            key = display_key(value, shown)
            shown[key] = group["count"]
            if len(json.dumps(summary)) > 1800:
                del shown[key]
                break
        if len(json.dumps(summary)) > 1800:
            summary["metrics"] = summary["metrics"][:5]
            summary["group_by"] = str(summary["group_by"])[:64]
        return summary

    def render(self, result: dict[str, Any], fmt: str) -> tuple[bytes, str] | None:
        """CSV: group, count, then count/sum/min/max/mean per metric (empty cells for null).

        Text from the input (group values, column names) is escaped against formula injection
        (`spreadsheet_text`); the counts and statistics are numbers and written as such.
        """
        if fmt != "csv":
            return None
        groups: dict[str, Any] = result.get("groups", {})
        metric_names = list(next(iter(groups.values()))["metrics"]) if groups else []
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        titles = (f"{m}_{stat}" for m in metric_names for stat in _STATS)
        writer.writerow(["group", "count", *map(spreadsheet_text, titles)])
        for value, group in groups.items():
            cells: list[Any] = [spreadsheet_text(value), group["count"]]
            for m in metric_names:
                stats = group["metrics"][m]
                cells.extend("" if stats[stat] is None else repr(stats[stat]) for stat in _STATS)
            writer.writerow(cells)
        return out.getvalue().encode("utf-8"), CSV_MEDIA_TYPE


DISPLAY_KEY_CHARS = 64
"""Longest group value `largest_groups` shows whole."""


def display_key(value: str, taken: Container[str]) -> str:
    """How `largest_groups` shows a group value: distinct from every key in `taken`, so groups never merge.

    A value of up to 64 characters is shown as it is. A longer one is shown as its first characters, "…" and
    hex digits of its SHA-256, 64 characters in all (more digits, and finally the whole value, if that is
    taken), so values that differ only after their first 64 characters stay apart.
    """
    if len(value) <= DISPLAY_KEY_CHARS and value not in taken:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    for digits in (8, 16, 32):
        key = f"{value[: DISPLAY_KEY_CHARS - 1 - digits]}\u2026{digest[:digits]}"
        if key not in taken:
            return key
    return value  # only if SHA-256 prefixes collide: a value over 64 characters is no other key


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""Cell starts that make spreadsheets read a cell as a formula (OWASP, CSV Injection)."""

_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def spreadsheet_text(cell: str) -> str:
    """A text cell safe to open in a spreadsheet: prefixed with `'` if it starts like a formula.

    As OWASP recommends, a cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading single quote, which
    spreadsheets show as text. A cell that is a plain decimal number (`-3.5`, `+1e3`) cannot run anything and
    stays as it is, so numeric group values remain numbers. The JSON result always holds the exact values.
    """
    if cell.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _pick(choose: Callable[[float, float], float], current: float | None, new: float | None) -> float | None:
    if current is None:
        return new
    if new is None:
        return current
    return choose(current, new)


def _partial_units(part: dict[str, Any]) -> int:
    if "exact_sum" in part:
        return from_json(part["exact_sum"])
    # Partials written before sums were exact integers carried non-overlapping floats.
    return sum(map(units_of, part.get("partials", [])))


def _statistics(count: int, units: int, low: float | None, high: float | None) -> dict[str, Any]:
    """The statistics of one metric; the sum is rounded once, here, from the exact total."""
    try:
        total = to_float(units)
    except OverflowError:
        raise NonRetryableError("invalid_input", "a metric sum exceeds the range of a float") from None
    return {
        "count": count,
        "sum": total,
        "min": low if count else None,
        "max": high if count else None,
        "mean": total / count if count else None,
    }


KIND = CsvReport()
