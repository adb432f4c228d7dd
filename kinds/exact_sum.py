"""Exact sums of doubles as integers, so any chunking of the values gives the identical total.

Every finite double is a whole number of units of 2**-SCALE_BITS. A sum is carried as that whole number
(a Python int, never rounded, never overflowing), written to JSON as mantissa * 2**exponent, and rounded
to a double once, at the end (`to_float`): the result is the correctly rounded exact sum, and only a total
beyond the range of a double fails, however the values were split or ordered.

`kinds.group_sums` adds numpy columns in these units; this module is plain Python, so merging and the
reference path do not load numpy.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

SCALE_BITS = 1074
"""Every double is a multiple of 2**-1074 (the smallest subnormal)."""


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
