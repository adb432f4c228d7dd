"""A small job run whole in the step that plans it: no plan or partial blob, one activity.

Most jobs are small. Staged, a one-chunk job pays for three activities (prepare, chunk, complete), four
orchestrator episodes and the plan and partial blobs between them, and every further chunk an activity, its
messages and a partial; run whole it pays for one activity and two episodes, and its storage requests fall
to what the work itself needs (docs/benchmarks.md, "Cost per job"). A plan runs whole when it is one chunk,
or when it fits in one wave of chunks and its kind estimates all of its work at WHOLE_RUN_MAX_SECONDS or
less (`JobKind.work_seconds`): below that, spreading the chunks over activities costs more than it saves.
The chunks then run one after another in this activity. The guarantees stay those of the staged steps:

- **idempotent**: the outcome is recorded in the job row with the run's chunk count, so a redelivery
  finds it and answers the same outcome, writing nothing; a result of up to INLINE_RESULT_BYTES is kept
  in that row (one write fewer than a result blob, the dearest request a small job makes), a larger one
  goes to the result blob first, with deterministic content and tagged as a whole run, so a redelivery
  after a crash between the two records the same outcome; a job that ended otherwise (its stop marker,
  or a staged result) is not touched;
- **stop and deadline**: the stop marker and the deadline are checked before planning, by the chunk
  while it works and again before the result is written; a stopped run answers as a stopped plan does.
  A first attempt (its row PENDING) learns of a cancel from the row instead: a cancel flags the row before
  it writes the marker, and the outcome (with a small result) is written only if the row is unchanged
  since the run read it, so a cancel during the run is caught by that write, without asking for the marker;
- **failures keep their staged semantics**: a chunk that fails (retryable or not) leaves the plan blob and
  hands the job to the staged path, whose chunk retries, backoff and error messages apply unchanged (every
  chunk then runs staged, those that had succeeded here too: nothing of a failed whole run is kept);
- the job's row shows RUNNING only if the run takes longer than RUNNING_MARK_AFTER_SECONDS (a tiny job
  goes from PENDING to its outcome in one write), and never after its outcome was recorded.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, cast

from azure.core.exceptions import ResourceNotFoundError

from activities.merge import KIND_METADATA
from activities.plan import (
    JobPlan,
    make_plan,
    orchestration_config,
    prepare_job,
    prepared_output,
    store_plan,
)
from activities.resources import (
    JSON_CONTENT_TYPE,
    ensure_local_resources,
    job_kind,
    plan_blob_name,
    results,
    upload_json_text,
)
from activities.stop_marker import StopSignal
from jobs.queue_progress import queue_progress
from kinds.base import ByteSource, ChunkStopped
from shared.clock import parse_iso
from shared.contracts import (
    FINISHED_STATUSES,
    JobOutcome,
    JobStatus,
    OrchestrationConfig,
    PrepareInput,
    PrepareOutput,
    WholeJobOutput,
)
from shared.settings import Settings, get_settings
from shared.telemetry import log_event
from storage import jobs as job_store
from storage.names import result_blob_name

WHOLE_METADATA = "whole"
"""Blob metadata on a result written by a whole run, its value the chunk count: a redelivery may record its
outcome again (with that progress)."""

FINISHED_VALUES = frozenset(status.value for status in FINISHED_STATUSES)
ENDED_BY_A_RUN = frozenset({JobStatus.COMPLETED.value, JobStatus.FAILED.value})
"""Outcomes only an execution records. A CANCELLED row may have been recorded with no execution (a cancel
before the start, jobs.cancel): a start after it still winds the job down, which records the same outcome
and announces it."""

RUNNING_MARK_AFTER_SECONDS = 1.0
"""A whole run still working after this long marks its row RUNNING (listings filter on the row's status)."""


class _LateRunningMark:
    """Marks the job RUNNING after a delay unless its outcome comes first; never after the outcome."""

    def __init__(self, settings: Settings, job_id: str, after: float) -> None:
        self._settings = settings
        self._job_id = job_id
        self._lock = threading.Lock()
        self._finished = False
        self._timer = threading.Timer(after, self._mark)
        self._timer.daemon = True
        self._timer.start()

    def _mark(self) -> None:
        with self._lock:
            if not self._finished:
                job_store.mark_running(self._settings, self._job_id)

    def finish(self) -> None:
        """No mark from now on; waits for one in progress (so it cannot land after the outcome)."""
        self._timer.cancel()
        with self._lock:
            self._finished = True


def _outcome(job_id: str, summary: dict[str, Any] | None) -> JobOutcome:
    return {
        "status": "COMPLETED",
        "result_ref": result_blob_name(job_id),
        "content_type": JSON_CONTENT_TYPE,
        "summary": summary,
        "error": None,
    }


def _answer(prepared: PrepareOutput, outcome: JobOutcome | None = None) -> WholeJobOutput:
    answer = cast(WholeJobOutput, dict(prepared))
    if outcome is not None:
        answer["outcome"] = outcome
    return answer


def _earlier_result(settings: Settings, job_id: str) -> tuple[bool, JobOutcome | None, int]:
    """Whether the job has a result already, the outcome if an earlier whole run of this job wrote it, and that
    run's chunk count."""
    try:
        download = results(settings).get_blob_client(result_blob_name(job_id)).download_blob()
    except ResourceNotFoundError:
        return False, None, 0
    metadata = download.properties.metadata or {}
    chunks = metadata.get(WHOLE_METADATA, "")
    if not chunks.isdigit() or int(chunks) < 1 or KIND_METADATA not in metadata:
        return True, None, 0  # merged by the staged steps: the job is past its work
    summary = job_kind(settings, metadata[KIND_METADATA]).summarize(json.loads(download.readall()))
    return True, _outcome(job_id, summary), int(chunks)


def _ended(config: OrchestrationConfig, job_id: str, row: job_store.JobRecord) -> WholeJobOutput:
    """The answer to an execution that began after the job ended: its recorded outcome, flagged `ended`."""
    progress = row.get("progress") or {}
    answer = _answer(prepared_output(config, int(progress.get("total", 0))))
    if row["status"] == JobStatus.COMPLETED.value:
        answer["outcome"] = _outcome(job_id, row["summary"])
    else:
        answer["outcome"] = {"status": "FAILED", "result_ref": None, "content_type": None, "error": row["error"]}
    answer["ended"] = True
    return answer


def runs_whole(settings: Settings, plan: JobPlan) -> bool:
    """Whether the plan runs whole: one chunk, or one wave of chunks whose kind estimates them as small."""
    chunks = plan["chunks"]
    if len(chunks) == 1:
        return True
    if settings.whole_run_max_seconds <= 0:
        return False  # switched off: even a kind that estimates no work at all runs staged
    if len(chunks) > int(plan.get("max_parallel_chunks", settings.max_parallel_chunks)):
        return False  # staged, more than one wave would wait for another: never faster whole
    estimate = job_kind(settings, plan["kind"]).work_seconds(plan["input_size"], chunks, plan["options"])
    return estimate is not None and estimate <= settings.whole_run_max_seconds


def _run(
    settings: Settings,
    job_id: str,
    plan: JobPlan,
    source: ByteSource | None,
    should_stop: StopSignal,
    inline: bool,
    row_guards_outcome: bool = False,
) -> tuple[JobOutcome, str | None] | None:
    """Process the chunks one after another and merge them into the result; None if the job must stop.

    Returns the outcome and, if `inline` and the result is small, its JSON for the job row (else the result
    blob is written here). Raises if a chunk fails. `row_guards_outcome`: the outcome will be written only
    if the job row is as read before the run (`_record`), so a cancel since then is caught by that write and
    a small result need not ask for the stop marker first.
    """
    kind = job_kind(settings, plan["kind"])
    partials: list[dict[str, Any]] = []
    for chunk in plan["chunks"]:
        # Through JSON, as a staged partial is stored and read back: the result is the same document either way.
        partial = kind.process_chunk(source, chunk, plan["options"], 1, should_stop)
        partials.append(json.loads(json.dumps(partial)))
        if should_stop():  # between chunks: storage asked at most once per check interval
            return None
    result = kind.merge(kind.reconcile(source, plan["chunks"], partials, plan["options"], should_stop), plan["options"])
    summary = kind.summarize(result)
    text = json.dumps(result)  # as a result blob holds it (resources.upload_json)
    small = inline and len(text) <= job_store.INLINE_RESULT_BYTES
    # Before the result is written: ask storage now, unless the outcome's own write is conditional on the row.
    if should_stop() if small and row_guards_outcome else should_stop.check_now():
        return None
    if small:
        return _outcome(job_id, summary), text
    if inline:
        # RUNNING before the result blob exists: a redelivery that finds the row PENDING skips looking for it.
        job_store.mark_running(settings, job_id)
    _write_result(settings, job_id, plan["kind"], text, len(partials))
    return _outcome(job_id, summary), None


def _write_result(settings: Settings, job_id: str, kind: str, text: str, chunks: int) -> None:
    """The result blob, tagged as a whole run's: a redelivery summarizes it with its kind, as `chunks` chunks."""
    metadata = {KIND_METADATA: kind, WHOLE_METADATA: str(chunks)}
    upload_json_text(results(settings), result_blob_name(job_id), text, metadata=metadata)


def _record(
    settings: Settings,
    job_id: str,
    outcome: JobOutcome,
    chunks: int,
    index_key: str | None,
    result: str | None,
    etag: str | None,
) -> bool | job_store.JobRecord:
    """Record a whole run's outcome (with its result, if small) in the job row and its index row; with `etag`
    (the row as read before the run), only while the row is unchanged.

    Returns whether the job has a row (record_outcome), or the row as it is now if it changed because a
    cancel flagged it or it ended otherwise: then nothing is written. A row changed in another way (the
    run's own late RUNNING mark) is written under its new ETag; after a few such changes, unconditionally.
    """
    for _ in range(3):
        try:
            return job_store.record_outcome(
                settings, job_id, outcome, (chunks, chunks), index_key,
                result=result, whole_chunks=chunks, if_match=etag,
            )  # fmt: skip
        except job_store.RowChanged:
            versioned = job_store.read_job_versioned(settings, job_id)
            if versioned is None:
                break  # gone: record_outcome says so
            row, etag = versioned
            if row.get("stop_requested") or row["status"] in FINISHED_VALUES:
                return row
    return job_store.record_outcome(
        settings, job_id, outcome, (chunks, chunks), index_key, result=result, whole_chunks=chunks
    )


def prepare_or_run_job(start: PrepareInput) -> WholeJobOutput:
    """Plan the job; if the plan runs whole (`runs_whole`), run it and record its outcome, else store the plan.

    Without an `outcome` the answer is prepare_job's, and the orchestrator goes on with the staged steps.
    """
    settings = get_settings()
    ensure_local_resources(settings)
    job_id = start["job_id"]
    container = results(settings)
    config = orchestration_config(settings)
    read_at = time.monotonic()
    versioned = job_store.read_job_versioned(settings, job_id)
    row, etag = versioned if versioned is not None else (None, None)  # no row: started without one (tests)
    fresh = row is not None and row["status"] == JobStatus.PENDING.value
    if fresh and row is not None and start.get("admission", {}).get("admitted"):
        # Admitted at submission, so it waited only for its turn: how far the queue has got, for polls of the
        # jobs behind it (api.resource.retry_after_seconds).
        queue_progress.report(parse_iso(row["created_at"]))
    if row is not None and row["status"] in ENDED_BY_A_RUN and not row.get("whole_chunks"):
        # A start that reached the host after the job ended runs the orchestration again (Azure overrides a
        # finished instance). Its outcome is recorded: answer it, touching nothing (the staged path would
        # find the plan gone and wind the job down as cancelled, deleting a COMPLETED job's result).
        return _ended(config, job_id, row)
    if not fresh and container.get_blob_client(plan_blob_name(job_id)).exists():
        return _answer(prepare_job(start))  # staged already (an earlier attempt handed over): carry on staged
    ran_whole = row.get("whole_chunks") if row is not None else None
    if row is not None and row["status"] == JobStatus.COMPLETED.value and ran_whole:
        # An earlier whole run recorded its outcome (its result in this row or in the result blob): the same
        # answer again, nothing written. This comes before the stop marker and the deadline, so a completed
        # job never turns CANCELLED or FAILED afterwards.
        return _answer(prepared_output(config, ran_whole), _outcome(job_id, row["summary"]))
    should_stop = StopSignal(container, job_id, deadline_at=start.get("deadline_at"))
    if fresh:
        # A PENDING row is a job no attempt has got far with: its plan, a staged result and a large whole
        # result are each written only after the row says RUNNING (mark_running first), so there is nothing
        # to look for. The row also says whether a cancel was asked (flagged before its stop marker).
        if row is not None and row.get("stop_requested"):
            return _answer(prepared_output(config, 0, stopped=True))
        should_stop.known_absent(read_at)
    else:
        has_result, earlier, chunks = _earlier_result(settings, job_id)
        if earlier is not None:
            # A large result was written, and the run may have crashed before recording its outcome.
            index_key = start.get("index_key")
            job_store.record_outcome(settings, job_id, earlier, (chunks, chunks), index_key, whole_chunks=chunks)
            return _answer(prepared_output(config, chunks), earlier)
        if has_result or should_stop.check_now():
            # Cancelled before planning, or a redelivery after the job ended (resources.job_has_ended).
            return _answer(prepared_output(config, 0, stopped=True))
    running = _LateRunningMark(settings, job_id, RUNNING_MARK_AFTER_SECONDS)
    try:
        planned = make_plan(settings, start, should_stop)
        if planned is None:
            return _answer(prepared_output(config, 0, stopped=True))
        plan, source = planned
        if runs_whole(settings, plan):
            try:
                inline = row is not None
                ran = _run(settings, job_id, plan, source, should_stop, inline, row_guards_outcome=fresh)
                if ran is None:
                    return _answer(prepared_output(config, 0, stopped=True))
            except ChunkStopped:
                return _answer(prepared_output(config, 0, stopped=True))
            except Exception as exc:  # the staged path retries it (or fails it) as it would any chunk
                log_event("job.whole_run_failed", job_id=job_id, kind=plan["kind"], error=type(exc).__name__)
            else:
                running.finish()
                outcome, inline_result = ran
                count = len(plan["chunks"])
                guard = etag if fresh and inline_result is not None else None
                recorded = _record(settings, job_id, outcome, count, start.get("index_key"), inline_result, guard)
                if isinstance(recorded, dict):  # the row changed under the run: a cancel, or another attempt ended it
                    if recorded["status"] == JobStatus.COMPLETED.value and recorded.get("whole_chunks"):
                        done = int(recorded["whole_chunks"] or count)
                        return _answer(prepared_output(config, done), _outcome(job_id, recorded["summary"]))
                    return _answer(prepared_output(config, 0, stopped=True))
                if inline_result is not None and not recorded:
                    _write_result(settings, job_id, plan["kind"], inline_result, count)  # its row is gone: keep it
                log_event("job.ran_whole", job_id=job_id, kind=plan["kind"], bytes=plan["input_size"], chunks=count)
                return _answer(prepared_output(config, count), outcome)
    finally:
        running.finish()
    index_key = job_store.mark_running(settings, job_id)
    return _answer(store_plan(settings, job_id, plan, index_key))
