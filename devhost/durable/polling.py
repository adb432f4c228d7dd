"""Stopping the durable engine's queue polls at shutdown.

A poll is a request to storage that answers in milliseconds, or, with storage down, one the SDK retries
for minutes. A stop gives the polls under way POLL_STOP_SECONDS to return and then cancels them: what a
cancelled poll had received becomes visible again after its visibility timeout, as after a crash (at
least once, as in Azure), so a stop never waits on an outage.

DurableTask.AzureStorage does the same: `AzureStorageOrchestrationService.StopAsync` first cancels
`shutdownSource`, the token its control-queue listeners and `LockNextTaskOrchestrationWorkItemAsync` run
with (src/DurableTask.AzureStorage/AzureStorageOrchestrationService.cs, Azure/durabletask at 52170329), so
the dequeues under way are cancelled rather than waited for. The short wait first is kinder to a healthy
store only in time, never in what is delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

POLL_STOP_SECONDS = 2.0
"""How long a stop waits for a queue poll or a lease renewal under way before it cancels it."""


async def stop_polls(polls: Sequence[asyncio.Task[Any]], grace: float) -> None:
    """Wait for the polls (already told to stop) to return, up to POLL_STOP_SECONDS and never past `grace`;
    cancel those still waiting on storage."""
    if not polls:
        return
    _, stuck = await asyncio.wait(polls, timeout=min(grace, POLL_STOP_SECONDS))
    for poll in stuck:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
