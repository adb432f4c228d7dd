"""Invoke HTTP, queue and timer functions in the language workers, with one log line each."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from devhost.indexing import FunctionSpec
from devhost.workers import WorkerPool

log = logging.getLogger("devhost.functions")


class FunctionInvoker:
    """Send a trigger's invocation to a worker process, where the Python worker would run it.

    The worker runs a synchronous function on its PYTHON_THREADPOOL_THREAD_COUNT pool, shared with
    activities and orchestrator replays, and an async function on its event loop; none of it runs in
    the host process.
    """

    def __init__(self, pool: WorkerPool, function_timeout: float | None) -> None:
        self.pool = pool
        self.function_timeout = function_timeout
        self.active = 0

    async def invoke(
        self,
        spec: FunctionSpec,
        kind: str,
        payload: dict[str, Any],
        detail: str = "",
        *,
        worker: Any = None,
        invocation_id: str | None = None,
        forwarded: Awaitable[Any] | None = None,
    ) -> Any:
        """Run `spec` with the trigger `payload` ("http", "queue" or "timer"); raise what the function raised.

        `functionTimeout` applies as in the host: the call fails with TimeoutError and the worker that
        ran over is recycled. An HTTP stream names its `worker` (the one its request is proxied to) and
        ends with its `forwarded` response: the host's `InvokeResponse` awaits
        `EnsureSuccessfulForwardingAsync` before the invocation's result, and fails it when proxying failed.
        """
        invocation_id = invocation_id or str(uuid.uuid4())
        started = time.perf_counter()
        self.active += 1
        outcome = "Succeeded"
        try:
            result = await self.pool.call(spec.name, payload, self.function_timeout, kind=kind, worker=worker)
            if forwarded is not None:
                await forwarded
            return result
        except BaseException:
            outcome = "Failed"
            raise
        finally:
            self.active -= 1
            duration = (time.perf_counter() - started) * 1000
            suffix = f", {detail}" if detail else ""
            log.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms%s)",
                spec.name,
                outcome,
                invocation_id,
                duration,
                suffix,
            )
