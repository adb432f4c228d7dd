"""Wire the pieces together: storage, language workers, Durable dispatchers, HTTP, queues and timers."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from aiohttp import web
from azure.storage.queue.aio import QueueServiceClient

from devhost import streams
from devhost.azurite import development_connection_string
from devhost.config import ConfigError, HostConfig
from devhost.durable.activities import ActivityDispatcher
from devhost.durable.engine import OrchestrationEngine
from devhost.durable.management import ManagementApi
from devhost.durable.store import CLIENT_OPTIONS, TaskHubStore
from devhost.durable.timings import DurableTimings
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionInvoker
from devhost.server import HttpFront
from devhost.triggers import QueueListener, TimerRunner
from devhost.workers import ActivityFailure, WorkerPool

log = logging.getLogger("devhost")


class OrchestratorFailure(Exception):
    """The SDK raised: its message carries the OrchestratorState after the $OutOfProcData$ marker."""


SHUTDOWN_GRACE = 30.0


def storage_connection_string() -> str:
    """AzureWebJobsStorage, with `UseDevelopmentStorage=true` turned into Azurite's connection string."""
    value = os.environ.get("AzureWebJobsStorage", "").strip()
    if not value:
        raise ConfigError("AzureWebJobsStorage is not set (local.settings.json Values or the environment)")
    if value.rstrip(";").lower() == "usedevelopmentstorage=true":
        return development_connection_string()
    return value


def _untraced_host_sdk() -> None:
    """Keep the host's own storage calls out of the app's tracing.

    The host imported the app only to index it, and the app's import turned on azure-core's OpenTelemetry
    tracing process-wide (shared/observability.py, meant for the worker): every storage call of the
    Durable backend then built a span, about a tenth of the host's CPU per job. The real host is .NET and
    reports no spans into the app's traces; the app's own calls are traced in the workers, which are
    spawned fresh and configure themselves.
    """
    from azure.core.settings import settings

    settings.tracing_enabled = False


class Host:
    """One Functions host: storage, language workers, Durable dispatchers, HTTP, queue and timer triggers."""

    def __init__(
        self,
        config: HostConfig,
        specs: list[FunctionSpec],
        *,
        port: int,
        enforce_auth: bool,
        timers: bool,
        verbose: bool,
    ) -> None:
        _untraced_host_sdk()
        self.config = config
        self.specs = specs
        self.port = port
        self.enforce_auth = enforce_auth
        self.timers_enabled = timers
        self.verbose = verbose
        self.connection_string = storage_connection_string()
        self.store = TaskHubStore(self.connection_string, config.hub_name, config.partition_count)
        self.pool = WorkerPool(config.app_dir, config.worker_process_count, config.worker_thread_count)
        self.invoker = FunctionInvoker(self.pool, config.function_timeout)
        orchestrators = {
            s.name: self._orchestrator_invoker(s) for s in specs if s.trigger_type == "orchestrationTrigger"
        }
        activity_names = {s.name for s in specs if s.trigger_type == "activityTrigger"}
        self.dispatcher: ActivityDispatcher | None = None
        self.engine = OrchestrationEngine(
            self.store,
            orchestrators=orchestrators,
            activity_names=activity_names,
            max_concurrent=config.max_concurrent_orchestrations,
            batch_size=config.control_queue_batch_size,
            max_polling_interval=config.max_queue_polling_interval,
            verbose=verbose,
            timings=DurableTimings.load(config.raw_host_json),
        )
        self.dispatcher = ActivityDispatcher(
            self.store,
            self.pool,
            self.engine,
            max_concurrent=config.max_concurrent_activities,
            max_polling_interval=config.max_queue_polling_interval,
            function_timeout=config.function_timeout,
            timings=self.engine.timings,
        )
        self.engine.activity_sink = self.dispatcher
        self.management = ManagementApi(self.engine, config.hub_name, config.system_key, enforce_auth)
        self.front = HttpFront(config, specs, self.invoker, self.management, enforce_auth, streams=streams.enabled())
        self.queue_service = QueueServiceClient.from_connection_string(self.connection_string, **CLIENT_OPTIONS)
        origin = f"http://127.0.0.1:{port}"
        binding = lambda: self.management.client_binding(origin, origin)  # noqa: E731
        self.listeners = [
            QueueListener(s, self.queue_service, config, self.invoker, binding)
            for s in specs
            if s.trigger_type == "queueTrigger"
        ]
        self.timers = [TimerRunner(s, self.invoker, binding) for s in specs if s.trigger_type == "timerTrigger"]
        self.runner: web.AppRunner | None = None

    def _orchestrator_invoker(self, spec: FunctionSpec) -> Any:
        async def invoke(name: str, context_json: str) -> str:
            # As in the Python worker, a replay runs in a worker process on the same thread pool as
            # activities and HTTP, queue and timer functions: it waits for a free thread like any
            # synchronous function, and never blocks this process's event loop.
            try:
                answer = await self.pool.call(name, context_json, None, kind="orchestrator")
            except ActivityFailure as failure:
                raise OrchestratorFailure(failure.message) from None
            return str(answer)

        return invoke

    async def start(self) -> None:
        """Create the task hub if needed, start the workers, then serve HTTP and run the triggers."""
        await self.store.create_if_missing()
        await self.pool.start()
        # auto_decompress=False: the host decodes no request body (there is no request decompression anywhere in
        # Azure/azure-functions-host, and DefaultHttpProxyService forwards the bytes as they came), so a
        # function sees a content-coded body and its Content-Encoding as the client sent them.
        self.runner = web.AppRunner(
            self.front.build(), access_log=None, handle_signals=False, shutdown_timeout=10, auto_decompress=False
        )
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.engine.start()
        assert self.dispatcher is not None
        self.dispatcher.start()
        for listener in self.listeners:
            listener.start()
        if self.timers_enabled:
            for timer in self.timers:
                timer.start()
        self._print_functions()

    def _print_functions(self) -> None:
        lines = ["", "Functions:", ""]
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        for spec in sorted(self.specs, key=lambda s: s.name):
            if spec.trigger_type == "httpTrigger" and spec.route:
                methods = ",".join(spec.methods) or "all"
                lines.append(f"\t{spec.name}: [{methods}] http://127.0.0.1:{self.port}{prefix}/{spec.route.template}")
            else:
                lines.append(f"\t{spec.name}: {spec.trigger_type}")
        lines += ["", f"Task hub: {self.config.hub_name}; workers: {self.config.worker_process_count} processes", ""]
        log.info("\n".join(lines))

    async def stop(self) -> None:
        """Stop taking work, let in-flight invocations finish within the grace period, then close."""
        log.info("Stopping the host: no new work; waiting up to %.0fs for in-flight invocations.", SHUTDOWN_GRACE)
        deadline = time.monotonic() + SHUTDOWN_GRACE  # one grace period for all of it, not one per stage

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        self.front.accepting = False
        for timer in self.timers:
            await timer.stop()
        await asyncio.gather(*(listener.stop(remaining()) for listener in self.listeners))
        assert self.dispatcher is not None
        await self.dispatcher.stop(remaining())
        await self.engine.stop(remaining())
        if self.runner is not None:
            await self.runner.cleanup()
        await self.front.proxy.close()
        await self.pool.stop(5.0)
        await self.queue_service.close()
        await self.store.close()
        # The SDK's client keeps one shared aiohttp session for its calls to the host; the worker closes it
        # at exit, and so do we, so shutdown logs no "unclosed session" noise.
        from azure.durable_functions.models.utils import http_utils

        await http_utils._close_session()
        log.info("Host stopped.")
