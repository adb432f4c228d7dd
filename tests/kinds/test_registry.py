"""The kind registry: discovery of kind modules, what each kind declares, and toy kinds added by tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kinds
from kinds import registry
from kinds.base import BytesSource, JobKind
from tests.kinds import toy_kind

ROOT = Path(__file__).resolve().parents[2]

SAMPLE_INPUTS: dict[str, tuple[bytes | None, dict[str, Any]]] = {
    "csv-report": (b"g,v\na,1\nb,2\na,3\n", {"group_by": "g", "metrics": ["v"]}),
    "vector-normalize": (b"[3,4]\n[0,0]\n", {}),
    "simulate": (None, {"chunks": 2}),
}


def never() -> bool:
    return False


def run(kind: JobKind, data: bytes | None, raw_options: dict[str, Any]) -> dict[str, Any]:
    source = None if data is None else BytesSource(data)
    options = kind.parse_options(raw_options)
    plan = kind.plan(source, options, 1 << 20, 10)
    return kind.merge([kind.process_chunk(source, chunk, options, 1, never) for chunk in plan], options)


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that discovers again, so a test can change what the package holds."""
    monkeypatch.setattr(registry, "_REGISTRY", registry._Registry())


def test_discovered_kinds_and_the_simulate_gate() -> None:
    assert kinds.kind_names(simulate_enabled=False) == ["csv-report", "vector-normalize"]
    assert kinds.kind_names(simulate_enabled=True) == ["csv-report", "simulate", "vector-normalize"]
    assert kinds.get_kind("simulate", simulate_enabled=False) is None
    assert kinds.get_kind("nope", simulate_enabled=True) is None
    spec = kinds.kind_spec("vector-normalize", simulate_enabled=False)
    assert spec is not None and spec.kind is kinds.get_kind("vector-normalize", simulate_enabled=False)


def test_content_types_and_formats_come_from_the_kinds() -> None:
    """What api/jobs.py, api/uploads.py and api/openapi.py listed by hand, derived from the kinds."""
    assert kinds.all_input_content_types(simulate_enabled=True) == [
        "text/csv",
        "application/json",
        "application/x-ndjson",
    ]
    csv_spec = kinds.kind_spec("csv-report", simulate_enabled=False)
    vectors = kinds.kind_spec("vector-normalize", simulate_enabled=False)
    simulate = kinds.kind_spec("simulate", simulate_enabled=True)
    assert csv_spec is not None and vectors is not None and simulate is not None
    assert dict(csv_spec.render_formats) == {"json": "application/json", "csv": "text/csv; charset=utf-8"}
    # The drift the OpenAPI document had: vector-normalize renders ndjson too.
    assert list(vectors.render_formats) == ["json", "ndjson", "csv"]
    assert list(simulate.render_formats) == ["json"]
    assert kinds.all_render_formats(simulate_enabled=True) == ["json", "csv", "ndjson"]
    assert (vectors.input_content_types[0], vectors.accepts_inline_input) == ("application/json", True)
    assert (csv_spec.accepts_inline_input, simulate.requires_input, simulate.input_content_types) == (False, False, ())


@pytest.mark.parametrize("name", sorted(SAMPLE_INPUTS))
def test_every_declared_format_renders_and_no_other(name: str) -> None:
    spec = kinds.kind_spec(name, simulate_enabled=True)
    assert spec is not None
    data, options = SAMPLE_INPUTS[name]
    result = run(spec.kind, data, options)
    for fmt, media_type in spec.render_formats.items():
        if fmt == "json":
            continue
        rendered = spec.kind.render(result, fmt)
        assert rendered is not None and rendered[1] == media_type and rendered[0]
    for fmt in ("json", "xml", *kinds.all_render_formats(simulate_enabled=True)):
        if fmt not in spec.render_formats or fmt == "json":
            assert spec.kind.render(result, fmt) is None


@pytest.mark.parametrize("name", sorted(SAMPLE_INPUTS))
def test_openapi_fragment(name: str) -> None:
    spec = kinds.kind_spec(name, simulate_enabled=True)
    assert spec is not None
    fragment = spec.openapi_fragment()
    assert json.loads(json.dumps(fragment)) == fragment
    assert fragment["name"] == name and fragment["description"] == spec.description
    assert fragment["formats"] == dict(spec.render_formats)
    assert fragment["input_content_types"] == list(spec.input_content_types)
    request = fragment["request"]
    assert request["properties"]["kind"] == {"const": name}
    assert request["properties"]["options"] == fragment["options"]
    assert ("input" in request["properties"]) == spec.accepts_inline_input
    assert "$defs" not in json.dumps(fragment)  # nested models go to components, referenced from there
    options_schema = spec.kind.options_model.model_json_schema()
    assert fragment["options"]["properties"] == options_schema["properties"]


def test_the_options_schema_names_what_the_kind_accepts() -> None:
    spec = kinds.kind_spec("csv-report", simulate_enabled=False)
    assert spec is not None
    fragment = spec.openapi_fragment()
    options = fragment["options"]
    assert options["required"] == ["group_by"] and options["additionalProperties"] is False
    assert set(options["properties"]) == {"group_by", "metrics"}
    assert fragment["request"]["required"] == ["kind", "options"]  # group_by has no default
    # metrics may come as "a,b" (query parameters of raw bodies): the schema says so.
    assert {"type": "string"} in options["properties"]["metrics"]["anyOf"]
    simulate = kinds.kind_spec("simulate", simulate_enabled=True)
    assert simulate is not None and simulate.openapi_fragment()["request"]["required"] == ["kind"]
    vectors = kinds.kind_spec("vector-normalize", simulate_enabled=False)
    assert vectors is not None
    assert "vector_data" in vectors.openapi_fragment()["request"]["properties"]["input"]["properties"]


def test_a_toy_kind_registered_by_a_test_is_listed_and_resolvable() -> None:
    assert kinds.get_kind("line-count", simulate_enabled=True) is None
    with kinds.registered(toy_kind.KIND) as spec:
        assert "line-count" in kinds.kind_names(simulate_enabled=False)
        assert kinds.get_kind("line-count", simulate_enabled=False) is toy_kind.KIND
        assert "text/plain" in kinds.all_input_content_types(simulate_enabled=False)
        assert "text" in kinds.all_render_formats(simulate_enabled=False)
        assert spec.openapi_fragment()["formats"] == {"json": "application/json", "text": toy_kind.TEXT}
        result = run(spec.kind, b"a\n\nb\n", {"skip_blank": True})
        assert result == {"lines": 2}
        assert spec.kind.render(result, "text") == (b"2\n", toy_kind.TEXT)
        with pytest.raises(ValueError, match="already registered"):
            with kinds.registered(toy_kind.KIND):
                pass
    assert kinds.get_kind("line-count", simulate_enabled=True) is None
    assert "line-count" not in kinds.kind_names(simulate_enabled=True)


def test_a_test_only_toy_kind_follows_the_simulate_gate() -> None:
    with kinds.registered(toy_kind.KIND, test_only=True):
        assert kinds.get_kind("line-count", simulate_enabled=False) is None
        assert kinds.get_kind("line-count", simulate_enabled=True) is toy_kind.KIND


def test_a_new_kind_is_one_module_found_by_discovery(
    fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropping the toy kind's module into the package (nothing else) makes it a kind."""
    shutil.copy(Path(toy_kind.__file__), tmp_path / "line_count.py")
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "kinds.line_count", raising=False)
    try:
        assert kinds.kind_names(simulate_enabled=False) == ["csv-report", "line-count", "vector-normalize"]
        kind = kinds.get_kind("line-count", simulate_enabled=False)
        assert kind is not None and type(kind).__module__ == "kinds.line_count"
        assert run(kind, b"x\ny\n", {}) == {"lines": 2}
    finally:
        sys.modules.pop("kinds.line_count", None)


def test_a_module_without_a_kind_must_be_declared_support(
    fresh_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "stray_helper.py").write_text('"""Not a kind."""\n')
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    try:
        with pytest.raises(RuntimeError, match="stray_helper declares no KIND"):
            kinds.kind_names(simulate_enabled=True)
    finally:
        sys.modules.pop("kinds.stray_helper", None)


class _Broken(toy_kind.LineCount):
    pass


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Line Count"}, "lowercase"),
        ({"description": " "}, "description"),
        ({"options_model": dict}, "options_model"),
        ({"input_content_types": ("text/plain", "text/plain")}, "distinct"),
        ({"input_content_types": ("Text/Plain",)}, "distinct"),
        ({"input_content_types": ()}, "exactly when"),
        ({"input_model": toy_kind.LineCountOptions}, "inline JSON input"),
        ({"render_formats": {"json": "application/json"}}, "json is implicit"),
        ({"render_formats": {"text": "plain text"}}, "bad render format"),
    ],
)
def test_a_bad_declaration_is_refused_with_the_reason(change: dict[str, Any], message: str) -> None:
    kind = _Broken()
    for attribute, value in change.items():
        setattr(kind, attribute, value)
    with pytest.raises(ValueError, match=message):
        with kinds.registered(kind):
            pass
    assert kinds.get_kind(kind.name, simulate_enabled=True) is None


def test_discovery_loads_neither_arrow_nor_numpy() -> None:
    """Instances that only serve HTTP list and resolve kinds without paying for Arrow and numpy."""
    code = (
        "import sys, kinds; kinds.all_kinds(simulate_enabled=True);"
        "[s.openapi_fragment() for s in kinds.all_kinds(simulate_enabled=True)];"
        "print(sorted({'pyarrow', 'numpy'} & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
