"""Small posted inputs travel inline (job row, orchestration input); the claim check (a blob) is for larger ones.

A blob costs a small job four storage requests (the submit's put, planning's properties and read, the
chunk's read) and a delete at retention, more than the job's own work. Up to INLINE_INPUT_MAX_BYTES the
input rides in the job row and in the JobStart instead (`input_inline`, base64, so a CSV body need not
be UTF-8) and `input_ref` is None. The row keeps it because the submit answers before the orchestration
starts: whoever starts a recorded job later has the input there (jobs.recovery). The plan carries it to
the chunks when the job is staged, and a job that fails for good writes it to the blob a claim-checked
input would have had, so its dead letter can be replayed (activities.dead_letter).

The threshold keeps Durable's messages and history rows small: the input appears in the orchestration's
start message and again in its first activity's, base64 adds a third, and the Azure Storage provider
moves any message over 45 KB to a blob of its own (a write and a read each, more than the claim check).
"""

from __future__ import annotations

import base64

from jobs.requests import JobRequest

INLINE_INPUT_MAX_BYTES = 16 * 1024
"""Posted inputs up to this size travel inline (about 21 KB as base64 in each message that carries them)."""


def is_inline(request: JobRequest) -> bool:
    """Whether the request's input travels inline (it was posted and is small) rather than in a blob."""
    return request.input_bytes is not None and len(request.input_bytes) <= INLINE_INPUT_MAX_BYTES


def inline_text(request: JobRequest) -> str | None:
    """The request's input as it travels inline (base64), or None if it does not travel inline."""
    if not is_inline(request):
        return None
    assert request.input_bytes is not None
    return base64.b64encode(request.input_bytes).decode("ascii")
