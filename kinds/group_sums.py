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

_MAX_VALUES_PER_CALL = 1 << 26
"""bincount sums of 27-bit parts stay exact up to 2**26 values per bin (below 2**53)."""

_DENSE_BINS_LIMIT = 1 << 20
"""Above this many (group, exponent) bins, bins are numbered by np.unique instead of a dense grid."""


_PENDING_VALUES_LIMIT = 1 << 36
"""Values the int64 accumulators take before they are folded into Python integers: each adds at most 2**27
to a bin, so a bin stays below 2**63."""

_PENDING_CELLS_LIMIT = 1 << 18
"""Accumulator cells ((exponent, group) pairs, 16 bytes each) held before folding: 4 MiB at most."""


class GroupSums:
    """Running exact sums of one metric for groups numbered 0, 1, 2, ...

    A block's bin sums are added to int64 arrays per exponent (numpy, no Python per bin); they are folded
    into Python integers when read, or when they would grow too large or could overflow. Folding per block
    instead cost a Python loop over every (group, exponent) bin of every block: a fifth of a chunk's time,
    under the GIL the chunks of one worker process share.
    """

    __slots__ = ("_pending", "_pending_values", "_units")

    def __init__(self) -> None:
        self._units: dict[int, int] = {}  # group -> exact sum in units (folded)
        # frexp exponent -> (sums of the high parts, sums of the low parts) per group, not yet folded
        self._pending: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        self._pending_values = 0

    def add(self, groups: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Add finite `values[i]` to the sum of group `groups[i]`."""
        for start in range(0, len(values), _MAX_VALUES_PER_CALL):
            self._add(groups[start : start + _MAX_VALUES_PER_CALL], values[start : start + _MAX_VALUES_PER_CALL])

    def _add(self, groups: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        if len(values) == 0:
            return
        if self._pending_values + len(values) > _PENDING_VALUES_LIMIT:
            self._fold()
        mantissas, exponents = np.frexp(values)
        # The integer mantissa m (|m| < 2**53) as floats, split into high = floor(m / 2**26) and low = m - high *
        # 2**26, in [0, 2**26): every step is exact (scaling by powers of two, integers below 2**53), and
        # staying in float64 spares the int64 round trips bincount's float weights would need.
        high = mantissas * float(1 << (53 - _LOW_BITS))
        np.floor(high, out=high)
        low = mantissas
        low *= float(1 << 53)
        low -= high * float(1 << _LOW_BITS)
        lowest = int(exponents.min())
        span = int(exponents.max()) - lowest + 1
        group_count = int(groups.max()) + 1
        bins = groups * span
        exponents -= lowest
        bins += exponents
        size = group_count * span
        if size > _DENSE_BINS_LIMIT:  # many groups: number only the bins that occur, fold at once
            bin_ids, bins = np.unique(bins, return_inverse=True)
            high_sums, low_sums = self._bin_sums(bins, high, low, len(bin_ids))
            used = np.flatnonzero((high_sums != 0) | (low_sums != 0))
            keys = bin_ids[used].tolist()
            shift = lowest + _FREXP_SHIFT
            for key, high_sum, low_sum in zip(keys, high_sums[used].tolist(), low_sums[used].tolist(), strict=True):
                group, exponent_bin = divmod(key, span)
                self._add_units(group, high_sum, low_sum, exponent_bin + shift)
            return
        high_sums, low_sums = self._bin_sums(bins, high, low, size)
        high_by_exponent, low_by_exponent = high_sums.reshape(group_count, span), low_sums.reshape(group_count, span)
        for column in np.flatnonzero(high_by_exponent.any(axis=0) | low_by_exponent.any(axis=0)).tolist():
            high_totals, low_totals = self._accumulators(lowest + column, group_count)
            high_totals[:group_count] += high_by_exponent[:, column]
            low_totals[:group_count] += low_by_exponent[:, column]
        self._pending_values += len(values)
        if len(self._pending) * group_count > _PENDING_CELLS_LIMIT:
            self._fold()

    @staticmethod
    def _bin_sums(
        bins: npt.NDArray[np.int64], high: npt.NDArray[np.float64], low: npt.NDArray[np.float64], size: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        # bincount adds in float64: exact for up to 2**26 parts of 27 bits per bin (_MAX_VALUES_PER_CALL).
        high_sums = np.bincount(bins, weights=high, minlength=size)
        low_sums = np.bincount(bins, weights=low, minlength=size)
        return high_sums.astype(np.int64), low_sums.astype(np.int64)

    def _accumulators(self, exponent: int, group_count: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        sums = self._pending.get(exponent)
        if sums is None or len(sums[0]) < group_count:
            grown = (np.zeros(group_count, np.int64), np.zeros(group_count, np.int64))
            if sums is not None:
                grown[0][: len(sums[0])] = sums[0]
                grown[1][: len(sums[1])] = sums[1]
            sums = self._pending[exponent] = grown
        return sums

    def _add_units(self, group: int, high_sum: int, low_sum: int, bits: int) -> None:
        total = (high_sum << _LOW_BITS) + low_sum
        self._units[group] = self._units.get(group, 0) + (total << bits if bits >= 0 else total >> -bits)

    def _fold(self) -> None:
        """Move the accumulated bin sums into the Python integers."""
        for exponent, (high_sums, low_sums) in self._pending.items():
            used = np.flatnonzero((high_sums != 0) | (low_sums != 0))
            bits = exponent + _FREXP_SHIFT
            for group, high_sum, low_sum in zip(
                used.tolist(), high_sums[used].tolist(), low_sums[used].tolist(), strict=True
            ):
                self._add_units(group, high_sum, low_sum, bits)
        self._pending.clear()
        self._pending_values = 0

    def units(self, group: int) -> int:
        """The group's exact sum in units of 2**-SCALE_BITS."""
        if self._pending:
            self._fold()
        return self._units.get(group, 0)
