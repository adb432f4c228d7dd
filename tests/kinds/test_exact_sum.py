"""Exact sums: numpy binning and the per-value reference agree with Fraction arithmetic on any doubles."""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinds import exact_sum, group_sums
from kinds.exact_sum import from_json, to_float, to_json, units_of
from kinds.group_sums import GroupSums

doubles = st.floats(allow_nan=False, allow_infinity=False, width=64)
extremes = st.sampled_from(
    [5e-324, -5e-324, 2.2250738585072014e-308, sys.float_info.max, -sys.float_info.max, 0.0, -0.0]
)


def exact(values: list[float]) -> Fraction:
    return sum(map(Fraction, values), Fraction(0))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(doubles, extremes)), max_size=60))
def test_group_sums_are_exact(pairs: list[tuple[int, float]]) -> None:
    sums = GroupSums()
    groups = np.array([g for g, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=np.float64)
    half = len(pairs) // 2
    sums.add(groups[:half], values[:half])  # two calls: different exponent ranges per call
    sums.add(groups[half:], values[half:])
    for group in range(6):
        members = [v for g, v in pairs if g == group]
        assert Fraction(sums.units(group), 1 << exact_sum.SCALE_BITS) == exact(members)
        assert sum(map(units_of, members)) == sums.units(group)
        assert from_json(json.loads(json.dumps(to_json(sums.units(group))))) == sums.units(group)


def test_many_groups_use_sparse_bins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_sums, "_DENSE_BINS_LIMIT", 16)
    rng = np.random.default_rng(7)
    groups = rng.integers(0, 1000, 5000).astype(np.int64)
    values = rng.normal(0, 1e6, 5000) * 10.0 ** rng.integers(-20, 20, 5000)
    sums = GroupSums()
    sums.add(groups, values)
    for group in (0, 1, 500, 999):
        assert to_float(sums.units(group)) == float(exact(values[groups == group].tolist()))


def test_only_the_final_total_can_overflow() -> None:
    big = sys.float_info.max
    sums = GroupSums()
    sums.add(np.zeros(2, np.int64), np.array([big, big]))  # beyond a double: still exact as an integer
    sums.add(np.zeros(1, np.int64), np.array([-big]))
    assert to_float(sums.units(0)) == big
    with pytest.raises(OverflowError):
        to_float(units_of(big) * 2)


def test_json_form_is_short_for_ordinary_sums() -> None:
    assert to_json(units_of(1234.5)) == {"mantissa": "2469", "exponent": -1}
    assert to_json(0) == {"mantissa": "0", "exponent": 0}
    with pytest.raises(ValueError):
        from_json({"mantissa": "1", "exponent": -2000})


@pytest.mark.parametrize(("values_limit", "cells_limit"), [(1 << 36, 1 << 18), (50, 1 << 18), (1 << 36, 8)])
def test_sums_carried_between_blocks_stay_exact_when_folded_early_or_late(
    monkeypatch: pytest.MonkeyPatch, values_limit: int, cells_limit: int
) -> None:
    # Blocks add into int64 accumulators per exponent; they fold into Python integers when read, or sooner
    # when they could overflow (values) or grow too large (cells): every way gives the same exact sums.
    monkeypatch.setattr(group_sums, "_PENDING_VALUES_LIMIT", values_limit)
    monkeypatch.setattr(group_sums, "_PENDING_CELLS_LIMIT", cells_limit)
    rng = np.random.default_rng(11)
    sums = GroupSums()
    everything: list[tuple[int, float]] = []
    for block in range(12):
        count = int(rng.integers(1, 40))
        groups = rng.integers(0, 3 + 2 * block, count).astype(np.int64)  # groups appear over the blocks
        values = rng.normal(0, 1e3, count) * 10.0 ** rng.integers(-30, 30, count)
        sums.add(groups, values)
        everything.extend(zip(groups.tolist(), values.tolist(), strict=True))
        if block == 5:
            assert sums.units(0) == sum(units_of(v) for g, v in everything if g == 0)  # a read mid-way
    for group in range(3 + 2 * 11):
        assert sums.units(group) == sum(units_of(v) for g, v in everything if g == group)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_full_bin_of_53_bit_mantissas_sums_exactly(sign: float) -> None:
    # Thousands of values with every mantissa bit set in one (group, exponent) bin: their integer mantissas
    # sum far beyond 2**53, where one float64 sum per bin would round; the split into 27 and 26 bits does not.
    rng = np.random.default_rng(5)
    values = np.asarray(sign * (1.0 - rng.integers(1, 1 << 20, 5000) * 2.0**-53), np.float64)  # one exponent
    values[0] = sign * (1.0 - 2.0**-53)
    sums = GroupSums()
    sums.add(np.zeros(len(values), np.int64), values)
    assert sums.units(0) == sum(units_of(v) for v in values.tolist())
    assert Fraction(sums.units(0), 1 << exact_sum.SCALE_BITS) == exact(values.tolist())
