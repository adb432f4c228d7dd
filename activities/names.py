"""Names of the job activities: the orchestrators call them by these constants, never by typed strings."""

PREPARE_JOB = "prepare_job"
PROCESS_CHUNK = "process_chunk"
MERGE_PARTIALS = "merge_partials"
FINALIZE_JOB = "finalize_job"
REQUEST_STOP = "request_stop"
DEAD_LETTER_JOB = "dead_letter_job"
WATCH_FOR_STOP = "watch_for_stop"

NON_RETRYABLE_MARKER = "non-retryable"
"""A failure no retry can fix has a message starting `[non-retryable:<error_type>]` (orchestrators.retry)."""


def non_retryable_message(error_type: str, message: str) -> str:
    """The message of an exception the orchestrator must not retry."""
    return f"[{NON_RETRYABLE_MARKER}:{error_type}] {' '.join(message.split())[:300]}"
