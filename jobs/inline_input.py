"""Small posted inputs travel inline in the orchestration's input; the claim check (a blob) is for larger ones.

A blob costs a small job four storage requests (the submit's put, planning's properties and read, the
chunk's read) and a delete at retention, more than the job's own work. Up to INLINE_INPUT_MAX_BYTES the
input rides in the JobStart instead (`input_inline`, base64, so a CSV body need not be UTF-8) and
`input_ref` is None; the plan carries it to the chunks when the job is staged, and a job that fails
for good writes it to the blob a claim-checked input would have had, so its dead letter can be replayed
(activities.dead_letter).

The threshold keeps Durable's messages and history rows small: the input appears in the orchestration's
start message and again in its first activity's, base64 adds a third, and the Azure Storage provider
moves any message over 45 KB to a blob of its own (a write and a read each, more than the claim check).
"""

from __future__ import annotations

import base64

from jobs.requests import JobRequest
from shared.contracts import JobStart

INLINE_INPUT_MAX_BYTES = 16 * 1024
"""Posted inputs up to this size travel inline (about 21 KB as base64 in each message that carries them)."""


def is_inline(request: JobRequest) -> bool:
    """Whether the request's input travels inline (it was posted and is small) rather than in a blob."""
    return request.input_bytes is not None and len(request.input_bytes) <= INLINE_INPUT_MAX_BYTES


def with_inline_input(start: JobStart, request: JobRequest) -> JobStart:
    """`start` with the request's input inline, if it travels inline."""
    if is_inline(request):
        assert request.input_bytes is not None
        return {**start, "input_inline": base64.b64encode(request.input_bytes).decode("ascii")}
    return start
