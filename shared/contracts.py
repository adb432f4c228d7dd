"""The contracts between the HTTP API, the queue intake, the orchestrations and their activities.

Only these small, JSON-native shapes travel through Durable Functions: references to blobs,
counts and short dicts, never payloads (claim check). Every orchestration and activity name is
declared here once, with the typed input and output of each step, so both sides of a call agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

# Orchestrations.
JOB_ORCHESTRATOR = "job_orchestrator"
"""Name of the one orchestrator that runs every job kind."""

CHUNK_BATCH_ORCHESTRATOR = "chunk_batch_orchestrator"
"""Sub-orchestration that processes one batch of a large plan, so no history grows with the plan."""

# Activities: the orchestrators call them by these constants, never by typed strings.
PREPARE_JOB = "prepare_job"
"""PrepareInput (a JobStart) → PrepareOutput: mark RUNNING, validate, write the plan."""
PREPARE_OR_RUN_JOB = "prepare_or_run_job"
"""PrepareInput → WholeJobOutput: prepare_job, and a job whose plan is one chunk run whole in the same step."""
PROCESS_CHUNK = "process_chunk"
"""ChunkInput → ChunkOutput: one chunk into its partial blob."""
MERGE_PARTIALS = "merge_partials"
"""MergeInput → MergeOutput: the partials into the result blob."""
FINALIZE_JOB = "finalize_job"
"""FinalizeInput → int (blobs deleted): remove working blobs, record the outcome."""
COMPLETE_JOB = "complete_job"
"""CompleteInput → CompleteOutput: merge_partials and finalize_job as COMPLETED in one step (the staged tail)."""
REQUEST_STOP = "request_stop"
"""StopInput → bool: write the stop marker that running chunks poll."""
DEAD_LETTER_JOB = "dead_letter_job"
"""DeadLetterInput → str (record id): record a job that failed for good."""
WATCH_FOR_STOP = "watch_for_stop"
"""WatchInput → WatchOutput: wait beside a long backoff for the stop marker."""

CLAIM_ADMISSION = "claim_admission"
"""AdmissionTicket → AdmissionClaim: admit what can be admitted; is this job admitted?"""

# Events.
CANCEL_EVENT = "cancel_job"
"""External event raised on the job orchestration when a client asks to cancel it."""
ADMITTED_EVENT = "job_admitted"
"""External event raised on a waiting job orchestration once admission control admitted it."""

Priority = Literal["high", "normal", "low"]
"""The admission lane of a job."""
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")

Phase = Literal["queued", "preparing", "processing", "merging", "finalizing", "cleaning_up", "done"]
"""The phases of a job orchestration, in order, as its custom status shows them."""

Interrupt = Literal["cancelled", "deadline"]
"""Why a job was interrupted from outside its steps."""

StopReason = Literal["cancelled", "deadline", "failed"]
"""What the stop marker says: why the job's running chunks must stop."""


class JobStatus(StrEnum):
    """A job's status as the API shows it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Callback(TypedDict):
    """Where a job's events are POSTed (validated at submit; see jobs.callbacks)."""

    url: str
    events: list[str]  # of CALLBACK_EVENTS


class JobStart(TypedDict):
    """Input of the job orchestrator (the instance id is the job id)."""

    job_id: str
    kind: str
    input_ref: str | None  # blob name in the payloads container, or None for kinds without input
    input_content_type: str | None
    options: dict[str, Any]
    deadline_at: str | None  # ISO 8601 UTC; None = no deadline
    submitted_at: str  # ISO 8601 UTC
    # W3C trace context of the submit span (shared.tracing): the job's steps join the submitter's trace.
    # Absent in jobs started before tracing; every activity input may carry one too (the step's span).
    traceparent: NotRequired[str | None]
    callback: NotRequired[Callback | None]  # webhooks: see orchestrators.webhook
    input_inline: NotRequired[str]  # base64 of a small posted input kept inline instead of in a blob (input_ref None)
    admission: NotRequired[AdmissionTicket]  # absent: the job was started without admission control
    # The job row's index key (storage.jobs): a job run whole records its outcome without reading the row
    # first. Absent in jobs started before it, and for jobs without a row (tests starting orchestrations).
    index_key: NotRequired[str]


class AdmissionTicket(TypedDict):
    """A job's place in admission control (storage.admission): its lane, client and queue row."""

    lane: Priority
    client: str
    key: str  # RowKey of its queue row
    admitted: bool  # admitted at submit already: the orchestration need not claim


class AdmissionInput(TypedDict):
    """Input of claim_admission."""

    job_id: str
    ticket: AdmissionTicket


class AdmissionClaim(TypedDict):
    """Output of claim_admission."""

    admitted: bool
    recheck_seconds: int  # how long to wait for the admitted event before claiming again


class Progress(TypedDict):
    """Custom status of a job orchestration (well under Durable's 16 KB limit)."""

    phase: Phase
    completed: int
    total: int
    seq: int  # 1, 2, ...: one more on every change of the above (the event id source of jobs/events.py)


class JobError(TypedDict):
    """Why a job failed, as its resource and dead letter show it."""

    type: str  # machine-readable: deadline_exceeded, retries_exhausted, invalid_input, ...
    message: str  # one line for humans; never a stack trace
    attempts: int


class JobOutcome(TypedDict):
    """Output of the job orchestrator. It always returns one; only an unexpected crash fails it."""

    status: Literal["COMPLETED", "FAILED", "CANCELLED"]
    result_ref: NotRequired[str | None]  # blob name in the results container
    content_type: NotRequired[str | None]
    summary: NotRequired[dict[str, Any] | None]  # small: shown in the job resource
    error: NotRequired[JobError | None]


class DeadLetterRecord(TypedDict):
    """One dead letter: a job that failed for good, or a poison intake message."""

    id: str
    source: Literal["job", "poison", "webhook"]
    job_id: str | None
    kind: str | None
    input_ref: str | None  # kept so the job can be replayed
    input_content_type: str | None
    options: dict[str, Any] | None
    error_type: str
    reason: str
    attempts: int
    raw_message: str | None  # poison messages: the message text as received
    created_at: str  # ISO 8601 UTC
    webhook: NotRequired[WebhookEvent | None]  # webhook dead letters: the event, to deliver it again


# The steps of a job: one input and one output shape per activity and sub-orchestration.


class RetryPolicy(TypedDict):
    """How a step is retried: delay = min(max_interval, first_interval × coefficient^(attempt-1)) × jitter."""

    first_interval_seconds: float
    backoff_coefficient: float
    max_interval_seconds: float
    max_attempts: int


PrepareInput = JobStart
"""prepare_job takes the job's start as it is."""


class OrchestrationConfig(TypedDict):
    """The settings the orchestrator needs; it must not read them itself (it replays), so prepare sends them."""

    retry: RetryPolicy
    max_parallel_chunks: int
    chunks_per_sub_orchestration: int
    webhook_progress_seconds: NotRequired[float]  # at most one `progress` webhook per job this often
    # Which tail a staged job runs: "complete" = one complete_job step. Absent (histories recorded before it
    # existed): merge_partials then finalize_job, so an orchestration in flight replays the actions it recorded.
    tail: NotRequired[Literal["complete"]]


class PrepareOutput(OrchestrationConfig):
    """Output of prepare_job: the configuration and how many chunks the plan has (or that planning stopped)."""

    chunk_count: int
    stopped: NotRequired[bool]  # planning saw the stop marker or the deadline; there is no plan


class WholeJobOutput(PrepareOutput):
    """Output of prepare_or_run_job: as prepare_job's, with the outcome when the job was run whole (one step)."""

    outcome: NotRequired[JobOutcome]  # COMPLETED and recorded: nothing is left to merge or finalize
    ended: NotRequired[bool]  # the job had ended before this execution began: `outcome` is its recorded one


class ChunkInput(TypedDict):
    """Input of process_chunk: the chunk is read from the plan blob by its index."""

    job_id: str
    index: int
    attempt: int  # 1-based; kinds may use it (simulate fails chosen attempts)


class ChunkOutput(TypedDict):
    """Output of process_chunk: the partial's blob name, or stopped (stop marker or deadline seen)."""

    index: int
    partial_ref: NotRequired[str]
    reused: NotRequired[bool]  # the partial existed already (a redelivered or retried chunk)
    stopped: NotRequired[bool]
    merged: NotRequired[bool]  # the job was merged already (a redelivery after its last step): done, not stopped


class MergeInput(TypedDict):
    """Input of merge_partials."""

    job_id: str
    chunk_count: int


class MergeOutput(TypedDict):
    """Output of merge_partials: the result blob and its summary."""

    result_ref: str
    content_type: str
    summary: dict[str, Any] | None


class CompleteInput(TypedDict):
    """Input of complete_job: merge the job's partials and record it COMPLETED (with its final progress)."""

    job_id: str
    chunk_count: int
    admission: NotRequired[AdmissionTicket]  # released once the outcome is recorded


class CompleteOutput(TypedDict):
    """Output of complete_job: the outcome it recorded, or stopped (stop marker or deadline seen before the
    result was written; nothing was recorded and the job winds down as after a stopped chunk)."""

    outcome: NotRequired[JobOutcome]
    stopped: NotRequired[bool]


class FinalizeInput(TypedDict):
    """Input of finalize_job: the outcome to record (its status decides whether the result blob stays)."""

    job_id: str
    outcome: JobOutcome
    admission: NotRequired[AdmissionTicket]  # released once the outcome is recorded
    progress: NotRequired[list[int]]  # [completed, total] as the orchestration ends: recorded with the outcome


class StopInput(TypedDict):
    """Input of request_stop."""

    job_id: str
    reason: StopReason


class DeadLetterInput(TypedDict):
    """Input of dead_letter_job."""

    start: JobStart
    error: JobError


class WatchInput(TypedDict):
    """Input of watch_for_stop: how long to watch at most."""

    job_id: str
    seconds: float


class WatchOutput(TypedDict):
    """Output of watch_for_stop."""

    stopped: bool


class ChunkBatchInput(TypedDict):
    """Input of the chunk batch sub-orchestration: chunks [first, first + count) of a job."""

    job_id: str
    first: int
    count: int
    retry: RetryPolicy
    max_parallel_chunks: int
    traceparent: NotRequired[str | None]  # the job span's context: the batch's steps are its children


class ChunkBatchOutput(TypedDict, total=False):
    """Output of a chunk batch: exactly one of completed (chunks done), stopped, failure."""

    completed: int
    stopped: bool
    failure: JobError


# --- Webhooks: a job's events delivered to its callback (orchestrators.webhook) -------------------------

WEBHOOK_DELIVERY_ORCHESTRATOR = "webhook_delivery_orchestrator"
"""Delivers one event of a job to its callback, with retries, the breaker and a dead letter; started per event."""
ANNOUNCE_JOB_EVENT = "announce_job_event"
"""AnnounceInput → str | None (webhook id): put the job's event on the webhook-events queue (the outbox)."""
DELIVER_WEBHOOK = "deliver_webhook"
"""DeliverInput → DeliverOutput: one signed POST to the checked address, through the host's circuit breaker."""
DEAD_LETTER_WEBHOOK = "dead_letter_webhook"
"""WebhookDeadLetterInput → str (record id): record an event that could not be delivered."""

CALLBACK_EVENTS = ("completed", "failed", "cancelled", "progress")
"""The events a callback may subscribe to."""
TERMINAL_EVENTS = ("completed", "failed", "cancelled")
"""The default subscription: the job's end."""


class WebhookEvent(TypedDict):
    """One event for one callback; every attempt (and a replay) sends this payload under this webhook id."""

    webhook_id: str  # derived from the job id and the event (msg_<job id>_<event>[_<n>])
    job_id: str
    kind: str
    type: str  # job.completed, job.failed, job.cancelled, job.progress
    url: str  # the callback URL as submitted (never logged with its userinfo)
    payload: dict[str, Any]  # {type, timestamp, data: the job resource}: the exact JSON body
    traceparent: NotRequired[str | None]  # the job's trace: every delivery attempt is a span in it


class AnnounceInput(TypedDict):
    """Input of announce_job_event."""

    start: JobStart
    event: str  # one of CALLBACK_EVENTS
    outcome: JobOutcome | None  # None for progress
    completed: int
    total: int


class WebhookDeliveryInput(TypedDict):
    """Input of the webhook delivery orchestration."""

    event: WebhookEvent
    retry: RetryPolicy


class DeliverInput(TypedDict):
    """Input of deliver_webhook."""

    event: WebhookEvent
    attempt: int  # 1-based


DeliveryVerdict = Literal["delivered", "retry", "rejected", "refused", "breaker_open"]


class DeliverOutput(TypedDict):
    """Output of deliver_webhook: what the receiver (or the guard, or the breaker) said."""

    outcome: DeliveryVerdict
    status: int | None  # the receiver's HTTP status, if it answered
    retry_after: float | None  # seconds, from the receiver's Retry-After
    wait_seconds: float | None  # breaker_open: how long until it may be tried
    reason: str  # one line, no secrets


class WebhookDeadLetterInput(TypedDict):
    """Input of dead_letter_webhook."""

    record_id: str
    event: WebhookEvent
    error: JobError


class WebhookDeliveryOutput(TypedDict):
    """Output of the webhook delivery orchestration."""

    status: Literal["delivered", "dead_lettered"]
    attempts: int
    reason: NotRequired[str]
