"""Invoke app functions in the host process (HTTP, queue and timer triggers), with one log line each."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from devhost.indexing import FunctionSpec

log = logging.getLogger("devhost.functions")


class FunctionInvoker:
    def __init__(self, threads: int, function_timeout: float | None) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(4, threads), thread_name_prefix="function")
        self.function_timeout = function_timeout
        self.active = 0

    async def invoke(self, spec: FunctionSpec, kwargs: dict[str, Any], detail: str = "") -> Any:
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()
        self.active += 1
        outcome = "Succeeded"
        try:
            if spec.is_async:
                return await asyncio.wait_for(spec.user_function(**kwargs), self.function_timeout)
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self.executor, partial(spec.user_function, **kwargs))
            return await asyncio.wait_for(call, self.function_timeout)
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

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
