"""One trace per job: W3C trace context carried from the submit request through every step of the job.

The client's `traceparent` (or a new trace) is the parent of the submit span; the submit span's context is
stored with the job (JobRecord.traceparent → JobStart.traceparent), so the orchestration, its steps, the
activities, the final status read and webhook deliveries all join that trace.

Orchestrators replay, so they must not emit spans as they go. They emit each span once, when what it
measures is over and the orchestration is not replaying, with a span id derived from the job id and the
step (`span_id_for`): the activity of a step is started with that id as its parent before the step's own
span is emitted, and a replay that emits again (an episode that crashed after emitting) repeats the same
ids rather than inventing new ones. Activities start their span as a child of the `traceparent` in their
input (`traced_activity`).

Attributes are ids, kinds, names, counts and durations only: never payloads, keys or URLs with tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "longrun"
TRACEPARENT = "traceparent"
"""The key of the parent's W3C trace context in every activity input and in JobStart."""

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_PROPAGATOR = TraceContextTextMapPropagator()
_forced_span_id: ContextVar[int | None] = ContextVar("longrun_forced_span_id", default=None)

AttributeValue = str | bool | int | float


class DeterministicIds(IdGenerator):
    """The provider's id generator, except that a span started by `record_span` gets the id it was given."""

    def __init__(self, inner: IdGenerator | None = None) -> None:
        """Wrap `inner` (random ids by default)."""
        self.inner = inner or RandomIdGenerator()

    def generate_span_id(self) -> int:
        """The forced id when one is set, else the inner generator's."""
        forced = _forced_span_id.get()
        return forced if forced is not None else self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        """Trace ids are never forced: a new trace's id is random."""
        return self.inner.generate_trace_id()


def install_deterministic_ids(provider: Any) -> None:
    """Let `record_span` choose span ids on an SDK TracerProvider (its `id_generator` is public)."""
    current = getattr(provider, "id_generator", None)
    if current is not None and not isinstance(current, DeterministicIds):
        provider.id_generator = DeterministicIds(current)


_TRACER: tuple[object, trace.Tracer] | None = None  # (the provider it came from, the tracer)


def tracer() -> trace.Tracer:
    """The app's tracer (a no-op until shared.observability configured a provider).

    Kept per provider: the SDK's get_tracer installs a warnings filter and builds two scope objects on every
    call, a few percent of a worker's CPU when every submit and step asks for it (issue #15).
    """
    global _TRACER
    provider = trace.get_tracer_provider()
    kept = _TRACER
    if kept is None or kept[0] is not provider:
        kept = _TRACER = (provider, trace.get_tracer(TRACER_NAME))
    return kept[1]


# --- trace context ------------------------------------------------------------------------------------


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) of a valid W3C version-00 traceparent, else None (never raises)."""
    match = _TRACEPARENT.fullmatch((value or "").strip().lower())
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a traceparent, or None."""
    parsed = parse_traceparent(traceparent)
    return parsed[0] if parsed else None


def format_traceparent(trace_id: str, span_id: int | str, sampled: bool = True) -> str:
    """A W3C traceparent."""
    span = span_id if isinstance(span_id, str) else f"{span_id:016x}"
    return f"00-{trace_id}-{span}-{'01' if sampled else '00'}"


def span_id_for(*parts: object) -> int:
    """A non-zero 64-bit span id derived from `parts` (the same on every replay)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def trace_id_for(job_id: str) -> str:
    """A trace id for a job that was started without trace context (jobs started before tracing existed)."""
    return hashlib.sha256(f"longrun-trace|{job_id}".encode()).hexdigest()[:32]


def context_from(traceparent: str | None) -> otel_context.Context:
    """An OpenTelemetry context whose remote parent is `traceparent` (an empty context if it is invalid)."""
    if parse_traceparent(traceparent) is None:
        return otel_context.Context()
    return _PROPAGATOR.extract({TRACEPARENT: str(traceparent)}, context=otel_context.Context())


@contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """Make `traceparent` the current context inside the block (events logged there join its trace)."""
    if parse_traceparent(traceparent) is None:
        yield
        return
    token = otel_context.attach(context_from(traceparent))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_traceparent() -> str | None:
    """The traceparent of the current span, or None when there is no valid current span."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format_traceparent(f"{span_context.trace_id:032x}", span_context.span_id, span_context.trace_flags.sampled)


def new_traceparent() -> str:
    """A sampled traceparent for a new trace (used when no SDK records spans, so ids still exist)."""
    return format_traceparent(secrets.token_hex(16), secrets.token_hex(8))


# --- spans --------------------------------------------------------------------------------------------


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    return {key: value for key, value in (attributes or {}).items() if isinstance(value, str | bool | int | float)}


@contextmanager
def span(
    name: str,
    parent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span that is current inside the block, child of `parent` (a traceparent) or of the current span.

    An exception leaving the block marks the span as an error (its type only: messages can carry data).
    """
    ctx = context_from(parent) if parent is not None and parse_traceparent(parent) else None
    with tracer().start_as_current_span(
        name,
        context=ctx,
        kind=kind,
        attributes=_clean(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            current.set_attribute("error.type", type(exc).__name__)
            raise


def record_span(
    name: str,
    *,
    parent: str | None,
    span_id: int | None,
    start: datetime,
    end: datetime,
    attributes: Mapping[str, Any] | None = None,
    error: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> None:
    """Emit a finished span with a chosen id (None: a random one) and times (see the module docstring)."""
    if parse_traceparent(parent) is None:
        return
    token = _forced_span_id.set(span_id)
    try:
        recorded = tracer().start_span(
            name, context=context_from(parent), kind=kind, attributes=_clean(attributes), start_time=_ns(start)
        )
    finally:
        _forced_span_id.reset(token)
    if error:
        recorded.set_status(Status(StatusCode.ERROR, error))
        recorded.set_attribute("error.type", error)
    recorded.end(end_time=max(_ns(end), _ns(start)))


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


@contextmanager
def activity_span(name: str, payload: Any) -> Iterator[Span]:
    """The span of one activity run: a child of the traceparent in its input (a dict), if it has one."""
    parent = payload.get(TRACEPARENT) if isinstance(payload, dict) else None
    if parse_traceparent(parent) is None:
        # No trace context (a job from before tracing, a watcher): a root span would start a stray trace.
        yield trace.INVALID_SPAN
        return
    with span(
        f"activity {name}", parent=parent, attributes={"job.id": _job_id_of(payload), "activity": name}
    ) as current:
        yield current


def _job_id_of(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("job_id"), str):
        return str(payload["job_id"])
    start = payload.get("start")
    return str(start["job_id"]) if isinstance(start, dict) and isinstance(start.get("job_id"), str) else None


@contextmanager
def webhook_delivery_span(
    job_traceparent: str | None, *, job_id: str, event: str, attempt: int, receiver_host: str
) -> Iterator[Span]:
    """The span of one webhook delivery attempt, in the job's trace (for the webhooks branch to call).

    Give the receiver's host name only, never its full URL (query strings carry tokens).
    """
    attributes = {"job.id": job_id, "webhook.event": event, "webhook.attempt": attempt, "server.address": receiver_host}
    with span("webhook delivery", parent=job_traceparent, attributes=attributes, kind=SpanKind.CLIENT) as current:
        yield current
