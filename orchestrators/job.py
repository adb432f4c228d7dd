"""The job orchestration: prepare → process chunks → complete (merge and record), for every job kind.

A small job (one chunk, or a few chunks of little work) runs whole in its first step
(orchestrators.whole_job); orchestrations whose history predates complete_job keep their merge → finalize
tail (prepare's answer says which, see `_process`).

Only blob references, counts and small dicts travel through it (claim check), so its history has
the same size whatever the size of the input. A cancel event interrupts any step, and the deadline
stops every step on its own clock (no timer is left open; see orchestrators.steps.Interrupts); the
job then stops its running chunks (stop marker), removes partial outputs and ends CANCELLED or
FAILED. Every path ends with a JobOutcome as the orchestration's output.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from orchestrators.admission import wait_for_admission
from orchestrators.retry import DEFAULT_RETRY_POLICY, policy_from
from orchestrators.spans import JobTrace, job_span
from orchestrators.steps import (
    ChunksStopped,
    Interrupted,
    Interrupts,
    Orchestration,
    StepFailed,
    call_step,
    failed,
    race,
    recorded_outcome,
    run_chunk_waves,
    wait_for_all,
)
from orchestrators.whole_job import prepare_or_run
from shared import tracing
from shared.clock import parse_iso
from shared.contracts import (
    ANNOUNCE_JOB_EVENT,
    CANCEL_EVENT,
    CHUNK_BATCH_ORCHESTRATOR,
    COMPLETE_JOB,
    DEAD_LETTER_JOB,
    FINALIZE_JOB,
    MERGE_PARTIALS,
    REQUEST_STOP,
    AnnounceInput,
    ChunkBatchInput,
    ChunkBatchOutput,
    CompleteInput,
    CompleteOutput,
    DeadLetterInput,
    FinalizeInput,
    Interrupt,
    JobError,
    JobOutcome,
    JobStart,
    MergeInput,
    MergeOutput,
    Phase,
    Progress,
    RetryPolicy,
    StopInput,
    WholeJobOutput,
)
from shared.telemetry import log_event


def chunk_batch_instance_id(job_id: str, batch: int) -> str:
    """Instance id of a job's n-th chunk batch: derived from the job id, so a replay reuses it."""
    return f"{job_id}:chunks:{batch}"


class _JobRun:
    """The state one job orchestration carries between its steps."""

    def __init__(self, context: Any, start: JobStart) -> None:
        self.context = context
        self.start = start
        self.job_id: str = context.instance_id
        self.started_at: datetime = context.current_utc_datetime
        self.policy: RetryPolicy = DEFAULT_RETRY_POLICY  # replaced by the configured policy once prepared
        self.max_parallel = 1
        self.per_batch = 1
        self.total = 0
        self.completed = 0
        self.shown: tuple[Phase, int, int] | None = None  # what the custom status shows
        # Counts the changes of the custom status. It is derived from the history (a replay makes the same
        # calls), so every app instance reading the status computes the same event ids from it (jobs/events.py).
        self.seq = 0
        deadline_at = parse_iso(str(start["deadline_at"])) if start.get("deadline_at") else None
        # No deadline timer: see orchestrators.steps.Interrupts.
        self.interrupts = Interrupts(cancel=context.wait_for_external_event(CANCEL_EVENT), deadline_at=deadline_at)
        callback = start.get("callback")
        self.callback_events: list[str] = list(callback["events"]) if callback else []
        self.progress_every = 30.0  # seconds between progress webhooks; prepare sends the setting
        self.progress_sent: tuple[datetime, int] | None = None
        self.one_tail_step = False  # set from prepare's answer (its `tail`)
        self.ended_before = False  # the job had ended before this execution began (a late duplicate start)

    def progress(self, phase: Phase, completed: int | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if (phase, self.completed, self.total) == self.shown:
            return  # nothing a client could see changed: keep the sequence number
        self.shown, self.seq = (phase, self.completed, self.total), self.seq + 1
        status: Progress = {"phase": phase, "completed": self.completed, "total": self.total, "seq": self.seq}
        self.context.set_custom_status(status)

    def log(self, event: str, **fields: Any) -> None:
        if not self.context.is_replaying:
            with tracing.within(JobTrace.of(self.context).job):  # the event joins the job's trace
                log_event(event, job_id=self.job_id, kind=self.start.get("kind"), **fields)

    def duration_ms(self) -> int:
        return int((self.context.current_utc_datetime - self.started_at).total_seconds() * 1000)

    def run(self) -> Orchestration:
        ticket = self.start.get("admission")
        queued = ticket is not None and not ticket.get("admitted")
        self.progress("queued" if queued else "preparing", 0)
        self.log("job.started", phase="queued" if queued else "preparing")
        try:
            if ticket is not None:
                yield from wait_for_admission(self.context, self.job_id, ticket, self.policy, self.interrupts)
                self.progress("preparing", 0)
            outcome = yield from self._process()
        except Interrupted as interrupt:
            outcome = yield from self._wind_down(interrupt.reason, None, interrupt.pending)
        except ChunksStopped as stopped:
            outcome = yield from self._wind_down(self._stop_reason(), None, stopped.pending)
        except StepFailed as failure:
            outcome = yield from self._wind_down(None, failure.error, failure.pending)
        if self.ended_before:
            # Its span, its webhooks and its log events belong to the execution that ran it.
            return outcome
        job_span(self.context, self.start, self.started_at, outcome)
        yield from self._announce(outcome["status"].lower(), outcome)
        return outcome

    def _announce(self, event: str, outcome: JobOutcome | None) -> Orchestration:
        """Hand the event to the webhook outbox if the callback wants it; a failure never changes the job."""
        if event not in self.callback_events:
            return
        announce: AnnounceInput = {
            "start": self.start,
            "event": event,
            "outcome": outcome,
            "completed": self.completed,
            "total": self.total,
        }
        try:
            yield from call_step(self.context, ANNOUNCE_JOB_EVENT, announce, self.policy, f"announce-{event}")
        except StepFailed as failure:
            self.log("webhook.announce_failed", type=event, error_type=failure.error["type"])

    def _progressed(self, completed: int) -> Orchestration | None:
        """Record progress; the step announcing a `progress` webhook when one is due (throttled), else None."""
        self.progress("processing", completed)
        if "progress" not in self.callback_events:
            return None
        now = self.context.current_utc_datetime
        if self.progress_sent is not None:
            sent_at, sent_completed = self.progress_sent
            if completed <= sent_completed or (now - sent_at).total_seconds() < self.progress_every:
                return None
        elif completed == 0:
            return None
        self.progress_sent = (now, completed)
        return self._announce_progress()

    def _announce_progress(self) -> Orchestration:
        # Raced against the cancel like any step: a cancel during the announcement still stops the job.
        announce: AnnounceInput = {
            "start": self.start,
            "event": "progress",
            "outcome": None,
            "completed": self.completed,
            "total": self.total,
        }
        task = self.context.call_activity(ANNOUNCE_JOB_EVENT, announce)
        yield from race(self.context, task, self.interrupts)
        if failed(task):
            self.log("webhook.announce_failed", type="progress")

    def _stop_reason(self) -> Interrupt:
        # A step stopped on its own: at the deadline (its clock and ours agree within a check interval)
        # or because the stop marker was written by a cancel.
        return "deadline" if self.interrupts.passed_deadline(self.context) else "cancelled"

    def _process(self) -> Orchestration:
        job_id = self.job_id
        # Settings reach the orchestrator through this step's output; it is retried with the defaults.
        # One step plans the job and, when its plan is small, runs it whole (orchestrators.whole_job).
        prepared: WholeJobOutput = yield from prepare_or_run(self.context, self.start, self.policy, self.interrupts)
        if prepared.get("ended") and "outcome" in prepared:
            self.ended_before = True
            return prepared["outcome"]
        if prepared.get("stopped"):
            raise ChunksStopped()  # planning saw the stop marker or the deadline
        self.policy = policy_from(prepared.get("retry"))
        self.max_parallel = int(prepared.get("max_parallel_chunks", 1))
        self.per_batch = int(prepared.get("chunks_per_sub_orchestration", 50))
        self.progress_every = float(prepared.get("webhook_progress_seconds", self.progress_every))
        self.total = int(prepared["chunk_count"])
        # The history decides the tail: a prepare answered before complete_job existed has no `tail`, and
        # that orchestration goes on scheduling what it scheduled when it first ran (docs/architecture.md).
        self.one_tail_step = prepared.get("tail") == "complete"
        if "outcome" in prepared:
            return self._ran_whole(prepared["outcome"])
        self.progress("processing", 0)
        if self.total <= self.per_batch:
            yield from run_chunk_waves(
                self.context,
                job_id,
                range(self.total),
                self.policy,
                self.max_parallel,
                self.interrupts,
                on_progress=self._progressed,
            )
        else:
            yield from self._process_in_batches()

        self.progress("merging", self.total)
        if self.one_tail_step:
            outcome = yield from self._complete()
        else:
            outcome = yield from self._merge_and_finalize()
        self.progress("done", self.total)
        self.log("job.completed", status="COMPLETED", duration_ms=self.duration_ms(), chunks=self.total)
        return outcome

    def _complete(self) -> Orchestration:
        """Merge and record the outcome in one step (activities.complete): one activity and one episode fewer."""
        complete: CompleteInput = {"job_id": self.job_id, "chunk_count": self.total}
        if "admission" in self.start:
            complete["admission"] = self.start["admission"]  # released with the outcome
        # Raced against the cancel like merge was; if it completes the job meanwhile, the wind-down keeps
        # that outcome (recorded_outcome), as it does for a whole run.
        completed: CompleteOutput = yield from call_step(
            self.context, COMPLETE_JOB, complete, self.policy, "complete", self.interrupts
        )
        if "outcome" not in completed:
            raise ChunksStopped()  # the stop marker or the deadline came before the result was written
        return completed["outcome"]

    def _merge_and_finalize(self) -> Orchestration:
        """The tail before complete_job: kept for orchestrations whose history scheduled these two steps."""
        merge: MergeInput = {"job_id": self.job_id, "chunk_count": self.total}
        merged: MergeOutput = yield from call_step(
            self.context, MERGE_PARTIALS, merge, self.policy, "merge", self.interrupts
        )
        self.progress("finalizing", self.total)
        outcome: JobOutcome = {
            "status": "COMPLETED",
            "result_ref": merged.get("result_ref"),
            "content_type": merged.get("content_type"),
            "summary": merged.get("summary"),
            "error": None,
        }
        yield from self._record(outcome)
        return outcome

    def _ran_whole(self, outcome: JobOutcome) -> JobOutcome:
        """The job ran whole in its first step, which recorded the outcome: nothing is left to merge or finalize."""
        self.progress("done", self.total)
        self.log("job.completed", status="COMPLETED", duration_ms=self.duration_ms(), chunks=self.total)
        return outcome

    def _process_in_batches(self) -> Orchestration:
        # Batches run one after another, each with the full window, so at most max_parallel chunks
        # are ever in flight and each sub-orchestration's history stays a few hundred events long.
        done = 0
        for batch, first in enumerate(range(0, self.total, self.per_batch)):
            count = min(self.per_batch, self.total - first)
            batch_input: ChunkBatchInput = {
                "job_id": self.job_id,
                "first": first,
                "count": count,
                "retry": self.policy,
                "max_parallel_chunks": self.max_parallel,
            }
            task = self.context.call_sub_orchestrator(
                CHUNK_BATCH_ORCHESTRATOR,
                JobTrace.of(self.context).under_job(batch_input),  # the batch's steps join the job's trace
                chunk_batch_instance_id(self.job_id, batch),
            )
            yield from race(self.context, task, self.interrupts)
            if failed(task):
                message = str(task.result).strip().splitlines()[0][:300] if str(task.result).strip() else "failed"
                raise StepFailed({"type": "orchestration_failed", "message": message, "attempts": 1})
            result = cast(ChunkBatchOutput, task.result if isinstance(task.result, dict) else {})
            if result.get("failure"):
                raise StepFailed(result["failure"])
            if result.get("stopped"):
                raise ChunksStopped()
            done += int(result.get("completed", count))
            step = self._progressed(done)
            if step is not None:
                yield from step

    def _record(self, outcome: JobOutcome) -> Orchestration:
        """Remove working blobs and record the outcome in the job store."""
        finalize: FinalizeInput = {"job_id": self.job_id, "outcome": outcome}
        if "admission" in self.start:
            finalize["admission"] = self.start["admission"]  # released with the outcome, on every path
        if self.one_tail_step and outcome.get("error") is None:
            # The final progress with the outcome: a read of the ended job then needs neither Durable's
            # status nor a catch-up write (jobs.query). Only on histories that know the new tail, so an
            # older orchestration's replayed finalize input stays the one it recorded; and not for a
            # failure, whose row must not read as finished (from the row alone) before its dead letter
            # is recorded: until then the read asks Durable, which shows the job running.
            finalize["progress"] = [self.completed, self.total]
        yield from call_step(self.context, FINALIZE_JOB, finalize, self.policy, "finalize")

    def _wind_down(self, reason: Interrupt | None, error: JobError | None, pending: list[Any]) -> Orchestration:
        """Stop running chunks, remove partial outputs, record the outcome (and a dead letter if failed)."""
        context, job_id = self.context, self.job_id
        self.progress("cleaning_up")
        if reason == "deadline":
            error = {
                "type": "deadline_exceeded",
                "message": "the job did not finish before its deadline",
                "attempts": 1,
            }
        outcome: JobOutcome
        if error is None:
            outcome = {"status": "CANCELLED", "error": None}
        else:
            outcome = {"status": "FAILED", "error": error}
        try:
            stop: StopInput = {"job_id": job_id, "reason": reason or "failed"}
            yield from call_step(context, REQUEST_STOP, stop, self.policy, "stop")
            yield from wait_for_all(context, pending)
            ended = recorded_outcome(pending)
            if ended is not None:
                # The step the cancel raced (a whole run, or complete_job) completed the job meanwhile: its
                # outcome is recorded and stands.
                if self.total == 0:
                    self.total = 1  # a whole run: the cancel won before its answer told the chunk count
                return self._ran_whole(ended)
            yield from self._record(outcome)
            if error is not None:
                dead_letter: DeadLetterInput = {"start": self.start, "error": error}
                yield from call_step(context, DEAD_LETTER_JOB, dead_letter, self.policy, "dead-letter")
        except StepFailed as cleanup_failure:
            # The job's own outcome stands; the store or dead letter may lag (retention tidies blobs).
            self.log("job.cleanup_failed", error_type=cleanup_failure.error["type"])
        self.progress("done")
        status = outcome["status"]
        self.log(
            "job.cancelled" if status == "CANCELLED" else "job.failed",
            status=status,
            duration_ms=self.duration_ms(),
            error_type=error["type"] if error else None,
            attempts=error["attempts"] if error else None,
        )
        return outcome


def job_orchestration(context: Any) -> Orchestration:
    """Run one job (instance id = job id) from its JobStart input to a JobOutcome."""
    start: JobStart = context.get_input()
    outcome = yield from _JobRun(context, start).run()
    return outcome
