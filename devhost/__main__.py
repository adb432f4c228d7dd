"""`python -m devhost`: serve function_app.py locally the way `func start` does."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from devhost.telemetry import JobSummaries, OtlpReceiver
from devhost.workers import close_http_sessions


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_UtcFormatter("[%(asctime)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("azure", "aiohttp.access", "urllib3", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("devhost.durable").setLevel(logging.INFO)
    if not verbose:
        logging.getLogger("devhost.activities").setLevel(logging.INFO)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python -m devhost`."""
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=None, help="HTTP port (default: local settings Host.LocalHttpPort or 7071)"
    )
    parser.add_argument("--no-timers", action="store_true", help="do not run timer triggers")
    parser.add_argument("--enforce-auth", action="store_true", help="require function keys as Azure does")
    parser.add_argument(
        "--verbose", action="store_true", help="log every orchestration episode and print each job's trace"
    )
    parser.add_argument(
        "--log-episodes", action="store_true", help="log every orchestration episode (no trace summaries)"
    )
    parser.add_argument("--with-azurite", action="store_true", help="start Azurite on 10000-10002 unless it runs")
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder with host.json and function_app.py")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    from devhost.config import load_config
    from devhost.host import Host
    from devhost.indexing import index_functions, load_app

    started = time.perf_counter()
    app_dir = args.app_dir
    config = load_config(app_dir)
    receiver = _start_trace_summaries(args.verbose)
    specs = index_functions(load_app(app_dir), config.route_prefix)
    host = Host(
        config,
        specs,
        port=args.port or config.http_port,
        enforce_auth=args.enforce_auth,
        timers=not args.no_timers,
        verbose=args.verbose or args.log_episodes,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await host.start()
    gc.freeze()  # the host's start-up heap lives until it stops: out of the cyclic collector's full passes
    logging.getLogger("devhost").info(
        "Host started in %.2fs: http://127.0.0.1:%d (Ctrl+C to stop)", time.perf_counter() - started, host.port
    )
    await stop.wait()
    await host.stop()
    await close_http_sessions()
    if receiver is not None:
        receiver.stop()
    return 0


def _start_trace_summaries(verbose: bool) -> OtlpReceiver | None:
    """With --verbose or DEVHOST_TRACE_SUMMARY (and no collector configured): print each job's trace.

    The workers are spawned later and inherit the endpoint, so they export to the receiver on loopback.
    """
    wanted = verbose or os.environ.get("DEVHOST_TRACE_SUMMARY", "").strip().lower() in ("1", "true", "yes")
    if (
        not wanted
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    ):
        return None
    summaries: list[JobSummaries] = []
    receiver = OtlpReceiver(on_spans=lambda spans: summaries[0].on_spans(spans)).start()
    summaries.append(JobSummaries(receiver.telemetry))
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "500")  # spans reach the summary within a second
    logging.getLogger("devhost").info("Trace summaries on: workers export OTLP to %s", receiver.endpoint)
    return receiver


def main(argv: list[str] | None = None) -> int:
    """Serve the app until SIGINT/SIGTERM; the exit code is 2 for start-up errors."""
    args = parse_args(argv)
    args.app_dir = args.app_dir.resolve()
    _configure_logging(args.verbose)
    sys.path.insert(0, str(args.app_dir))
    os.chdir(args.app_dir)
    from devhost.config import ConfigError

    azurite = None
    try:
        if args.with_azurite:
            from devhost.azurite import ensure_azurite

            azurite = ensure_azurite(args.app_dir)
        return asyncio.run(_serve(args))
    except ConfigError as exc:
        print(f"devhost: cannot start: {exc}", file=sys.stderr)
        return 2
    finally:
        if azurite is not None:
            azurite.terminate()
            azurite.wait(10)


if __name__ == "__main__":
    sys.exit(main())
