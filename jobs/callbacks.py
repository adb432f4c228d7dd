"""A job's callback at submit: its events and its URL, refused (422, naming the field) unless it is safe to call.

The URL passes webhooks.guard: https (http only with WEBHOOK_ALLOW_HTTP), and a host whose every
address is public unless allowlisted. The lookup runs off the event loop and is bounded in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from jobs.errors import InvalidRequest, field_error
from shared.contracts import CALLBACK_EVENTS, TERMINAL_EVENTS, Callback
from shared.settings import Settings
from webhooks.guard import CallbackRefused, Resolver, check_destination, resolve_host

RESOLVE_SECONDS = 3.0


class CallbackBody(BaseModel):
    """`callback` of a submission: where to POST the job's events."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: StrictStr = Field(min_length=1, max_length=2000)
    events: list[StrictStr] | None = Field(default=None, min_length=1, max_length=len(CALLBACK_EVENTS))


def _events(events: Iterable[str] | None, field: str) -> list[str]:
    if events is None:
        return list(TERMINAL_EVENTS)
    chosen = list(dict.fromkeys(events))
    unknown = [event for event in chosen if event not in CALLBACK_EVENTS]
    if unknown or not chosen:
        names = ", ".join(CALLBACK_EVENTS)
        raise InvalidRequest("invalid callback events", [field_error(field, f"each one of: {names}")])
    return chosen


async def checked_callback(
    url: str,
    events: Iterable[str] | None,
    settings: Settings,
    *,
    url_field: str = "callback.url",
    events_field: str = "callback.events",
    resolve: Resolver = resolve_host,
) -> Callback:
    """The callback to store with the job; InvalidRequest naming the field if it may not be called."""
    chosen = _events(events, events_field)
    try:
        await asyncio.wait_for(asyncio.to_thread(check_destination, url, settings, resolve), RESOLVE_SECONDS)
    except CallbackRefused as refused:
        raise InvalidRequest("the callback URL is not allowed", [field_error(url_field, str(refused))]) from None
    except TimeoutError:
        raise InvalidRequest(
            "the callback URL is not allowed", [field_error(url_field, "the callback host did not resolve in time")]
        ) from None
    return {"url": url, "events": chosen}
