"""The kind registry: every module of the `kinds` package that exposes `KIND` is a job kind, found by discovery.

A kind declares what the API needs to know about it (content types, options model, inline input model, render
formats, a description), so `api/` and the OpenAPI document derive from the registry instead of listing kinds'
details themselves. Adding a kind is adding one module with a `KIND` (and its tests); tests can add a toy kind
for the length of a `with registered(kind):` block.

Discovery imports each module once, lazily, on the first question: modules that hold no kind but load heavy
libraries (Arrow, numpy) are listed in `SUPPORT_MODULES` and never imported here, so instances that only
serve HTTP never load them.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

from pydantic import BaseModel

from kinds.base import JobKind

JSON_FORMAT = "json"
"""The format every kind has: the stored result document itself."""

JSON_MEDIA_TYPE = "application/json"

SUPPORT_MODULES = frozenset({"base", "registry", "csv_columns", "exact_sum", "group_sums"})
"""Modules of the package that are not kinds: discovery skips them (csv_columns and group_sums load Arrow and
numpy, which only the first chunk of a csv-report should pay for). A test checks that every other module
declares a `KIND`, so a new support module cannot be forgotten here."""

_KIND_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_FORMAT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_COMPONENT_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class KindSpec:
    """A registered kind and what the API derives from it (checked once, at registration)."""

    kind: JobKind
    test_only: bool  # registered only where ENABLE_SIMULATE_KIND is true (demos and fault tests)

    @property
    def name(self) -> str:
        """The name clients submit as `kind`."""
        return self.kind.name

    @property
    def description(self) -> str:
        """One or two sentences for the OpenAPI document and error messages."""
        return self.kind.description

    @property
    def requires_input(self) -> bool:
        """Whether a submission must carry an input (inline, raw body or upload)."""
        return self.kind.requires_input

    @property
    def input_content_types(self) -> tuple[str, ...]:
        """Accepted input media types, the first the default for uploads that declare none."""
        return self.kind.input_content_types

    @property
    def accepts_inline_input(self) -> bool:
        """Whether a JSON submission may carry the input in its `input` member."""
        return self.kind.input_model is not None

    @property
    def render_formats(self) -> Mapping[str, str]:
        """Format name -> media type of `?format=`; "json" (the stored result) always comes first."""
        return MappingProxyType({JSON_FORMAT: JSON_MEDIA_TYPE, **self.kind.render_formats})

    def openapi_fragment(self) -> dict[str, Any]:
        """What the OpenAPI document says about this kind, as JSON Schema with refs to `#/components/schemas`.

        `request` is the schema of a JSON submission's kind-specific members (`kind`, `options`, `input`:
        the API adds its own members such as `input_ref`); `components` holds the schemas it refers to.
        """
        components: dict[str, Any] = {}
        options = _schema(self.kind.options_model, components)
        properties: dict[str, Any] = {"kind": {"const": self.name}, "options": options}
        if self.kind.input_model is not None:
            properties["input"] = _schema(self.kind.input_model, components)
        required = ["kind", "options"] if options.get("required") else ["kind"]
        return {
            "name": self.name,
            "description": self.description,
            "requires_input": self.requires_input,
            "input_content_types": list(self.input_content_types),
            "formats": dict(self.render_formats),
            "request": {
                "type": "object",
                "description": self.description,
                "required": required,
                "properties": properties,
            },
            "options": options,
            "components": components,
        }


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema inline, its nested models moved to `components`."""
    schema = model.model_json_schema(ref_template=_COMPONENT_REF)
    components.update(schema.pop("$defs", {}))
    return schema


class _Registry:
    """Kinds by name: the discovered ones plus any a test registered."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._specs: dict[str, KindSpec] | None = None

    def specs(self) -> dict[str, KindSpec]:
        with self._lock:
            if self._specs is None:
                specs: dict[str, KindSpec] = {}
                for module in _kind_modules():
                    spec = _spec_of(module)
                    if spec.name in specs:
                        raise RuntimeError(f"kind {spec.name!r} is declared twice ({module.__name__})")
                    specs[spec.name] = spec
                self._specs = specs
            return self._specs

    def add(self, spec: KindSpec) -> None:
        with self._lock:
            specs = self.specs()
            if spec.name in specs:
                raise ValueError(f"a kind named {spec.name!r} is already registered")
            specs[spec.name] = spec

    def remove(self, name: str) -> None:
        with self._lock:
            self.specs().pop(name, None)


_REGISTRY = _Registry()


def _kind_modules() -> Iterator[ModuleType]:
    package = importlib.import_module("kinds")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in SUPPORT_MODULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kinds.{info.name}")
        if not hasattr(module, "KIND"):
            raise RuntimeError(f"kinds.{info.name} declares no KIND: add it to SUPPORT_MODULES if it is not a kind")
        yield module


def _spec_of(module: ModuleType) -> KindSpec:
    return declare(module.KIND, test_only=bool(getattr(module, "TEST_ONLY", False)))


def declare(kind: JobKind, *, test_only: bool = False) -> KindSpec:
    """The checked spec of a kind; ValueError names what is wrong with its declaration."""
    if not isinstance(kind, JobKind):
        raise ValueError(f"{kind!r} does not follow kinds.base.JobKind")
    where = f"kind {kind.name!r}"
    if not isinstance(kind.name, str) or not _KIND_NAME.fullmatch(kind.name):
        raise ValueError(f"{where}: a name is lowercase letters, digits and '-'")
    if not isinstance(kind.description, str) or not kind.description.strip():
        raise ValueError(f"{where}: needs a description")
    if not (isinstance(kind.options_model, type) and issubclass(kind.options_model, BaseModel)):
        raise ValueError(f"{where}: options_model must be a pydantic model")
    if kind.input_model is not None and not (
        isinstance(kind.input_model, type) and issubclass(kind.input_model, BaseModel)
    ):
        raise ValueError(f"{where}: input_model must be a pydantic model or None")
    types = kind.input_content_types
    if len(set(types)) != len(types) or not all(isinstance(t, str) and _MEDIA_TYPE.fullmatch(t) for t in types):
        raise ValueError(f"{where}: input_content_types must be distinct lowercase media types")
    if kind.requires_input != bool(types):
        raise ValueError(f"{where}: a kind reads input exactly when it accepts some content type")
    if kind.input_model is not None and JSON_MEDIA_TYPE not in types:
        raise ValueError(f"{where}: inline JSON input needs {JSON_MEDIA_TYPE} among the content types")
    for fmt, media_type in kind.render_formats.items():
        if fmt == JSON_FORMAT or not _FORMAT_NAME.fullmatch(fmt) or not _MEDIA_TYPE.fullmatch(media_type.split(";")[0]):
            raise ValueError(f"{where}: bad render format {fmt!r} -> {media_type!r} (json is implicit)")
    return KindSpec(kind=kind, test_only=test_only)


def all_kinds(*, simulate_enabled: bool) -> list[KindSpec]:
    """The kinds that can be submitted, by name."""
    specs = _REGISTRY.specs()
    return [specs[name] for name in sorted(specs) if simulate_enabled or not specs[name].test_only]


def kind_spec(name: str, *, simulate_enabled: bool) -> KindSpec | None:
    """The spec of the kind called `name`, or None if there is none (or it is not enabled)."""
    spec = _REGISTRY.specs().get(name)
    if spec is None or (spec.test_only and not simulate_enabled):
        return None
    return spec


def get_kind(name: str, *, simulate_enabled: bool) -> JobKind | None:
    """The job kind called `name`, or None if there is none (or it is not enabled)."""
    spec = kind_spec(name, simulate_enabled=simulate_enabled)
    return None if spec is None else spec.kind


def kind_names(*, simulate_enabled: bool) -> list[str]:
    """Names of the job kinds that can be submitted, sorted."""
    return [spec.name for spec in all_kinds(simulate_enabled=simulate_enabled)]


def all_input_content_types(*, simulate_enabled: bool) -> list[str]:
    """Every input media type some kind accepts, each once, in kind order then each kind's own order."""
    types = (t for spec in all_kinds(simulate_enabled=simulate_enabled) for t in spec.input_content_types)
    return list(dict.fromkeys(types))


def all_render_formats(*, simulate_enabled: bool) -> list[str]:
    """Every `?format=` value some kind renders ("json" first)."""
    formats = (f for spec in all_kinds(simulate_enabled=simulate_enabled) for f in spec.render_formats)
    return list(dict.fromkeys(formats))


@contextmanager
def registered(kind: JobKind, *, test_only: bool = False) -> Iterator[KindSpec]:
    """Register `kind` for the length of the block (tests: a toy kind without a module in the package)."""
    spec = declare(kind, test_only=test_only)
    _REGISTRY.add(spec)
    try:
        yield spec
    finally:
        _REGISTRY.remove(spec.name)
