"""Column-wise aggregation of a CSV byte range with Apache Arrow's CSV reader (the `csv-report` hot path).

Arrow parses RFC 4180 in C++ a block at a time and hands over columns, so a chunk costs a few numpy and
Arrow compute calls per block instead of Python code per row: about five times faster per core than the
`csv` module. It reads the rows exactly like the `csv` module does for RFC 4180 input (quoted commas,
quotes and newlines, CR, LF or CRLF, empty lines skipped), with two exceptions that are handled here:
rows with more or fewer cells than the header go to `invalid_row_handler`, which keeps their text so the
`csv` module reads them (a short row's missing cells are empty, extra cells are ignored); and Arrow does
not check UTF-8 in the columns it skips, so the bytes are checked on their way in.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kinds.base import ArrowBlockFile, ByteSource, ChunkStopped, NonRetryableError, Utf8Check
from kinds.exact_sum import to_json
from kinds.group_sums import GroupSums

BLOCK_BYTES = 1024 * 1024
"""Bytes Arrow parses at a time; `should_stop()` is checked between blocks (a few ms apart).

What a chunk holds grows with it (the block, its columns, the numpy arrays of a block's rows: about 10x the
block), and 8 chunks run at once per instance: 1 MiB blocks hold about a third of what 4 MiB blocks did,
at the same speed (docs/benchmarks.md, "csv-report memory and speed with the shipped settings")."""

DECIMAL_PATTERN = r"^[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*$"
"""A decimal number (RE2 syntax): sign, digits with optional fraction or a fraction alone, exponent, spaces
around. RE2's `$` only matches at the very end, so a trailing newline is not a number."""

_STRADDLING = "straddl"
"""Arrow's error when a row is longer than a block: read again with larger blocks."""


class InvalidCsv(NonRetryableError):
    """Arrow could not read a range as CSV (an unterminated quote, say).

    Its own type because a range that starts inside a quoted field fails the same way: csv-report holds the
    error until it knows that the range's boundaries were right (`CsvReport.reconcile`).
    """


def decimal_values(cells: pa.Array[Any]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The value of each cell and whether it counts: a decimal number that is finite (no overflow to inf).

    The values of cells that do not count are unspecified.
    """
    plain = _plain_cells(cells)
    if plain is None or not plain.any():  # no cast of a column without a number in it
        return _matched_values(cells)
    # Arrow's cast does not parse null slots: marking the other cells null skips them at no cost.
    buffers: list[Any] = cells.buffers()
    # The validity bitmap counts from the array's offset, like its offsets buffer.
    bitmap = np.packbits(np.concatenate([np.zeros(cells.offset, np.bool_), plain]), bitorder="little")
    validity = pa.py_buffer(bitmap.tobytes())  # an eighth of a byte per cell
    masked = pa.Array.from_buffers(pa.string(), len(cells), [validity, buffers[1], buffers[2]], offset=cells.offset)
    try:
        parsed = pc.cast(masked, pa.float64())
    except pa.ArrowInvalid:  # a plain cell that is no number, like "1-2" or "e5": the regex decides
        return _matched_values(cells)
    parsed_buffers: list[Any] = parsed.buffers()
    values = np.frombuffer(parsed_buffers[1], np.float64, len(cells), parsed.offset * 8).copy()
    counts = plain & np.isfinite(values)
    others = np.flatnonzero(~plain)
    if len(others):
        values[others], counts[others] = _matched_values(cells.take(others))
    return values, counts


def _plain_cells(cells: pa.Array[Any]) -> npt.NDArray[np.bool_] | None:
    """Which cells Arrow's cast can be trusted with alone (None: not a `string` array without nulls).

    A plain cell holds only the bytes 0-9 + - . e E and ends in a digit or in a dot after a digit. Among such
    cells, Arrow's parser (fast_float, whole cell) accepts exactly those that match DECIMAL_PATTERN: "inf",
    "nan" and blanks have other bytes, and the ending rule sends the common non-numbers "-", "." and "1e"
    to the regex too, so the cast of the rest rarely fails (tests/kinds/test_csv_columns.py proves it).
    Checking bytes with numpy costs a tenth of the regex, which cost as much as parsing the CSV.
    """
    if cells.type != pa.string() or cells.null_count:
        return None
    count = len(cells)
    buffers: list[Any] = cells.buffers()
    offsets_buffer, data_buffer = buffers[1], buffers[2]
    offsets = np.frombuffer(offsets_buffer, np.int32, count + 1, cells.offset * 4)
    first, end = int(offsets[0]), int(offsets[-1])
    if data_buffer is None or end == first:  # no cells, or only empty ones
        return np.zeros(count, np.bool_)
    data = np.frombuffer(data_buffer, np.uint8, end)
    text = data[first:]
    # One pass of byte comparisons: "+" 43, "," 44, "-" 45, "." 46, "/" 47, "0".."9" 48..57, "E" 69, "e" 101.
    shifted = text - np.uint8(43)
    other = shifted > 14
    other |= shifted == 1
    other |= shifted == 4
    np.bitwise_or(text, np.uint8(32), out=shifted)
    other ^= shifted == 101
    plain = np.ones(count, np.bool_)
    plain[np.searchsorted(offsets, np.flatnonzero(other) + first, "right") - 1] = False
    ends = offsets[1:]
    lengths = ends - offsets[:-1]
    last = np.take(data, ends - 1, mode="clip")  # an empty cell's "last byte" is its neighbour's: no matter
    good_end = last - np.uint8(48) <= 9
    dots = np.flatnonzero((last == 46) & (lengths > 1))
    if len(dots):
        good_end[dots] = np.take(data, ends[dots] - 2) - np.uint8(48) <= 9
    plain &= good_end
    plain &= lengths > 0
    return plain


def _matched_values(cells: pa.Array[Any]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """`decimal_values` by the regex: any cells, blanks around a number allowed."""
    is_decimal = pc.match_substring_regex(cells, DECIMAL_PATTERN)
    # Non-numbers become "0" so the cast cannot fail; Arrow's parser rounds correctly, like float().
    text = pc.ascii_trim(pc.if_else(is_decimal, cells, "0"), " \t")
    values: npt.NDArray[np.float64] = pc.cast(text, pa.float64()).to_numpy()
    counts: npt.NDArray[np.bool_] = is_decimal.to_numpy(zero_copy_only=False) & np.isfinite(values)
    return values, counts


@dataclass
class MetricTotals:
    """Count, exact sums, min and max of one metric per group (arrays indexed by group number)."""

    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    minimums: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    maximums: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    sums: GroupSums = field(default_factory=GroupSums)

    def grow(self, size: int) -> None:
        """Make room for groups numbered up to `size` - 1 (new groups start empty)."""
        extra = size - len(self.counts)
        if extra > 0:
            self.counts = np.concatenate([self.counts, np.zeros(extra, np.int64)])
            self.minimums = np.concatenate([self.minimums, np.full(extra, np.inf)])
            self.maximums = np.concatenate([self.maximums, np.full(extra, -np.inf)])

    def add(self, groups: npt.NDArray[np.int64], cells: pa.Array[Any]) -> None:
        """Add the cells that are decimal numbers to the totals of their rows' groups."""
        values, counted = decimal_values(cells)
        if not counted.all():
            groups, values = groups[counted], values[counted]
        if len(values) == 0:
            return
        self.counts += np.bincount(groups, minlength=len(self.counts))
        np.minimum.at(self.minimums, groups, values)
        np.maximum.at(self.maximums, groups, values)
        self.sums.add(groups, values)

    def partial(self, group: int) -> dict[str, Any]:
        """The JSON-native partial of one group (what `CsvReport.merge` reads)."""
        count = int(self.counts[group])
        if count == 0:
            return {"count": 0, "exact_sum": to_json(0), "min": None, "max": None}
        return {
            "count": count,
            "exact_sum": to_json(self.sums.units(group)),
            "min": float(self.minimums[group]),
            "max": float(self.maximums[group]),
        }


@dataclass
class RangeTotals:
    """Rows, rows per group and metric totals of a byte range; groups are numbered as they first appear."""

    metric_count: int
    rows: int = 0
    quotes_odd: int = 0  # parity of the `"` bytes of the whole range, once it was read to its end
    keys: list[str] = field(default_factory=list)
    numbers: dict[str, int] = field(default_factory=dict)  # group value -> group number
    counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    metrics: list[MetricTotals] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = [MetricTotals() for _ in range(self.metric_count)]

    def add(self, keys: pa.Array[Any], metric_cells: list[pa.Array[Any]]) -> None:
        """Add rows given column-wise: their group values and their cells of each metric."""
        if len(keys) == 0:
            return
        encoded: Any = pc.dictionary_encode(keys)  # a DictionaryArray (the stubs say otherwise)
        numbers = self.numbers
        lookup = np.fromiter(
            (numbers.setdefault(value, len(numbers)) for value in encoded.dictionary.to_pylist()),
            dtype=np.int64,
            count=len(encoded.dictionary),
        )
        groups = lookup[encoded.indices.to_numpy(zero_copy_only=False)]
        if len(numbers) > len(self.keys):
            self.keys = list(numbers)
            self.counts = np.concatenate([self.counts, np.zeros(len(numbers) - len(self.counts), np.int64)])
        self.rows += len(keys)
        self.counts += np.bincount(groups, minlength=len(self.counts))
        for totals, cells in zip(self.metrics, metric_cells, strict=True):
            totals.grow(len(numbers))
            totals.add(groups, cells)

    def add_rows(self, rows: list[list[str]], group_index: int, metric_indices: list[int]) -> None:
        """Add rows given as lists of cells (the ragged ones): missing cells are empty."""

        def column(index: int) -> pa.Array[Any]:
            return pa.array([row[index] if index < len(row) else "" for row in rows], pa.string())

        self.add(column(group_index), [column(index) for index in metric_indices])

    def groups(self) -> dict[str, dict[str, Any]]:
        """Per group value: its row count and a partial per metric."""
        return {
            key: {"count": int(self.counts[number]), "metrics": [m.partial(number) for m in self.metrics]}
            for number, key in enumerate(self.keys)
        }


@dataclass(frozen=True)
class RowRange:
    """Rows in the bytes [start, end) (on row boundaries, no header) and the columns a report reads."""

    start: int
    end: int
    columns: int  # cells in a full row: the header's width
    group_index: int
    metric_indices: list[int]


def aggregate_range(source: ByteSource, rows: RowRange, should_stop: Callable[[], bool]) -> RangeTotals:
    """Totals of the rows of a range of the source."""
    block_bytes = BLOCK_BYTES
    try:
        while True:
            try:
                return _aggregate(source, rows, should_stop, block_bytes)
            except pa.ArrowInvalid as error:
                if _STRADDLING in str(error) and block_bytes < rows.end - rows.start:
                    block_bytes *= 4  # a row longer than a block: start over with blocks that hold it
                    continue
                raise InvalidCsv("invalid_input", f"the input is not valid CSV: {error}") from None
    finally:
        release_free_memory()


def _chunk_memory_pool() -> pa.MemoryPool:
    """The Arrow pool chunks allocate from: jemalloc returning freed pages within 100 ms, else the C heap.

    Arrow's default (mimalloc in the Linux wheels) keeps freed segments per thread and `release_unused`
    gives back little of them: measured over 8 chunks on 4 threads, it peaked 60 MB higher than jemalloc
    with a decay time of 0 and kept 40 MB more afterwards, at the same speed. A decay of 0 returned every
    block's pages at once, and the next block faulted them in again: 100 ms keeps a block's worth for the
    next one, a fifth less CPU per chunk for about 10 MiB more at the peak per worker process (11 chunks
    of 8 MiB on 4 threads, `bench/csv_chunk_cpu.py`: 0.14 → 0.11 CPU-s per chunk, +52 → +62 MiB).
    """
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(100)
    except NotImplementedError:  # a build without jemalloc (ArrowNotImplementedError is one)
        return pa.system_memory_pool()
    return pool


# Process-wide: the compute functions a chunk calls allocate from the default pool too. Only chunks use
# Arrow in this app, and the pool is chosen once, when the first chunk imports this module.
pa.set_memory_pool(_chunk_memory_pool())


def release_free_memory() -> None:
    """Hand memory freed by a chunk back to the OS (Arrow's pool and the C heap).

    A chunk allocates and frees blocks of megabytes; allocators keep such memory for reuse, so a worker
    would otherwise sit at its peak between chunks, once per thread arena.
    """
    pa.default_memory_pool().release_unused()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    # libc.so.6 first: find_library runs `ldconfig -p` in a subprocess, a fork of the whole worker.
    for name in ("libc.so.6", None):
        try:
            library = ctypes.CDLL(name or ctypes.util.find_library("c") or "libc.so.6")
            trim: Callable[[int], int] = library.malloc_trim
            return trim
        except (OSError, AttributeError):  # not glibc: nothing to trim
            continue
    return None


_malloc_trim = _load_malloc_trim()


def _aggregate(source: ByteSource, rows: RowRange, should_stop: Callable[[], bool], block_bytes: int) -> RangeTotals:
    start, end, group_index, metric_indices = rows.start, rows.end, rows.group_index, rows.metric_indices
    totals = RangeTotals(len(metric_indices))
    if end <= start:
        return totals
    names = [f"c{i}" for i in range(rows.columns)]
    wanted = [group_index, *metric_indices]
    ragged: list[str] = []

    def keep_ragged_row(row: pacsv.InvalidRow) -> Literal["skip"]:
        ragged.append(row.text)
        return "skip"

    blocks = ArrowBlockFile(_checked_blocks(source, start, end, totals))
    reader = pacsv.open_csv(
        cast(IO[bytes], blocks),  # pyarrow reads any object with read(); its stubs ask for IO
        read_options=pacsv.ReadOptions(column_names=names, block_size=block_bytes, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=keep_ragged_row),
        convert_options=pacsv.ConvertOptions(
            include_columns=[names[i] for i in dict.fromkeys(wanted)],
            column_types={names[i]: pa.string() for i in wanted},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=False,  # every byte of the range is checked on its way in (_checked_blocks)
        ),
    )
    while True:
        if should_stop():
            raise ChunkStopped(f"stopped after {totals.rows} rows")
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        totals.add(batch.column(names[group_index]), [batch.column(names[i]) for i in metric_indices])
        if ragged:
            totals.add_rows(_read_rows(ragged), group_index, metric_indices)
            ragged.clear()
    if ragged:
        totals.add_rows(_read_rows(ragged), group_index, metric_indices)
    return totals


def _checked_blocks(source: ByteSource, start: int, end: int, totals: RangeTotals) -> Iterator[bytes]:
    """The range's blocks, checked as UTF-8 and their quotes counted on the way (into `totals.quotes_odd`)."""
    check = Utf8Check(start)
    odd = 0
    for block in source.stream(start, end - start):
        check.feed(block)
        odd ^= quote_parity(block)
        yield block
    check.finish()
    totals.quotes_odd = odd


PARITY_SLICE_BYTES = 256 * 1024
"""numpy compares a block's bytes a slice at a time: the slice and its mask stay in the CPU's cache."""


def quote_parity(block: bytes) -> int:
    """1 if `block` holds an odd number of `"` bytes, else 0: four times faster than `bytes.count`."""
    data = np.frombuffer(block, np.uint8)
    quotes = 0
    for start in range(0, len(data), PARITY_SLICE_BYTES):
        quotes += int(np.count_nonzero(data[start : start + PARITY_SLICE_BYTES] == ord('"')))
    return quotes & 1


def _read_rows(texts: list[str]) -> list[list[str]]:
    """The cells of rows Arrow set aside (their text without the line end), read by the csv module."""
    # The csv module refuses cells over 128 KiB by default; these rows are in memory already, and a cell as
    # large as a regular row's (which Arrow reads) must count the same.
    csv.field_size_limit(sys.maxsize)
    rows: list[list[str]] = []
    for text in texts:
        rows.extend(row for row in csv.reader(io.StringIO(text, newline="")) if row)
    return rows
