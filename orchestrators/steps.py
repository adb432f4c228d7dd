"""Deterministic building blocks of the job orchestrations: retried steps, chunk waves and backoffs.

Each helper is a generator used with `yield from` inside an orchestrator. They race every wait against
the job's cancel event, check its deadline after every wait, and raise instead of returning when the
job must stop, handing back the tasks still running so the caller can let them finish first. No
helper leaves a timer open: a timer that lost a race is cancelled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.durable_functions.models.Task import TimerTask

from orchestrators.retry import backoff_seconds
from orchestrators.spans import JobTrace
from shared.contracts import (
    PROCESS_CHUNK,
    WATCH_FOR_STOP,
    ChunkInput,
    Interrupt,
    JobError,
    JobOutcome,
    RetryPolicy,
    WatchInput,
)
from shared.failures import classify_failure

Orchestration = Generator[Any, Any, Any]


@dataclass
class Interrupted(Exception):
    """The job was cancelled or its deadline passed while `pending` tasks were still running."""

    reason: Interrupt
    pending: list[Any] = field(default_factory=list)


@dataclass
class StepFailed(Exception):
    """A step failed for good (non-retryable, or out of attempts); `pending` tasks are still running."""

    error: JobError
    pending: list[Any] = field(default_factory=list)


@dataclass
class ChunksStopped(Exception):
    """A chunk found the stop marker: someone asked the job to stop; `pending` tasks are still running."""

    pending: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Interrupts:
    """What may interrupt a job from outside its steps: the cancel event, and its deadline (if it has one).

    The deadline is not a timer: a timer left waiting keeps the orchestration Running in Azure until it
    fires (DTFx ends an instance only without open tasks), and a timer over six days is a chain of legs
    that cannot be cancelled. Instead every step stops on its own clock at the deadline (chunks, the
    stop watcher and planning read it from the plan), and the orchestrator compares its replay-safe
    clock with the deadline after every wait. A step never runs long past the deadline, so the
    orchestrator hears of it within a check interval, with nothing left open.
    """

    cancel: Any | None = None
    deadline_at: datetime | None = None

    @property
    def tasks(self) -> list[Any]:
        """The tasks to race a wait against (the cancel event)."""
        return [self.cancel] if self.cancel is not None else []

    def reason_for(self, task: Any) -> Interrupt | None:
        """Why `task` (the winner of a race) interrupts the job, or None if it is not an interrupt."""
        if self.cancel is not None and task is self.cancel:
            return "cancelled"
        return None

    def passed_deadline(self, context: Any) -> bool:
        """Whether the job's deadline has passed by the orchestration's (replay-safe) clock."""
        return self.deadline_at is not None and context.current_utc_datetime >= self.deadline_at

    def check(self, context: Any) -> None:
        """Raise Interrupted("deadline") once the deadline has passed."""
        if self.passed_deadline(context):
            raise Interrupted("deadline")


NO_INTERRUPTS = Interrupts()


def failed(task: Any) -> bool:
    """Whether a completed Durable task failed (the SDK stores the exception as its result)."""
    return isinstance(task.result, Exception)


def cancel_timers(tasks: Sequence[Any]) -> list[Any]:
    """Cancel the timers among `tasks` that have not fired; returns the other tasks still running.

    A cancelled timer is sent to the host with isCanceled, so it no longer keeps the instance open.
    Only short timers are created here (backoffs are capped well under the SDK's six-day limit), and
    a short timer's cancel is honoured; a long timer's is not, which is why the deadline is no timer.
    """
    running = []
    for task in tasks:
        if task.is_completed:
            continue
        if isinstance(task, TimerTask):
            task.cancel()
        else:
            running.append(task)
    return running


def outcome_of(task: Any) -> JobOutcome | None:
    """The outcome a step that may end the job recorded (its output's `outcome`), if it completed with one."""
    if not task.is_completed or failed(task) or not isinstance(task.result, dict):
        return None
    outcome = task.result.get("outcome")
    return outcome if isinstance(outcome, dict) else None  # type: ignore[return-value]


def recorded_outcome(tasks: Sequence[Any]) -> JobOutcome | None:
    """The outcome recorded by a step among `tasks` that completed the job (a whole run, complete_job), if any.

    Such a step recorded COMPLETED before answering; an interrupt that raced it must not turn the job back.
    """
    for task in tasks:
        outcome = outcome_of(task)
        if outcome is not None:
            return outcome
    return None


def call_step(
    context: Any,
    activity: str,
    payload: Any,
    policy: RetryPolicy,
    key: str,
    interrupts: Interrupts = NO_INTERRUPTS,
) -> Orchestration:
    """Call `activity` with exponential backoff on durable timers; returns its output or raises StepFailed.

    A step whose output carries an `outcome` recorded the job COMPLETED after checking the deadline itself
    (activities.whole_job, activities.complete), so a deadline that passed while its answer was on its
    way does not interrupt it: the output is returned, and the COMPLETED row never turns FAILED.
    """
    attempt = 1
    trace = JobTrace.of(context)
    while True:
        started = context.current_utc_datetime
        task = context.call_activity(activity, trace.with_parent(payload, key, attempt))
        try:
            yield from race(context, task, interrupts)
        except Interrupted as interrupt:
            if interrupt.reason == "deadline" and outcome_of(task) is not None:
                trace.step_done(context, activity, key, attempt, started)
                return task.result
            raise
        if not failed(task):
            trace.step_done(context, activity, key, attempt, started)
            return task.result
        failure = classify_failure(task.result)
        trace.step_done(context, activity, key, attempt, started, error=failure.error_type)
        if not failure.retryable or attempt >= policy["max_attempts"]:
            error_type = failure.error_type if not failure.retryable else "retries_exhausted"
            raise StepFailed({"type": error_type, "message": f"{key}: {failure.message}", "attempts": attempt})
        delay = backoff_seconds(policy, context.instance_id, key, attempt)
        trace.retry_scheduled(context, key, attempt, delay)
        waiting_from = context.current_utc_datetime
        timer = context.create_timer(waiting_from + timedelta(seconds=delay))
        yield from race(context, timer, interrupts)
        trace.backoff_done(context, key, attempt, waiting_from, delay)
        attempt += 1


def race(context: Any, task: Any, interrupts: Interrupts) -> Orchestration:
    """Wait for `task`, or raise Interrupted if the job is cancelled first or its deadline has passed.

    A task still running when the cancel wins is handed back in Interrupted.pending (a timer is
    cancelled instead). The deadline is checked once the task is done (see Interrupts).
    """
    if interrupts.tasks:
        winner = yield context.task_any([task, *interrupts.tasks])
        reason = interrupts.reason_for(winner)
        if reason is not None:
            raise Interrupted(reason, cancel_timers([task]))
    else:
        try:
            yield task
        except Exception:  # noqa: S110 - the SDK throws a failed task into the generator; callers read task.result
            pass
    interrupts.check(context)


def wait_for_all(context: Any, tasks: Sequence[Any], interrupts: Interrupts = NO_INTERRUPTS) -> Orchestration:
    """Wait until every task has completed, failed or not (the SDK's task_all stops at the first failure).

    If the cancel wins, pending timers are cancelled and the other pending tasks handed back.
    """
    remaining = [task for task in tasks if not task.is_completed]
    while remaining:
        group = context.task_all(remaining)
        if interrupts.tasks:
            winner = yield context.task_any([group, *interrupts.tasks])
            reason = interrupts.reason_for(winner)
            if reason is not None:
                raise Interrupted(reason, cancel_timers(tasks))
        else:
            try:
                yield group
            except Exception:  # noqa: S110 - a failed child is read from the task itself below
                pass
        remaining = [task for task in tasks if not task.is_completed]


def run_chunk_waves(
    context: Any,
    job_id: str,
    indices: Sequence[int],
    policy: RetryPolicy,
    max_parallel: int,
    interrupts: Interrupts = NO_INTERRUPTS,
    on_progress: Callable[[int], Orchestration | None] | None = None,
) -> Orchestration:
    """Process chunks in waves of at most `max_parallel`; failed chunks back off, then join the next wave.

    Waves rather than a sliding window: the Functions host replays an orchestrator's actions in
    order and awaits each, so a task_any over old and new tasks would hold back every later
    schedule until its new task completes. A wave's tasks are all new, so the host and the SDK
    agree on when it is over. Returns the number of chunks processed. Raises StepFailed when a
    chunk fails for good, ChunksStopped when a chunk saw the stop marker or the deadline,
    Interrupted when an interrupt fires.
    """
    queue = deque((index, 1) for index in indices)
    done = 0
    trace = JobTrace.of(context)
    while queue:
        interrupts.check(context)  # no new wave once the deadline has passed
        wave = [queue.popleft() for _ in range(min(max_parallel, len(queue)))]
        inputs: list[ChunkInput] = [{"job_id": job_id, "index": index, "attempt": attempt} for index, attempt in wave]
        started = context.current_utc_datetime
        tasks = [
            context.call_activity(PROCESS_CHUNK, trace.with_parent(chunk, f"chunk-{chunk['index']}", chunk["attempt"]))
            for chunk in inputs
        ]
        yield from wait_for_all(context, tasks, interrupts)
        trace.chunks_done(context, wave, tasks, started)
        retries: list[tuple[int, int]] = []
        error: JobError | None = None
        stopped = False
        for (index, attempt), task in zip(wave, tasks, strict=True):
            if failed(task):
                failure = classify_failure(task.result)
                if failure.retryable and attempt < policy["max_attempts"]:
                    retries.append((index, attempt))
                elif error is None and failure.retryable:
                    message = f"chunk {index} failed {attempt} times: {failure.message}"
                    error = {"type": "retries_exhausted", "message": message, "attempts": attempt}
                elif error is None:
                    error = {"type": failure.error_type, "message": failure.message, "attempts": attempt}
            elif isinstance(task.result, dict) and task.result.get("stopped"):
                stopped = True
            else:
                done += 1
        if error is not None:
            raise StepFailed(error)
        if stopped:
            raise ChunksStopped()
        if on_progress is not None:
            step = on_progress(done)  # may hand back a step to run (the job's progress webhook)
            if step is not None:
                yield from step
        if retries:
            # Each chunk's own backoff (its jitter differs); the retries lead the next wave.
            key = context.instance_id
            delays = [backoff_seconds(policy, key, f"chunk-{index}", attempt) for index, attempt in retries]
            waiting_from = context.current_utc_datetime
            for (index, attempt), delay in zip(retries, delays, strict=True):
                trace.retry_scheduled(context, f"chunk-{index}", attempt, delay)
            yield from back_off(context, job_id, delays, interrupts)
            for (index, attempt), delay in zip(retries, delays, strict=True):
                trace.backoff_done(context, f"chunk-{index}", attempt, waiting_from, delay)
            queue.extendleft(reversed([(index, attempt + 1) for index, attempt in retries]))
    return done


WATCH_FROM_SECONDS = 5.0
"""Backoffs at least this long are watched for the stop marker, so a cancel need not wait them out."""


def back_off(
    context: Any, job_id: str, delays: Sequence[float], interrupts: Interrupts = NO_INTERRUPTS
) -> Orchestration:
    """Wait out backoff timers; a long wait also runs a watcher activity that returns early at the stop marker.

    The host only schedules an orchestrator's next action once the one before it completed, so a job
    cancelled during a 60 s backoff could not even start stopping before the timers fire. The watcher
    completes that action as soon as the API's stop marker (or the job's deadline) appears.
    Raises ChunksStopped if the watcher saw the marker, Interrupted if an interrupt fires; either way
    the backoff timers still waiting are cancelled, so they do not hold the instance open.
    When the timers win, the watcher is left to return on its own (it watches no longer than they run).
    """
    now = context.current_utc_datetime
    timers = [context.create_timer(now + timedelta(seconds=delay)) for delay in delays]
    if max(delays, default=0.0) < WATCH_FROM_SECONDS:
        yield from wait_for_all(context, timers, interrupts)
        return
    watch: WatchInput = {"job_id": job_id, "seconds": max(delays)}
    watcher = context.call_activity(WATCH_FOR_STOP, JobTrace.of(context).under_job(watch))
    timers_done = context.task_all(timers)
    winner = yield context.task_any([timers_done, watcher, *interrupts.tasks])
    reason = interrupts.reason_for(winner)
    if reason is not None:
        raise Interrupted(reason, cancel_timers([*timers, watcher]))
    saw_stop = winner is watcher and not failed(watcher) and isinstance(watcher.result, dict)
    if saw_stop and watcher.result.get("stopped"):
        cancel_timers(timers)  # the backoff is moot: the job is stopping
        raise ChunksStopped()
    if winner is watcher:
        yield from wait_for_all(context, timers, interrupts)  # the watcher gave up early: wait out the backoff
