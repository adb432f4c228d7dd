"""csv-report: chunked plan/process/merge equals one pass over the file, whatever the chunking."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kinds import csv_columns, csv_report, get_kind
from kinds.base import BytesSource, ChunkStopped, NonRetryableError, parse_non_retryable
from kinds.csv_report import KIND, parse_decimal
from tests.kinds.reference import single_pass_report

# The number rule of the issue, written independently of kinds.csv_report.
SPEC_NUMBER = re.compile(r"[ \t]*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?[ \t]*", re.ASCII)


def spec_number(cell: str) -> float | None:
    if not SPEC_NUMBER.fullmatch(cell):
        return None
    value = float(cell)
    return value if math.isfinite(value) else None


def never() -> bool:
    return False


def run_chunked(
    data: bytes, options: dict[str, Any], target: int = 1, max_chunks: int = 1000, block_bytes: int = 1 << 20
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    source = BytesSource(data, block_bytes=block_bytes)
    parsed = KIND.parse_options(options)
    plan = KIND.plan(source, parsed, target, max_chunks)
    # Partials travel as JSON between activities: round-trip them like the orchestration does.
    partials = [json.loads(json.dumps(KIND.process_chunk(source, c, parsed, 1, never))) for c in plan]
    return KIND.merge(KIND.reconcile(source, plan, partials, parsed, never), parsed), plan


def report(text: str, group_by: str = "g", metrics: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    result, _ = run_chunked(text.encode(), {"group_by": group_by, "metrics": metrics or []}, **kwargs)
    return result


# --- number recognition ---------------------------------------------------------------------------------

NUMBER_TABLE = [
    ("1", 1.0),
    ("-2", -2.0),
    ("+3", 3.0),
    ("1.5", 1.5),
    ("1.", 1.0),
    (".5", 0.5),
    ("-.5", -0.5),
    ("1e3", 1000.0),
    ("1E-3", 0.001),
    ("2.5e+2", 250.0),
    ("  42  ", 42.0),
    ("\t7", 7.0),
    ("007", 7.0),
    ("0", 0.0),
    ("-0", -0.0),
    ("", None),
    (" ", None),
    (".", None),
    ("-", None),
    ("+.", None),
    ("e5", None),
    ("1e", None),
    ("1e+", None),
    ("1.2.3", None),
    ("1 2", None),
    ("inf", None),
    ("-inf", None),
    ("Infinity", None),
    ("nan", None),
    ("NaN", None),
    ("1_000", None),
    ("0x1F", None),
    ("1,5", None),
    ("$5", None),
    ("5%", None),
    ("\u0661\u0662", None),  # Arabic-Indic digits: float() accepts them, a decimal number does not
    ("1\u0661", None),
    ("\n1", None),
    ("1\n", None),
    ("1e999", None),  # overflows to inf
    ("--1", None),
    ("abc", None),
]


@pytest.mark.parametrize(("cell", "expected"), NUMBER_TABLE)
def test_number_recognition(cell: str, expected: float | None) -> None:
    assert parse_decimal(cell) == expected
    assert spec_number(cell) == expected
    # The hot path has its own implementation: the same cell in a report counts (or not) the same way.
    quoted = '"' + cell.replace('"', '""') + '"'
    result = report(f"g,v\nx,{quoted}\n", metrics=["v"])
    stats = result["groups"]["x"]["metrics"]["v"]
    assert stats["count"] == (0 if expected is None else 1)
    assert stats["sum"] == (0.0 if expected is None else expected)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=" \t0123456789+-.eE_xinfa\u0661\n", max_size=8))
def test_number_recognition_matches_the_rule(cell: str) -> None:
    assert parse_decimal(cell) == spec_number(cell)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=" \t0123456789+-.eE_xinfaN\u0661\n", max_size=6),
            st.sampled_from(["1", "2.5", "-3e2", "inf", "nan", "1e999", "1_0", "n/a", ""]),
        ),
        max_size=30,
    )
)
def test_column_conversion_matches_the_rule(cells: list[str]) -> None:
    """The column-wise conversion of the hot path (RE2 match plus Arrow's cast) follows the number rule."""
    values, counted = csv_columns.decimal_values(pa.array(cells, pa.string()))
    expected = [spec_number(cell) for cell in cells]
    assert [float(v) if c else None for v, c in zip(values, counted, strict=True)] == expected


# --- table tests ----------------------------------------------------------------------------------------


def test_report_counts_groups_and_metrics() -> None:
    text = (
        "region,amount,qty,note\n"
        "north,1.5,2,a\n"
        'south,"2,5",1,"quoted, with comma"\n'
        'north,3,x,"multi\nline"\n'
        "\n"
        "east,-1e1\n"  # short row: qty missing (empty)
        "north,0.5,4,extra,cells,ignored\n"
    )
    result = report(text, group_by="region", metrics=["amount", "qty"])
    assert result == {
        "rows": 5,
        "group_by": "region",
        "groups": {
            "east": {
                "count": 1,
                "metrics": {
                    "amount": {"count": 1, "sum": -10.0, "min": -10.0, "max": -10.0, "mean": -10.0},
                    "qty": {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None},
                },
            },
            "north": {
                "count": 3,
                "metrics": {
                    "amount": {"count": 3, "sum": 5.0, "min": 0.5, "max": 3.0, "mean": 5.0 / 3},
                    "qty": {"count": 2, "sum": 6.0, "min": 2.0, "max": 4.0, "mean": 3.0},
                },
            },
            "south": {
                "count": 1,
                "metrics": {
                    "amount": {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None},
                    "qty": {"count": 1, "sum": 1.0, "min": 1.0, "max": 1.0, "mean": 1.0},
                },
            },
        },
    }


def test_short_row_without_the_group_column_counts_in_the_empty_group() -> None:
    result = report("v,g\n1\n2,a\n", metrics=["v"])
    assert {k: g["count"] for k, g in result["groups"].items()} == {"": 1, "a": 1}
    assert result["groups"][""]["metrics"]["v"]["sum"] == 1.0


def test_crlf_and_lf_give_the_same_report() -> None:
    lf = 'g,v\na,1\n"b,b",2\n\na,3\n"c\nc",4\n'
    crlf = lf.replace("\n", "\r\n")
    by_lf = report(lf, metrics=["v"], target=1)
    by_crlf = report(crlf, metrics=["v"], target=1)
    assert by_crlf["groups"].pop("c\r\nc") == by_lf["groups"].pop("c\nc")  # quoted newlines kept as written
    assert by_crlf == by_lf
    assert by_lf["rows"] == 4 and by_lf["groups"]["a"]["metrics"]["v"]["sum"] == 4.0


@pytest.mark.parametrize("line_end", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("target", [1, 5, 1000])
def test_every_line_end_style_gives_the_same_report(line_end: str, target: int) -> None:
    """#16: a CR-only file (classic Mac) lost every row because the header search only looked for LF."""
    data = "g,v\rx,1\ry,2\rx,3\r".replace("\r", line_end).encode()
    result, plan = run_chunked(data, {"group_by": "g", "metrics": ["v"]}, target=target)
    assert result == single_pass_report(BytesSource(data), {"group_by": "g", "metrics": ["v"]})
    assert result["rows"] == 3 and result["groups"]["x"]["metrics"]["v"]["sum"] == 4.0
    if target == 1:  # CR-only files split on row boundaries too: the header, then one chunk per row
        assert [data[c["start"] : c["end"]].decode() for c in plan] == [
            f"{row}{line_end}" for row in ("g,v", "x,1", "y,2", "x,3")
        ]


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    """A row boundary is never put between the CR and the LF of one line end, whatever the block size."""
    data = b"g,v\r\na,1\r\n\r\nb,2\r\r\na,3\r"
    for block_bytes in range(1, 8):
        for target in range(1, len(data)):
            result, plan = run_chunked(
                data, {"group_by": "g", "metrics": ["v"]}, target=target, block_bytes=block_bytes
            )
            assert result["rows"] == 3 and result["groups"]["a"]["metrics"]["v"]["sum"] == 4.0
            assert all(not (data[c["start"] - 1 : c["start"] + 1] == b"\r\n") for c in plan[1:])


def test_bom_is_not_part_of_the_first_column_name() -> None:
    data = codecs.BOM_UTF8 + b"g,v\r\na,1\r\n"
    result, _ = run_chunked(data, {"group_by": "g", "metrics": ["v"]})
    assert result["groups"]["a"]["metrics"]["v"]["sum"] == 1.0
    assert single_pass_report(BytesSource(data), {"group_by": "g", "metrics": ["v"]}) == result


@pytest.mark.parametrize("target", [1, 2, 3, 100])
def test_header_after_blank_lines_and_rows_without_trailing_newline(target: int) -> None:
    data = codecs.BOM_UTF8 + b'\r\n\n"g","v"\r\na,1\na,2'
    result, plan = run_chunked(data, {"group_by": "g", "metrics": ["v"]}, target=target)
    assert result["rows"] == 2 and result["groups"]["a"]["metrics"]["v"]["sum"] == 3.0
    assert plan[0]["end"] >= data.index(b"a,1")  # the header row is never split from the first chunk


def test_header_only_gives_an_empty_report() -> None:
    result, plan = run_chunked(b"g,v\n", {"group_by": "g", "metrics": ["v"]})
    assert len(plan) == 1
    assert result == {"rows": 0, "group_by": "g", "groups": {}}


@pytest.mark.parametrize(
    ("options", "missing"),
    [
        ({"group_by": "nope", "metrics": ["v"]}, "'nope'"),
        ({"group_by": "g", "metrics": ["v", "w"]}, "'w'"),
    ],
)
def test_unknown_column_fails_at_once(options: dict[str, Any], missing: str) -> None:
    source = BytesSource(b"g,v\na,1\n")
    with pytest.raises(NonRetryableError) as caught:
        KIND.plan(source, KIND.parse_options(options), 1024, 10)
    assert caught.value.error_type == "unknown_column"
    assert missing in caught.value.message
    # The orchestrator only sees the text of the failed activity.
    text = f"Activity function 'process_chunk' failed: NonRetryableError: {caught.value}"
    assert parse_non_retryable(text) == ("unknown_column", caught.value.message)
    with pytest.raises(NonRetryableError, match="unknown_column"):
        single_pass_report(source, options)


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\n\r\n", codecs.BOM_UTF8, b"\xff\xfeg\x00,\x00v\x00", b"g\xff,v\na,1\n"],
    ids=["empty", "blank-lines", "bom-only", "utf16", "invalid-utf8-header"],
)
def test_invalid_input_fails_at_once(data: bytes) -> None:
    with pytest.raises(NonRetryableError) as caught:
        KIND.plan(BytesSource(data, block_bytes=3), KIND.parse_options({"group_by": "g"}), 1024, 10)
    assert caught.value.error_type == "invalid_input"
    assert str(caught.value).startswith("[non-retryable:invalid_input] ")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"g,v\na,\xff\n", "not valid UTF-8 (at byte 6)"),
        (b"g,v\na,1\n\xe2\x82", "not valid UTF-8 (truncated at the end)"),
    ],
    ids=["invalid-utf8", "truncated-utf8"],
)
@pytest.mark.parametrize("target", [1, 1024])
def test_invalid_rows_fail_the_report(data: bytes, message: str, target: int) -> None:
    """Planning reads the header only: the rows are checked by the chunks, whatever the chunking."""
    with pytest.raises(NonRetryableError, match=re.escape(message)) as caught:
        run_chunked(data, {"group_by": "g", "metrics": ["v"]}, target=target, block_bytes=3)
    assert caught.value.error_type == "invalid_input"


def test_process_chunk_rejects_invalid_utf8_too() -> None:
    source = BytesSource(b"g,v\na,1\nb,\xff\n")
    chunk = {"index": 0, "start": 0, "end": source.size, "group_index": 0, "metric_indices": [1]}
    with pytest.raises(NonRetryableError, match="invalid_input"):
        KIND.process_chunk(source, chunk, KIND.parse_options({"group_by": "g", "metrics": "v"}), 1, never)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"group_by": "g", "metrics": "a, b,,a"}, {"group_by": "g", "metrics": ["a", "b"]}),
        ({"group_by": "g", "metrics": ["a", "b"]}, {"group_by": "g", "metrics": ["a", "b"]}),
        ({"group_by": "g"}, {"group_by": "g", "metrics": []}),
    ],
)
def test_options_accept_a_list_or_a_comma_separated_string(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    assert KIND.parse_options(raw) == expected
    assert KIND.parse_options(KIND.parse_options(raw)) == expected  # normalized options stay valid


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"metrics": ["a"]},
        {"group_by": ""},
        {"group_by": 3},
        {"group_by": "g", "metrics": [1]},
        {"group_by": "g", "x": 1},
    ],
)
def test_invalid_options_are_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KIND.parse_options(raw)


def test_csv_input_is_never_inline_json() -> None:
    with pytest.raises(ValueError):
        KIND.validate_inline_input({"rows": []})


def test_render_csv() -> None:
    result = report('g,v,w\na,1,x\n"b,1",2.5,3\nb,x\n', metrics=["v", "w"])
    body, content_type = KIND.render(result, "csv") or (b"", "")
    assert content_type.startswith("text/csv")
    assert body.decode() == (
        "group,count,v_count,v_sum,v_min,v_max,v_mean,w_count,w_sum,w_min,w_max,w_mean\r\n"
        "a,1,1,1.0,1.0,1.0,1.0,0,0.0,,,\r\n"
        "b,1,0,0.0,,,,0,0.0,,,\r\n"
        '"b,1",1,1,2.5,2.5,2.5,2.5,1,3.0,3.0,3.0,3.0\r\n'
    )
    assert list(csv.reader(io.StringIO(body.decode(), newline="")))[3][0] == "b,1"  # groups in sorted order
    assert KIND.render(result, "xlsx") is None


def test_summary_stays_small() -> None:
    lines = ["g,v"] + [f"{'x' * 300}{i},{i}" for i in range(200)]
    result = report("\n".join(lines), metrics=["v"])
    summary = KIND.summarize(result)
    assert len(json.dumps(summary)) < 2048
    assert summary["rows"] == 200 and summary["groups"] == 200 and summary["metrics"] == ["v"]


def test_largest_groups_keep_long_values_apart() -> None:
    """#16: keys were cut to 64 characters, so groups that differ after that merged (and the later count won)."""
    prefix = "p" * 70
    text = "g\n" + f"{prefix}1\n" * 3 + f"{prefix}2\n" * 2 + "short\n" + "q" * 64 + "\n"
    summary = KIND.summarize(report(text))
    shown = summary["largest_groups"]
    assert summary["groups"] == 4 and len(shown) == 4
    assert sorted(shown.values()) == [1, 1, 2, 3]
    assert shown["short"] == 1 and shown["q" * 64] == 1  # up to 64 characters: shown whole
    long_keys = [key for key in shown if key.startswith("p")]
    assert len(long_keys) == 2 and all(len(key) == 64 and "\u2026" in key for key in long_keys)
    assert {shown[key] for key in long_keys} == {3, 2}


def test_a_display_key_is_never_one_already_taken() -> None:
    from kinds.csv_report import display_key

    long_value = "v" * 100
    first = display_key(long_value, set())
    assert len(first) == 64 and display_key(long_value, set()) == first  # stable
    again = display_key(long_value, {first})
    assert again != first and len(again) == 64
    assert display_key(first, {first}) != first  # a short value equal to a shown long value moves aside
    everything = {
        display_key(long_value, set()),
        display_key(long_value, {first}),
        display_key(long_value, {first, again}),
    }
    assert len(everything) == 3


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(alphabet="ab\u2026", min_size=60, max_size=70), st.integers(1, 5), max_size=15))
def test_largest_groups_show_the_largest_groups_each_once(counts: dict[str, int]) -> None:
    groups = {key: {"count": count, "metrics": {}} for key, count in counts.items()}
    summary = KIND.summarize({"rows": sum(counts.values()), "group_by": "g", "groups": groups})
    shown = summary["largest_groups"]
    largest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: len(shown)]
    assert list(shown.values()) == [count for _, count in largest]  # one entry per group, none merged
    assert len(shown) == min(10, len(counts)) or len(json.dumps(summary)) > 1500
    assert all(len(key) <= 64 for key in shown) and len(json.dumps(summary)) <= 1800


FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx", "\rx", '=HYPERLINK("http://x")']


def test_render_csv_escapes_formulas_but_keeps_numbers() -> None:
    """CSV injection (OWASP): text cells starting with = + - @ tab CR get a leading quote; numbers stay numbers."""
    rows = [f"{value},-3.5" for value in map(encode_cell_always, FORMULAS)] + ["-3.5,-1", "+1e3,2", "plain,-0.25"]
    result = report("g,=v\n" + "\n".join(rows) + "\n", metrics=["=v"])
    body, _ = KIND.render(result, "csv") or (b"", "")
    table = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert table[0][:3] == ["group", "count", "'=v_count"]
    cells = {row[0]: row for row in table[1:]}
    for formula in FORMULAS:
        row = cells["'" + formula]
        assert row[1:7] == ["1", "1", "-3.5", "-3.5", "-3.5", "-3.5"]  # negative statistics: plain numbers
    assert cells["-3.5"][3] == "-1.0" and cells["+1e3"][3] == "2.0"  # numeric group values unescaped
    assert cells["plain"][3] == "-0.25"
    assert len(cells) == len(FORMULAS) + 3


def encode_cell_always(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def test_should_stop_stops_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_columns, "BLOCK_BYTES", 16 * 1024)
    data = ("g,v\n" + "a,1\n" * 20_000).encode()
    source = BytesSource(data)
    options = KIND.parse_options({"group_by": "g", "metrics": ["v"]})
    (chunk,) = KIND.plan(source, options, len(data), 1)
    with pytest.raises(ChunkStopped):
        KIND.process_chunk(source, chunk, options, 1, lambda: True)
    calls: list[int] = []

    def stop_on_second_call() -> bool:
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(ChunkStopped):
        KIND.process_chunk(source, chunk, options, 1, stop_on_second_call)
    assert len(calls) == 2  # checked between blocks of rows, not only at the start


def test_registered() -> None:
    assert get_kind("csv-report", simulate_enabled=False) is KIND
    assert KIND.requires_input and KIND.input_content_types == ("text/csv",)


def test_sums_are_exact_whatever_the_chunking() -> None:
    values = ["1e16", "1", "-1e16", "0.1", "0.2", "0.3", "1e-300", "3.14159"] * 50
    text = "g,v\n" + "".join(f"a,{v}\n" for v in values)
    expected = math.fsum(float(v) for v in values)
    for target in (1, 7, 64, 1000, len(text)):
        assert report(text, metrics=["v"], target=target)["groups"]["a"]["metrics"]["v"]["sum"] == expected


# --- property: chunked == single pass -------------------------------------------------------------------

numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.builds(
        lambda m, e, s, p: f"{p}{m}e{s}{e}",
        st.integers(0, 999),
        st.integers(0, 40),
        st.sampled_from(["", "+", "-"]),
        st.sampled_from(["", "-", "+", " "]),
    ),
    st.builds(lambda n, pad: f"{pad}{n}{pad}", st.integers(-99, 99), st.sampled_from([" ", "  ", "\t"])),
)
junk = st.sampled_from(["", "inf", "nan", "-inf", "1_000", "0x10", "1e", ".", "n/a", "1,5", "1e999", "—"])
text_cells = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t;é€x')), max_size=8)
cells = st.one_of(numbers, junk, text_cells, st.sampled_from(["a", "b", "c", "a,b", 'q"q', "x\ny", "x\r\ny"]))
COLUMNS = ["g", "v", "w", "g,2"]


def encode_cell(cell: str, force_quotes: bool) -> str:
    if force_quotes or any(ch in cell for ch in ',"\r\n') or cell == "":
        return '"' + cell.replace('"', '""') + '"'
    return cell


LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])
"""Every line end the csv module reads, mixed within a file."""


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, list[list[str]]]:
    """A random RFC 4180 file and the data rows it encodes (blank lines are not rows)."""
    rows = draw(st.lists(st.lists(cells, min_size=1, max_size=6), max_size=40))
    out = [codecs.BOM_UTF8.decode()] if draw(st.booleans()) else []
    for i, row in enumerate([COLUMNS, *rows]):
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 5)) == 0 else 0):
            out.append(draw(LINE_ENDS))  # blank lines
        out.append(",".join(encode_cell(c, draw(st.integers(0, 7)) == 0) for c in row))
        last = i == len(rows)
        out.append(draw(st.one_of(LINE_ENDS, st.just("")) if last else LINE_ENDS))
    return "".join(out).encode(), rows


def expected_report(rows: list[list[str]], metrics: list[str]) -> dict[str, Any]:
    """The report computed from the generated rows themselves, without parsing the file."""
    groups: dict[str, Any] = {}
    values: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        padded = row + [""] * (len(COLUMNS) - len(row))
        key = padded[0]
        group = groups.setdefault(key, {"count": 0})
        group["count"] += 1
        for metric in metrics:
            number = spec_number(padded[COLUMNS.index(metric)])
            values.setdefault((key, metric), [])
            if number is not None:
                values[(key, metric)].append(number)
    for key, group in groups.items():
        group["metrics"] = {}
        for metric in metrics:
            found = values[(key, metric)]
            total = float(sum(map(Fraction, found), Fraction(0)))  # exact, rounded once; OverflowError if too big
            group["metrics"][metric] = {
                "count": len(found),
                "sum": total,
                "min": min(found) if found else None,
                "max": max(found) if found else None,
                "mean": total / len(found) if found else None,
            }
    return {"rows": len(rows), "group_by": "g", "groups": dict(sorted(groups.items()))}


def rows_of(data: bytes, skip_header: bool) -> list[list[str]]:
    text = data.decode("utf-8-sig")
    parsed = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    return parsed[1:] if skip_header else parsed


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    csv_files(),
    st.integers(1, 400),
    st.integers(1, 50),
    st.integers(1, 64),
    st.sampled_from([["v"], ["v", "w"], ["w", "g,2", "v"], []]),
    st.sampled_from([1, 2, 5, 64, csv_report.GUESS_WINDOW_BYTES]),
)
def test_chunked_report_equals_single_pass(
    file: tuple[bytes, list[list[str]]],
    target: int,
    max_chunks: int,
    block_bytes: int,
    metrics: list[str],
    window: int,
) -> None:
    """Whatever the chunking, and however often planning guesses a boundary inside quotes (windows of a few
    bytes see no quote to guess from): reconcile moves such a boundary and the report is the single pass's."""
    csv_report.GUESS_WINDOW_BYTES, saved = window, csv_report.GUESS_WINDOW_BYTES
    try:
        check_chunked_report(file, target, max_chunks, block_bytes, metrics)
    finally:
        csv_report.GUESS_WINDOW_BYTES = saved


def check_chunked_report(
    file: tuple[bytes, list[list[str]]], target: int, max_chunks: int, block_bytes: int, metrics: list[str]
) -> None:
    data, rows = file
    options = {"group_by": "g", "metrics": metrics}
    try:
        expected = expected_report(rows, metrics)
    except OverflowError:  # a sum beyond the range of a double fails the job, however it is chunked
        with pytest.raises(NonRetryableError, match="exceeds the range"):
            run_chunked(data, options, target=target, max_chunks=max_chunks, block_bytes=block_bytes)
        with pytest.raises(NonRetryableError, match="exceeds the range"):
            single_pass_report(BytesSource(data, block_bytes=block_bytes), options)
        return
    chunked, plan = run_chunked(data, options, target=target, max_chunks=max_chunks, block_bytes=block_bytes)
    single = single_pass_report(BytesSource(data, block_bytes=block_bytes), options)

    assert chunked == single == expected  # exact: sums are correctly rounded whatever the chunking
    assert json.loads(json.dumps(chunked)) == chunked

    # The plan covers the file with contiguous ranges that end at line ends (inside quotes at worst).
    assert 1 <= len(plan) <= max_chunks
    assert plan[0]["start"] == 0 and plan[-1]["end"] == len(data)
    assert all(a["end"] == b["start"] for a, b in zip(plan, plan[1:], strict=False))
    assert all(c["start"] < c["end"] and data[c["start"] - 1] in b"\r\n" for c in plan[1:])
    assert not any(data[c["start"] - 1 : c["start"] + 1] == b"\r\n" for c in plan[1:])


@pytest.mark.parametrize(
    ("window", "inside"),
    [
        (b'\na,"multi\nline",1\n', False),  # a quote after a comma, before a letter: it opens a field
        (b'e\nline, note",1\nb,"x",2', True),  # a quote after a letter: it closes the field we are in
        (b'xa ""quoted"" one",2\n', True),  # doubled quotes say nothing; the closing one does
        (b"\nk1,plain,1\nk2,plain,2\n", False),  # no quote: guessed outside
        (b'""a",1\n', False),  # a run of quotes cut by the window's start says nothing; nothing else does
        (b'x,",",\n"', False),  # quotes between separators say nothing
    ],
)
def test_the_quote_state_is_guessed_from_the_first_telling_quote(window: bytes, inside: bool) -> None:
    assert csv_report._quoted_at(window) is inside


QUOTED_NOTES = ("g,note,v\n" + "".join(f'k{n % 4},"note {n},\nsecond line",{n}\n' for n in range(3000))).encode()


def test_boundaries_are_guessed_right_for_rfc_4180_input_with_quoted_line_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning reads a window per chunk, not the input, and places every boundary between rows."""
    monkeypatch.setattr(csv_report, "GUESS_WINDOW_BYTES", 256)
    reads: list[tuple[int, int]] = []

    class Counting(BytesSource):
        def read(self, offset: int, length: int) -> bytes:
            reads.append((offset, length))
            return super().read(offset, length)

        def stream(self, offset: int, length: int) -> Iterator[bytes]:
            for block in super().stream(offset, length):
                reads.append((offset, len(block)))
                yield block

    source = Counting(QUOTED_NOTES, block_bytes=64)
    plan = KIND.plan(source, KIND.parse_options({"group_by": "g"}), 5000, 1000)
    assert len(plan) > 10
    # The header once and one window per boundary: not the input.
    assert len(reads) == 1 + len(plan) - 1
    assert sum(length for _, length in reads) < 64 * 1024 + len(plan) * 257 < len(QUOTED_NOTES)
    for chunk in plan[1:]:
        assert QUOTED_NOTES[: chunk["start"]].count(b'"') % 2 == 0  # outside quotes
    partials = [KIND.process_chunk(source, chunk, KIND.parse_options({"group_by": "g"}), 1, never) for chunk in plan]
    assert all(p["quotes_odd"] == 0 for p in partials)


def test_an_error_held_back_by_a_chunk_counts_only_if_its_range_was_right() -> None:
    options = KIND.parse_options({"group_by": "g", "metrics": ["v"]})
    plain = "".join(f"k{n % 4},plain,{n}\n" for n in range(300)).encode()
    source = BytesSource(QUOTED_NOTES[:9] + plain + QUOTED_NOTES[9:20_000])
    data = source.read(0, source.size)
    saved, csv_report.GUESS_WINDOW_BYTES = csv_report.GUESS_WINDOW_BYTES, 1  # no quote seen: every guess outside
    try:
        plan = KIND.plan(source, options, 100, 1000)
    finally:
        csv_report.GUESS_WINDOW_BYTES = saved
    partials = [KIND.process_chunk(source, chunk, options, 1, never) for chunk in plan]
    misplaced = [i for i, chunk in enumerate(plan) if data[: chunk["start"]].count(b'"') % 2]
    right = [i for i in range(len(plan) - 1) if i not in misplaced and i + 1 not in misplaced]
    assert misplaced and right

    # Beside a misplaced boundary the chunk is read again: what it held back does not count.
    held = list(partials)
    held[misplaced[0]] = {**held[misplaced[0]], "invalid": "the input is not valid CSV: boom"}
    expected = single_pass_report(source, options)
    assert KIND.merge(KIND.reconcile(source, plan, held, options, never), options) == expected
    # On a range that was right it does: the job fails with it.
    held = list(partials)
    held[right[0]] = {**held[right[0]], "invalid": "the input is not valid CSV: boom"}
    with pytest.raises(NonRetryableError, match=r"invalid_input\] the input is not valid CSV: boom"):
        KIND.merge(KIND.reconcile(source, plan, held, options, never), options)


def test_partials_without_a_quote_parity_are_checked_all_the_same() -> None:
    """A guessed plan's chunk processed by a version that did not count quotes (during a deployment): the
    parity is counted from the input, and a misplaced boundary is still found; an exact plan's is trusted."""
    options = KIND.parse_options({"group_by": "g", "metrics": ["v"]})
    source = BytesSource(QUOTED_NOTES)
    saved, csv_report.GUESS_WINDOW_BYTES = csv_report.GUESS_WINDOW_BYTES, 1
    try:
        plan = KIND.plan(source, options, 100, 1000)
    finally:
        csv_report.GUESS_WINDOW_BYTES = saved
    partials = [KIND.process_chunk(source, chunk, options, 1, never) for chunk in plan]
    assert any(p["quotes_odd"] for p in partials)  # misplaced boundaries to find
    older = [{key: value for key, value in p.items() if key != "quotes_odd"} for p in partials]
    expected = single_pass_report(source, options)
    assert KIND.merge(KIND.reconcile(source, plan, older, options, never), options) == expected

    exact = [{key: value for key, value in chunk.items() if key != "guessed"} for chunk in plan]
    assert KIND.merge(KIND.reconcile(source, exact, older, options, never), options) != expected


@pytest.mark.parametrize("groups", [1, 3, 16, 17, 3000])
@pytest.mark.parametrize("junk_share", [0.0, 0.05])
def test_large_inputs_over_many_batches(groups: int, junk_share: float) -> None:
    """Tens of thousands of rows: several batches and folds, each grouping strategy, with and without junk."""
    rng = random.Random(groups * 1000 + int(junk_share * 100))
    junk_cells = ["", "n/a", "inf", "1_0", " 7 ", "1e999", "-.5e-3"]
    rows: list[list[str]] = []
    for _ in range(30_000):
        row = [f"k{rng.randrange(groups)}"]
        for _ in range(2):
            if rng.random() < junk_share:
                row.append(rng.choice(junk_cells))
            else:
                row.append(rng.choice([str(rng.randint(-500, 500)), f"{rng.uniform(-1e6, 1e6):.3f}"]))
        if rng.random() < junk_share:
            row = row[: rng.randint(1, 2)]  # short rows
        rows.append(row)
    lines = [",".join(COLUMNS)] + [",".join(row) + ("\n" if rng.random() < junk_share else "") for row in rows]
    data = "\r\n".join(lines).encode()
    for target, max_chunks in [(len(data), 1), (50_000, 100), (1, 7)]:
        options = {"group_by": "g", "metrics": ["v", "w"]}
        chunked, plan = run_chunked(data, options, target=target, max_chunks=max_chunks, block_bytes=65536)
        assert len(plan) <= max_chunks
        assert chunked == expected_report(rows, ["v", "w"])
    assert single_pass_report(BytesSource(data), options) == chunked


def test_rows_longer_than_a_parser_block_are_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_columns, "BLOCK_BYTES", 1024)
    long_note = '"' + "x,\n" * 5000 + '"'
    text = "g,note,v\n" + f"a,{long_note},1\n" * 3 + "b,short,2\n" + f"a,{long_note},1\n"
    result = report(text, metrics=["v"], target=len(text))
    assert result["rows"] == 5
    assert result["groups"]["a"]["metrics"]["v"]["sum"] == 4.0
    assert result["groups"]["b"]["metrics"]["v"]["sum"] == 2.0


def test_invalid_utf8_in_a_column_the_report_does_not_use_is_still_rejected() -> None:
    source = BytesSource(b"g,note,v\na,ok,1\nb,\xff,2\n")
    options = KIND.parse_options({"group_by": "g", "metrics": "v"})
    chunk = {"index": 0, "start": 0, "end": source.size, "columns": 3, "group_index": 0, "metric_indices": [2]}
    with pytest.raises(NonRetryableError, match=r"invalid_input\] the input is not valid UTF-8 \(at byte 18\)"):
        KIND.process_chunk(source, chunk, options, 1, never)


def test_ragged_rows_among_regular_ones() -> None:
    """Short and long rows (the parser sets them aside) count like the csv module reads them."""
    text = 'g,v,w\na,1,2\nb\n"a",3\nc,4,5,6,7\n""\n  \na,"1\n0",x\n'
    expected = single_pass_report(BytesSource(text.encode()), {"group_by": "g", "metrics": ["v", "w"]})
    result = report(text, metrics=["v", "w"], target=len(text))
    assert result == expected
    assert result["rows"] == 7 and set(result["groups"]) == {"a", "b", "c", "", "  "}
    assert result["groups"]["a"]["metrics"]["v"] == {"count": 2, "sum": 4.0, "min": 1.0, "max": 3.0, "mean": 2.0}
    assert result["groups"]["c"]["metrics"]["w"]["sum"] == 5.0


def test_the_app_loads_without_arrow_or_numpy() -> None:
    """They load with the first csv-report chunk: instances that only serve HTTP never pay for them."""
    code = "import sys, function_app; print(sorted({'pyarrow', 'numpy'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    loaded = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


# --- large cells (#16 item 6) ---------------------------------------------------------------------------

BIG = 200 * 1024
"""Over the csv module's default cell limit (128 KiB)."""


@pytest.mark.parametrize("column", ["g", "note", "v"])
@pytest.mark.parametrize("shape", ["short", "long", "regular"])
def test_a_cell_over_128_kib_works_in_any_row(column: str, shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ragged rows go to the csv module, whose default cell limit failed them (retried, then exhausted)."""
    monkeypatch.setattr(csv_columns, "BLOCK_BYTES", 64 * 1024)  # and the row is longer than a parser block
    cells = {"g": "a", "note": "n", "v": "1"}
    cells[column] = "7" * BIG if column == "v" else "x" * BIG
    row = [cells["g"], cells["note"], cells["v"]]
    if shape == "short":
        row = row[: ["g", "note", "v"].index(column) + 1]
    elif shape == "long":
        row = [*row, "extra", "more"]
    big_row = ",".join(f'"{cell}"' if len(cell) > 100 else cell for cell in row)
    text = f"g,note,v\na,ok,1\n{big_row}\nb,,2\n"
    options = {"group_by": "g", "metrics": ["v"]}
    expected = single_pass_report(BytesSource(text.encode()), options)
    for target in (1, len(text)):
        result, _ = run_chunked(text.encode(), options, target=target)
        assert result == expected
    assert expected["rows"] == 3


def test_a_header_cell_over_128_kib_works() -> None:
    name = "c" * BIG
    text = f'g,"{name}",v\na,x,1\nb,y\n'
    result = report(text, metrics=["v"], target=1)
    assert result == single_pass_report(BytesSource(text.encode()), {"group_by": "g", "metrics": ["v"]})
    assert result["rows"] == 2 and result["groups"]["a"]["metrics"]["v"]["sum"] == 1.0


def test_a_header_row_over_the_limit_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The header is read whole: past MAX_HEADER_BYTES the job fails at once with a clear error, not after retries."""
    from kinds import csv_report

    assert csv_report.MAX_HEADER_BYTES == 64 * 1024 * 1024
    monkeypatch.setattr(csv_report, "MAX_HEADER_BYTES", 1024 * 1024)
    data = b"g," + b"h" * csv_report.MAX_HEADER_BYTES + b"\na,1\n"
    with pytest.raises(NonRetryableError) as caught:
        KIND.plan(BytesSource(data), KIND.parse_options({"group_by": "g"}), 1024, 10)
    assert caught.value.error_type == "invalid_input"
    assert "header row is longer than" in caught.value.message
