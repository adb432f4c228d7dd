"""Names of the job activities: the orchestrators call them by these constants, never by typed strings."""

START_JOB = "start_job"
PLAN_JOB = "plan_job"
PROCESS_CHUNK = "process_chunk"
MERGE_PARTIALS = "merge_partials"
RECORD_OUTCOME = "record_outcome"
REQUEST_STOP = "request_stop"
DISCARD_OUTPUTS = "discard_outputs"
DEAD_LETTER_JOB = "dead_letter_job"

NON_RETRYABLE_MARKER = "non-retryable"
"""A failure no retry can fix has a message starting `[non-retryable:<error_type>]` (orchestrators.retry)."""


def non_retryable_message(error_type: str, message: str) -> str:
    """The message of an exception the orchestrator must not retry."""
    return f"[{NON_RETRYABLE_MARKER}:{error_type}] {' '.join(message.split())[:300]}"
