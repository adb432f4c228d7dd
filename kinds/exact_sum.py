"""Exact sums of doubles as integers, so any chunking of the values gives the identical total.

Every finite double is a whole number of units of 2**-SCALE_BITS. A sum is carried as that whole number
(a Python int, never rounded, never overflowing), written to JSON as mantissa * 2**exponent, and rounded
to a double once, at the end (`to_float`): the result is the correctly rounded exact sum, and only a total
beyond the range of a double fails, however the values were split or ordered.

`GroupSums` adds numpy columns: `frexp` gives m in [0.5, 1) and an exponent e, and m * 2**53 is an integer
below 2**53. Values are binned by (group, exponent) and their mantissas summed per bin with `bincount`,
which adds in float64 and is exact while every partial sum stays below 2**53; each mantissa is therefore
split into a high and a low part of 27 and 26 bits, so a bin can take 2**26 values before a sum could round.
Python integer arithmetic then runs once per bin, not per value.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

SCALE_BITS = 1074
"""Every double is a multiple of 2**-1074 (the smallest subnormal)."""

_FREXP_SHIFT = SCALE_BITS - 53
"""An integer mantissa n with frexp exponent e is n * 2**(e - 53), that is n << (e + _FREXP_SHIFT) units. For
subnormals (e < -1021) the shift is negative, and exact: their mantissas end in as many zero bits."""

_LOW_BITS = 26
_LOW_MASK = (1 << _LOW_BITS) - 1
_MAX_VALUES_PER_CALL = 1 << 26
"""bincount sums of 27-bit parts stay exact up to 2**26 values per bin (below 2**53)."""

_DENSE_BINS_LIMIT = 1 << 20
"""Above this many (group, exponent) bins, bins are numbered by np.unique instead of a dense grid."""


def units_of(value: float) -> int:
    """A finite double as a whole number of 2**-SCALE_BITS units (exact)."""
    numerator, denominator = value.as_integer_ratio()  # the denominator is a power of two <= 2**1074
    return numerator * ((1 << SCALE_BITS) // denominator)


def to_float(units: int) -> float:
    """The double nearest to units * 2**-SCALE_BITS; OverflowError beyond the range of a double."""
    return float(Fraction(units, 1 << SCALE_BITS))


def to_json(units: int) -> dict[str, Any]:
    """`{"mantissa": "<decimal integer>", "exponent": e}` meaning mantissa * 2**e, short for common sums."""
    if units == 0:
        return {"mantissa": "0", "exponent": 0}
    trailing = (units & -units).bit_length() - 1
    return {"mantissa": str(units >> trailing), "exponent": trailing - SCALE_BITS}


def from_json(value: dict[str, Any]) -> int:
    """The units of a `to_json` document."""
    mantissa, exponent = int(value["mantissa"]), int(value["exponent"])
    if exponent < -SCALE_BITS:
        raise ValueError(f"exponent {exponent} is finer than any double")
    return mantissa << (exponent + SCALE_BITS)


class GroupSums:
    """Running exact sums of one metric for groups numbered 0, 1, 2, ..."""

    __slots__ = ("_units",)

    def __init__(self) -> None:
        self._units: dict[int, int] = {}  # group -> exact sum in units

    def add(self, groups: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Add finite `values[i]` to the sum of group `groups[i]`."""
        for start in range(0, len(values), _MAX_VALUES_PER_CALL):
            self._add(groups[start : start + _MAX_VALUES_PER_CALL], values[start : start + _MAX_VALUES_PER_CALL])

    def _add(self, groups: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        if len(values) == 0:
            return
        mantissas, exponents = np.frexp(values)
        integers = (mantissas * float(1 << 53)).astype(np.int64)  # exact: a double has 53 significant bits
        lowest = int(exponents.min())
        span = int(exponents.max()) - lowest + 1
        bins = groups * span + (exponents - lowest)
        bin_ids: npt.NDArray[np.int64] | None = None
        size = (int(groups.max()) + 1) * span
        if size > _DENSE_BINS_LIMIT:  # many groups: number only the bins that occur
            bin_ids, bins = np.unique(bins, return_inverse=True)
            size = len(bin_ids)
        high = np.bincount(bins, weights=(integers >> _LOW_BITS).astype(np.float64), minlength=size)
        low = np.bincount(bins, weights=(integers & _LOW_MASK).astype(np.float64), minlength=size)
        used = np.flatnonzero((high != 0) | (low != 0))
        keys = used if bin_ids is None else bin_ids[used]
        sums = self._units
        shift = lowest + _FREXP_SHIFT
        for key, high_sum, low_sum in zip(
            keys.tolist(), high[used].astype(np.int64).tolist(), low[used].astype(np.int64).tolist(), strict=True
        ):
            group, exponent_bin = divmod(key, span)
            total, bits = (high_sum << _LOW_BITS) + low_sum, exponent_bin + shift
            sums[group] = sums.get(group, 0) + (total << bits if bits >= 0 else total >> -bits)

    def units(self, group: int) -> int:
        """The group's exact sum in units of 2**-SCALE_BITS."""
        return self._units.get(group, 0)
