"""`longrun`: the job API from a shell. Exit codes: 0 completed, 1 failed (or an error), 2 bad usage,
3 cancelled, 4 timeout. `--json` (before the command) prints JSON for scripts."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from longrun_client import wire
from longrun_client.errors import ConnectionFailed, ProblemError, WaitTimeout
from longrun_client.models import DeadLetter, JobSnapshot, JobStatus
from longrun_client.sync import DEFAULT_URL, Job, LongrunClient

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4
EXIT_FOR_STATUS = {
    JobStatus.COMPLETED: EXIT_COMPLETED,
    JobStatus.FAILED: EXIT_FAILED,
    JobStatus.CANCELLED: EXIT_CANCELLED,
}
USAGE_STATUSES = {400, 413, 415, 422}
"""Problems that say the request itself was wrong: the CLI's "bad usage" (2)."""

app = typer.Typer(
    name="longrun",
    help="Submit, watch and manage longrun jobs. Exit codes: 0 completed, 1 failed, 2 bad usage, 3 cancelled, "
    "4 timeout.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class Settings:
    """The global options, shared by every command."""

    url: str
    key: str | None
    json: bool
    inline_limit: int

    def client(self) -> LongrunClient:
        """A client for these options."""
        return LongrunClient(self.url, key=self.key, max_inline_bytes=self.inline_limit)


_current: Settings | None = None
"""The options of the running command, for main()'s error output."""
out = Console(soft_wrap=True)
err = Console(stderr=True)


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@app.callback()
def main_options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="LONGRUN_URL", help="Where /api is served.")] = DEFAULT_URL,
    key: Annotated[
        str | None, typer.Option("--key", envvar="LONGRUN_KEY", help="Function key (x-functions-key).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
    inline_limit: Annotated[
        int, typer.Option("--inline-limit", envvar="LONGRUN_INLINE_LIMIT", help="Upload files above this (bytes).")
    ] = wire.DEFAULT_MAX_INLINE_BYTES,
) -> None:
    """Submit, watch and manage longrun jobs."""
    global _current
    ctx.obj = _current = Settings(url=url, key=key, json=json_output, inline_limit=inline_limit)


# --- output ------------------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def _summary(snapshot: JobSnapshot) -> None:
    """The end of a job, for people."""
    style = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(snapshot.status.value, "cyan")
    out.print(f"[bold {style}]{snapshot.status.value}[/] job {snapshot.id} ({snapshot.kind})")
    progress = snapshot.progress
    out.print(f"  progress: {progress.completed}/{progress.total} chunks")
    if snapshot.summary:
        for name, value in snapshot.summary.items():
            out.print(f"  {name}: {json.dumps(value) if isinstance(value, dict | list) else value}")
    if snapshot.error:
        out.print(f"  error: {snapshot.error.type}: {snapshot.error.message} (attempts: {snapshot.error.attempts})")


def _show_job(settings: Settings, snapshot: JobSnapshot) -> None:
    if settings.json:
        _print_json(snapshot.raw)
    else:
        _summary(snapshot)


class ChunkRateColumn(ProgressColumn):
    """Chunks per second, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        """The rate, once rich has two samples to estimate it."""
        speed = task.finished_speed or task.speed
        return Text("-- chunks/s" if speed is None else f"{speed:.2f} chunks/s", style="progress.data.speed")


class UploadBar:
    """A bar for a file going to Blob storage through /api/uploads, drawn once the first block is sent."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> UploadBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, sent: int, total: int) -> None:
        """Called by the upload as blocks finish."""
        if not self.enabled:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]uploading  "), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=err,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("upload", total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=sent, total=total)

    def close(self) -> None:
        """Leave the finished bar on the screen."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _follow(settings: Settings, job: Job, timeout: float | None) -> int:
    """Wait for the job, with a live progress bar on a terminal; the exit code of how it ended."""
    live = err.is_terminal and not settings.json
    try:
        if live:
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[phase]:<11}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks"),
                ChunkRateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=err,
                refresh_per_second=8,
            ) as bar:
                task = bar.add_task(job.id, total=None, phase=job.phase)

                def show(snapshot: JobSnapshot) -> None:
                    total = snapshot.progress.total or None
                    bar.update(task, total=total, completed=snapshot.progress.completed, phase=snapshot.phase)

                job.wait(timeout=timeout, on_progress=show)
        else:
            job.wait(timeout=timeout)
    except WaitTimeout as timed_out:
        if settings.json:
            _print_json({**timed_out.snapshot.raw, "timed_out": True})
        err.print(f"[yellow]timeout:[/] {timed_out}", highlight=False)
        return EXIT_TIMEOUT
    _show_job(settings, job.snapshot)
    return EXIT_FOR_STATUS[job.status]


# --- commands ------------------------------------------------------------------------------------------------


def _parse_option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"{text!r}: expected name=value", param_hint="--option")
    try:
        return name, json.loads(value)  # numbers, booleans, lists as JSON
    except ValueError:
        return name, value  # anything else is a string (e.g. metrics=amount,qty)


@app.command()
def submit(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Input file: .csv, .ndjson/.jsonl or .json.")] = None,
    json_input: Annotated[str | None, typer.Option("--json", help="Inline JSON input document.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Job kind (default: from the file's type).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-O", help="Kind option name=value.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job, with a progress bar.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds --wait waits (exit 4).")] = None,
    deadline: Annotated[int | None, typer.Option("--deadline", help="Job deadline in seconds.")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Names the job.")] = None,
) -> None:
    """Submit a job from a FILE or inline --json; --wait follows it to the end."""
    settings = _settings(ctx)
    if file is not None and json_input is not None:
        raise typer.BadParameter("give FILE or --json, not both")
    if file is not None and not file.is_file():
        raise typer.BadParameter(f"{file} is not a file", param_hint="FILE")
    options = dict(_parse_option(text) for text in option or [])
    document: Any = None
    if json_input is not None:
        try:
            document = json.loads(json_input)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
    if kind is None:
        if file is None:
            raise typer.BadParameter("--kind is required without a FILE", param_hint="--kind")
        try:
            kind = wire.kind_for(wire.content_type_of(file))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="FILE") from None
    with settings.client() as client, UploadBar(enabled=err.is_terminal and not settings.json) as upload_bar:
        job = client.submit(
            kind, document, options=options, file=file, idempotency_key=idempotency_key, deadline_seconds=deadline,
            upload_progress=upload_bar.update,
        )  # fmt: skip
        upload_bar.close()
        if not wait:
            if settings.json:
                _print_json(job.snapshot.raw)
            else:
                out.print(f"submitted job {job.id} ({job.kind}): {job.status.value}")
                out.print(f"  watch it: longrun watch {job.id}")
            return
        raise typer.Exit(_follow(settings, job, timeout))


@app.command()
def watch(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to watch (exit 4).")] = None,
) -> None:
    """Follow a job with a live progress bar (phase, chunks, rate, ETA); ends with its result summary."""
    settings = _settings(ctx)
    with settings.client() as client:
        raise typer.Exit(_follow(settings, client.job(job_id), timeout))


@app.command()
def result(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    format: Annotated[str | None, typer.Option("--format", help="A format the kind renders, e.g. csv.")] = None,  # noqa: A002
) -> None:
    """Print or save a COMPLETED job's result."""
    settings = _settings(ctx)
    with settings.client() as client:
        job = client.job(job_id)
        if output is not None:
            path = job.result_to(output, format=format)
            if settings.json:
                _print_json({"id": job.id, "path": str(path), "bytes": path.stat().st_size})
            else:
                out.print(f"wrote {path} ({path.stat().st_size} bytes)")
            return
        document = job.result(format=format)
        if isinstance(document, bytes):
            sys.stdout.buffer.write(document)
            sys.stdout.flush()
        else:
            _print_json(document)


@app.command()
def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Ask a job to stop (it ends CANCELLED)."""
    settings = _settings(ctx)
    with settings.client() as client:
        job = client.job(job_id).cancel()
        if settings.json:
            _print_json(job.snapshot.raw)
        else:
            out.print(f"cancel requested for job {job.id}: {job.status.value}")


@app.command("ls")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="PENDING, RUNNING, COMPLETED, ...")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many jobs.")] = 20,
    page_size: Annotated[int, typer.Option("--page-size", help="Jobs per request (1-100).")] = 50,
) -> None:
    """Jobs, newest first (a table; --json for the resources)."""
    settings = _settings(ctx)
    with settings.client() as client:
        jobs: list[Job] = []
        for job in client.jobs(status=status, kind=kind, page_size=min(page_size, max(limit, 1))):
            if len(jobs) >= limit:
                break
            jobs.append(job)
    if settings.json:
        _print_json([job.snapshot.raw for job in jobs])
        return
    table = Table("id", "kind", "status", "chunks", "created")
    for job in jobs:
        table.add_row(
            job.id, job.kind, job.status.value, f"{job.progress.completed}/{job.progress.total}",
            job.snapshot.created_at,
        )  # fmt: skip
    out.print(table)


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 20,
) -> None:
    """Failed jobs and poison messages, newest first."""
    settings = _settings(ctx)
    with settings.client() as client:
        letters: list[DeadLetter] = []
        for letter in client.dead_letters(page_size=min(max(limit, 1), 100)):
            if len(letters) >= limit:
                break
            letters.append(letter)
    if settings.json:
        _print_json([letter.raw for letter in letters])
        return
    table = Table("id", "source", "job", "kind", "error", "created")
    for letter in letters:
        table.add_row(
            letter.id, letter.source, letter.job_id or "", letter.kind or "", letter.error_type, letter.created_at
        )
    out.print(table)


@app.command()
def replay(
    ctx: typer.Context,
    dead_letter_id: Annotated[str, typer.Argument(help="Dead letter id (see dead-letters).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the new job.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds --wait waits (exit 4).")] = None,
) -> None:
    """Submit a failed job again as a new job."""
    settings = _settings(ctx)
    with settings.client() as client:
        job = client.replay(dead_letter_id)
        if wait:
            raise typer.Exit(_follow(settings, job, timeout))
        if settings.json:
            _print_json(job.snapshot.raw)
        else:
            out.print(f"replayed as job {job.id} ({job.kind}): {job.status.value}")


@app.command()
def health(ctx: typer.Context) -> None:
    """Storage reachability, queue depths and job counts (exit 1 when unavailable)."""
    settings = _settings(ctx)
    with settings.client() as client:
        report = client.health()
    if settings.json:
        _print_json(report.raw)
    else:
        out.print(f"status: {report.status} (storage: {report.storage})")
        for name, depth in report.queues.items():
            out.print(f"  queue {name}: {depth}")
        for name, count in report.jobs.items():
            out.print(f"  jobs {name}: {count}")
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """The console script: run the app, turning API problems and connection failures into exit codes."""
    try:
        app()
    except ProblemError as problem:
        if _current is not None and _current.json:
            _print_json({"problem": problem.body or {"status": problem.status, "title": problem.title}})
        err.print(f"[red]error:[/] {problem}", highlight=False)
        sys.exit(EXIT_USAGE if problem.status in USAGE_STATUSES else EXIT_FAILED)
    except ConnectionFailed as failure:
        err.print(f"[red]error:[/] {failure}", highlight=False)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
