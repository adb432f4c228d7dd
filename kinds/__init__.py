"""Job kinds: each kind is one module with plan / process_chunk / merge, found by the registry.

Adding a kind: write `kinds/<name>.py` with a class following `kinds.base.JobKind` and a module-level `KIND`
instance (and `TEST_ONLY = True` if it is for demos and fault tests only); `kinds.registry` discovers it.
Kinds are pure Python over a `kinds.base.ByteSource`: no Azure, no Durable.
"""

from __future__ import annotations

from kinds.registry import (
    KindSpec,
    all_input_content_types,
    all_kinds,
    all_render_formats,
    get_kind,
    kind_names,
    kind_spec,
    registered,
)

__all__ = [
    "KindSpec",
    "all_input_content_types",
    "all_kinds",
    "all_render_formats",
    "get_kind",
    "kind_names",
    "kind_spec",
    "registered",
]
