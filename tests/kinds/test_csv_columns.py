"""csv-report's column-wise number rule: the byte pre-check plus Arrow's cast count exactly what the regex does.

`decimal_values` hands Arrow's cast (fast_float, which also reads "inf", "nan" and "infinity") only the
cells `_plain_cells` calls plain, and the rest to the RE2 path. These tests prove, against the installed
pyarrow, that no plain cell is a number the pattern refuses, by enumerating every short string over the
bytes a plain cell may hold, and that the whole conversion follows the number rule of the issue
(`spec_number`, Python's own float() behind an independent regex) on any cells.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinds import csv_columns
from kinds.csv_columns import DECIMAL_PATTERN, PARITY_SLICE_BYTES, decimal_values, quote_parity
from tests.kinds.test_csv_report import spec_number

# Every byte class a plain cell can hold, one representative per role ("5" stands for any other digit).
PLAIN_ALPHABET = "05+-.eE"


def all_strings(alphabet: str, longest: int) -> list[str]:
    return ["".join(p) for size in range(longest + 1) for p in itertools.product(alphabet, repeat=size)]


def expected(cells: list[str] | list[str | None]) -> list[float | None]:
    return [None if cell is None else spec_number(cell) for cell in cells]


def converted(cells: pa.Array[Any]) -> list[float | None]:
    values, counted = decimal_values(cells)
    return [float(v) if c else None for v, c in zip(values, counted, strict=True)]


def bits(values: list[float | None]) -> list[int | None]:
    """Values compared bit for bit (-0.0 and 0.0 differ)."""
    return [None if v is None else int(np.float64(v).view(np.int64)) for v in values]


def test_no_plain_cell_is_a_number_the_pattern_refuses() -> None:
    cells = all_strings(PLAIN_ALPHABET, 6)  # 137,257 strings
    array = pa.array(cells, pa.string())
    plain = csv_columns._plain_cells(array)
    assert plain is not None
    plain_cells = array.filter(pa.array(plain))
    matches = pc.match_substring_regex(plain_cells, DECIMAL_PATTERN)
    numbers, others = plain_cells.filter(matches), plain_cells.filter(pc.invert(matches))
    assert len(numbers) > 2_000 and len(others) > 2_000  # the enumeration reaches the cells that matter
    # The cast reads every plain number at once (no fallback), to the value the rule gives ...
    parsed = pc.cast(numbers, pa.float64()).to_pylist()
    assert bits(parsed) == bits([float(cell or "") for cell in numbers.to_pylist()])
    # ... and refuses every plain cell the pattern refuses, so a cast that succeeds read only numbers.
    accepted = []
    for cell in others.to_pylist():
        try:
            pc.cast(pa.array([cell], pa.string()), pa.float64())
        except pa.ArrowInvalid:
            continue
        accepted.append(cell)
    assert accepted == []


def test_conversion_follows_the_rule_on_every_short_string() -> None:
    """All strings up to 4 long over the plain bytes, blanks, the letters of inf/nan and a non-ASCII digit."""
    cells = all_strings("0+-.eE \tinfa\u0661", 4)  # 24,041 strings in one column
    assert bits(converted(pa.array(cells, pa.string()))) == bits(expected(cells))


@pytest.mark.parametrize(
    "cell", ["inf", "-inf", "+inf", "Infinity", "-infinity", "INF", "nan", "NaN", "-nan", "1e999", "-1e999"]
)
def test_what_the_cast_alone_would_read_does_not_count(cell: str) -> None:
    cells = ["1.5", cell, "2"]
    assert converted(pa.array(cells, pa.string())) == [1.5, None, 2.0]


def test_plain_cells_that_are_no_number_fall_back_to_the_pattern() -> None:
    """Cells of plain bytes the cast refuses ("1-2", "e5", "1.2.3") make the whole column take the regex path."""
    cells = ["1", "1-2", "e5", ".e5", "1.2.3", "--1", "5", " 7 ", "0.25"]
    array = pa.array(cells, pa.string())
    plain = csv_columns._plain_cells(array)
    assert plain is not None and plain[1] and plain[2]  # the pre-check lets them through ...
    with pytest.raises(pa.ArrowInvalid):
        pc.cast(array.filter(pa.array(plain)), pa.float64())  # ... and the cast refuses them
    assert converted(array) == [1.0, None, None, None, None, None, 5.0, 7.0, 0.25]


@pytest.mark.parametrize(
    ("cell", "plain"),
    [("12", True), ("1.", True), ("-.5", True), ("1e5", True), ("", False), ("-", False), (".", False),
     ("-.", False), ("1e", False), ("1e+", False), ("+", False), (" 1", False), ("1 ", False), ("n/a", False),
     ("1,5", False), ("1/2", False), ("\u0661", False)],
)  # fmt: skip
def test_the_plain_pre_check(cell: str, plain: bool) -> None:
    """Blanks, letters and the endings that are never numbers ("-", ".", "1e") go to the regex per cell."""
    # Between two plain neighbours, so a byte of a neighbour cannot decide it.
    result = csv_columns._plain_cells(pa.array(["1", cell, "2"], pa.string()))
    assert result is not None
    assert result.tolist() == [True, plain, True]


def test_sliced_and_empty_columns() -> None:
    """An array that starts at an offset (a slice) reads its own cells; empty columns and cells count nothing."""
    whole = pa.array(["x", "1", " 2", "", "3.5", "n/a", "4"], pa.string())
    for start in range(len(whole)):
        part = whole.slice(start)
        assert converted(part) == expected(part.to_pylist())
        assert converted(whole.slice(start, 2)) == expected(whole.slice(start, 2).to_pylist())
    assert converted(pa.array([], pa.string())) == []
    assert converted(pa.array(["", ""], pa.string())) == [None, None]


def test_other_string_layouts_take_the_pattern_path() -> None:
    """A large_string column (not what the CSV reader gives) is converted by the regex path."""
    array = pa.array(["1", " 2 ", "x", "-"], pa.large_string())
    assert csv_columns._plain_cells(array) is None
    assert converted(array) == [1.0, 2.0, None, None]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789+-.eE", max_size=25),
            st.text(alphabet=" \t0123456789+-.eE_xinfaN,/\u0661\n", max_size=8),
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.sampled_from(["1", "2.5", "-3e2", "inf", "nan", "1e999", "1e-400", "n/a", "", "-", "."]),
        ),
        max_size=60,
    ),
    st.integers(0, 3),
)
def test_conversion_matches_the_rule(cells: list[str], start: int) -> None:
    """Long digit strings, exponents, float reprs (round trip exactly) and junk, at any offset."""
    array = pa.array(["pad"] * start + cells, pa.string()).slice(start)
    assert bits(converted(array)) == bits(expected(cells))


def test_values_of_cells_that_count_are_the_cells_numbers() -> None:
    values: npt.NDArray[np.float64]
    values, counted = decimal_values(pa.array(["0.1", "x", "-0", "1e-320", "123456789012345678"], pa.string()))
    assert counted.tolist() == [True, False, True, True, True]
    assert values[0] == 0.1 and np.signbit(values[2]) and values[3] == 1e-320 and values[4] == 123456789012345678.0


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b'"',
        b'a,"b ""c""",d\n',
        b'"' + b"x" * (PARITY_SLICE_BYTES - 1) + b'"' + b'"',  # a quote on each side of a slice boundary
        (b'"quoted, cell",1\n' * 40_000)[:-3] + b'"\n',  # several slices, odd
    ],
)
def test_quote_parity_is_the_parity_of_the_quote_count(block: bytes) -> None:
    assert quote_parity(block) == block.count(b'"') % 2
