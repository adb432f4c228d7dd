"""The jobs the fault suite submits, and the result each must have, computed here without the app's code.

Every job is generated from a seed, so a run can be repeated. Expected results are derived from the
values as generated (not by parsing the input back), with exact arithmetic where the contract promises
exactness: csv-report sums are the correctly rounded sum of the cells' values (`fractions.Fraction`),
simulate's checksum counts each chunk once.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

VARIANTS = ("csv-raw", "csv-upload", "vector-inline", "simulate")
"""How a job is submitted: csv-report as a raw body or through an upload, vector-normalize inline, simulate.
Every LARGE_RAW_EVERY-th csv-raw job is a `csv-raw-large` one."""

LARGE_RAW_EVERY = 10
LARGE_RAW_BYTES = 4_700_000
"""A `csv-raw-large` body is its rows repeated to at least this size: over the 4 MiB from which the API
stages a raw body while it arrives (jobs.streamed_input), keyed requests and their retries included."""

LINE_ENDINGS = ("\n", "\r\n", "\r")
"""The csv module reads all three the same way, so the report must not depend on them."""

_REGIONS = ("north", "south", "east", "west", 'quoted "one"', "comma, region", "multi\nline")


@dataclass(frozen=True)
class JobSpec:
    """One job to submit: how (variant), with which key, body and options, and what must come out."""

    key: str
    variant: str
    kind: str
    options: dict[str, Any]
    body: bytes | None
    content_type: str | None
    expected: dict[str, Any]
    line_ending: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        """The id derived from the key, as docs/api.md states it (computed here, not imported, so a change
        of the app's derivation shows up as lost jobs)."""
        return hashlib.sha256(b"longrun/idempotency-key/v1\0" + self.key.encode("ascii")).hexdigest()[:32]


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _amount(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.1:
        return ""  # not a number: not counted
    if choice < 0.15:
        return "n/a"
    if choice < 0.3:
        return f"{rng.randint(-(10**6), 10**6)}e-3"
    return f"{rng.randint(-100000, 100000) / 100:.2f}"


def csv_job(key: str, rng: random.Random, variant: str) -> JobSpec:
    """A csv-report job grouped by region over `amount` and `qty`, with quoted cells and a random line ending;
    a `csv-raw-large` one has its rows repeated to LARGE_RAW_BYTES."""
    line_ending = rng.choice(LINE_ENDINGS)
    rows = rng.randint(1, 120)
    lines: list[str] = []
    cells: list[tuple[str, ...]] = []
    for i in range(rows):
        region, amount, qty = rng.choice(_REGIONS), _amount(rng), str(rng.randint(0, 50))
        note = rng.choice(["", "plain", "with, comma", 'say "hi"', f"row {i}"])
        cells.append((region, amount, qty))
        lines.append(",".join(_csv_cell(c) for c in (region, amount, qty, note)))
    repeat = 1
    if variant == "csv-raw-large":
        repeat = -(-LARGE_RAW_BYTES // sum(len(line) + len(line_ending) for line in lines))
    text = line_ending.join(["region,amount,qty,note", *lines * repeat]) + (line_ending if rng.random() < 0.8 else "")
    options = {"group_by": "region", "metrics": ["amount", "qty"]}
    return JobSpec(
        key=key,
        variant=variant,
        kind="csv-report",
        options=options,
        body=text.encode(),
        content_type="text/csv",
        expected=expected_csv_report(cells, ["amount", "qty"], repeat),
        line_ending=line_ending,
    )


def _decimal(cell: str) -> float | None:
    """The value of a generated cell (the generator writes only plain decimals, blanks and `n/a`)."""
    try:
        return float(cell)
    except ValueError:
        return None


def expected_csv_report(rows: list[tuple[str, ...]], metrics: list[str], repeat: int = 1) -> dict[str, Any]:
    """The csv-report document for rows of (group, metric cells...), each `repeat` times: counts, exact sums
    rounded once."""
    groups: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    document: dict[str, Any] = {"rows": len(rows) * repeat, "group_by": "region", "groups": {}}
    for group in sorted(groups):
        stats: dict[str, Any] = {}
        for j, metric in enumerate(metrics, start=1):
            values = [v for v in (_decimal(row[j]) for row in groups[group]) if v is not None]
            total = float(sum((Fraction(v) for v in values), Fraction(0)) * repeat)
            count = len(values) * repeat
            stats[metric] = {
                "count": count,
                "sum": total,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "mean": total / count if values else None,
            }
        document["groups"][group] = {"count": len(groups[group]) * repeat, "metrics": stats}
    return document


def vector_job(key: str, rng: random.Random) -> JobSpec:
    """A vector-normalize job with the vectors inline (sometimes a zero vector)."""
    dimensions = rng.randint(1, 6)
    vectors = [[rng.randint(-50, 50) for _ in range(dimensions)] for _ in range(rng.randint(1, 20))]
    if rng.random() < 0.3:
        vectors.append([0] * dimensions)
    metadata = {"batch": key[-8:]}
    normalized = []
    for vector in vectors:
        norm = math.sqrt(sum(x * x for x in vector))
        normalized.append([x / norm if norm else 0.0 for x in vector])
    expected = {
        "vectors": normalized,
        "processed_vectors": len(vectors),
        "dimensions": dimensions,
        "zero_vectors": sum(1 for v in vectors if not any(v)),
        "status": "indexed",
        "metadata_processed": metadata,
    }
    body = json.dumps({"kind": "vector-normalize", "input": {"vector_data": vectors, "metadata": metadata}})
    return JobSpec(key, "vector-inline", "vector-normalize", {}, body.encode(), "application/json", expected)


def simulate_checksum(chunks: int) -> int:
    """Each chunk i contributes the first 4 bytes of SHA-256("simulate:i"), summed modulo 2**32."""
    values = (int.from_bytes(hashlib.sha256(f"simulate:{i}".encode()).digest()[:4], "big") for i in range(chunks))
    return sum(values) % (1 << 32)


def simulate_job(key: str, rng: random.Random, chunks: int | None = None, seconds: float | None = None) -> JobSpec:
    """A simulate job: a few chunks, a short sleep each, sometimes one transient failure per chunk."""
    count = chunks if chunks is not None else rng.randint(1, 6)
    options = {
        "chunks": count,
        "chunk_seconds": seconds if seconds is not None else round(rng.uniform(0, 0.5), 2),
        "transient_failures": 1 if rng.random() < 0.2 else 0,
    }
    body = json.dumps({"kind": "simulate", "options": options}).encode()
    expected = {"chunks": count, "checksum": simulate_checksum(count)}
    return JobSpec(key, "simulate", "simulate", options, body, "application/json", expected)


def make_job(key: str, variant: str, rng: random.Random) -> JobSpec:
    """The job of one variant."""
    if variant in ("csv-raw", "csv-raw-large", "csv-upload"):
        return csv_job(key, rng, variant)
    if variant == "vector-inline":
        return vector_job(key, rng)
    if variant == "simulate":
        return simulate_job(key, rng)
    raise ValueError(f"unknown variant {variant!r}")


def plan_jobs(count: int, seed: int, prefix: str) -> list[JobSpec]:
    """`count` jobs cycling through every variant, keys unique to this run (`prefix`)."""
    rng = random.Random(seed)
    return [make_job(f"{prefix}-{i:05d}", _variant(i), rng) for i in range(count)]


def _variant(index: int) -> str:
    variant = VARIANTS[index % len(VARIANTS)]
    if variant == "csv-raw" and (index // len(VARIANTS)) % LARGE_RAW_EVERY == LARGE_RAW_EVERY - 1:
        return "csv-raw-large"
    return variant


def _same_float(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b if tolerance == 0 else math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return False


def differences(expected: Any, actual: Any, path: str = "$", tolerance: float = 0.0) -> list[str]:
    """Where `actual` differs from `expected` (numbers exactly unless a tolerance is given)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {type(actual).__name__}"]
        found: list[str] = []
        for key in sorted(expected.keys() | actual.keys(), key=str):
            if key not in actual:
                found.append(f"{path}.{key}: missing")
            elif key not in expected:
                found.append(f"{path}.{key}: unexpected")
            else:
                found.extend(differences(expected[key], actual[key], f"{path}.{key}", tolerance))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            size = len(actual) if isinstance(actual, list) else type(actual).__name__
            return [f"{path}: expected {len(expected)} items, got {size}"]
        found = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found.extend(differences(e, a, f"{path}[{i}]", tolerance))
        return found
    if isinstance(expected, bool):  # JSON true is not 1
        return [] if actual is expected else [f"{path}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, int | float):
        return [] if _same_float(expected, actual, tolerance) else [f"{path}: expected {expected!r}, got {actual!r}"]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


def result_differences(spec: JobSpec, document: Any) -> list[str]:
    """How a COMPLETED job's result document differs from the expected one (vectors to 1e-12)."""
    tolerance = 1e-12 if spec.kind == "vector-normalize" else 0.0
    return differences(spec.expected, document, tolerance=tolerance)
