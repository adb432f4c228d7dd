"""Exact per-group sums of numpy float64 columns, in the units of `kinds.exact_sum`.

`frexp` gives m in [0.5, 1) and an exponent e, and m * 2**53 is an integer below 2**53. Values are binned
by (group, exponent) and their mantissas summed per bin with `bincount`, which adds in float64 and is
exact while every partial sum stays below 2**53; each mantissa is therefore split into a high and a low
part of 27 and 26 bits, so a bin can take 2**26 values before a sum could round. Python integer
arithmetic then runs once per bin, not per value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kinds.exact_sum import SCALE_BITS

_FREXP_SHIFT = SCALE_BITS - 53
"""An integer mantissa n with frexp exponent e is n * 2**(e - 53), that is n << (e + _FREXP_SHIFT) units. For
subnormals (e < -1021) the shift is negative, and exact: their mantissas end in as many zero bits."""

_LOW_BITS = 26
_LOW_MASK = (1 << _LOW_BITS) - 1

_MAX_VALUES_PER_CALL = 1 << 26
"""bincount sums of 27-bit parts stay exact up to 2**26 values per bin (below 2**53)."""

_DENSE_BINS_LIMIT = 1 << 20
"""Above this many (group, exponent) bins, bins are numbered by np.unique instead of a dense grid."""


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
