"""Every KQL query in the templates (log alert rules, workbook items) compiles against the App Insights schema.

The queries are checked by Microsoft's Kusto parser (@kusto/language-service-next, from package.json) in
tests/infra/kql_check.js, all in one node run. Bicep interpolations and workbook parameters are filled in
with the values a deployment or the portal would put there before the text reaches Kusto.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, TypedDict

from tests.infra.templates import (
    BICEP_DIR,
    ROOT,
    Template,
    bicep_files,
    loop_of,
    parameter,
    render,
    resolve,
    template,
    variable,
)

KQL_CHECK = Path(__file__).with_name("kql_check.js")
KUSTO_PACKAGE = ROOT / "node_modules" / "@kusto" / "language-service-next"
SCHEDULED_QUERY_RULES = "microsoft.insights/scheduledqueryrules"
WORKBOOKS = "microsoft.insights/workbooks"
# Log Analytics queries over the component (queryType 0): the only kind the App Insights schema can check.
LOGS_QUERY_TYPE = 0
APP_INSIGHTS = "microsoft.insights/components"
# What the portal puts in place of a time range parameter {Name:format}; any value of the right type will do.
TIME_RANGE_PARAMETER = 4
# A text parameter {Name} is replaced by what the user typed: a job id, say.
TEXT_PARAMETER = 1
TEXT_SAMPLE = "0123456789abcdef0123456789abcdef"
TIME_RANGE_FORMATS = {
    "grain": "1h",
    "start": "datetime(2026-01-01T00:00:00Z)",
    "end": "datetime(2026-01-02T00:00:00Z)",
}


class Diagnostic(TypedDict):
    code: str
    severity: str
    message: str
    start: int
    length: int


class Checked(TypedDict):
    name: str
    diagnostics: list[Diagnostic]


def compile_kql(queries: dict[str, str]) -> dict[str, list[Diagnostic]]:
    """The Kusto parser's diagnostics for each query, by name, from one run of kql_check.js."""
    node = shutil.which("node")
    assert node, "node is missing: install Node 20 (see README)"
    assert KUSTO_PACKAGE.exists(), "@kusto/language-service-next is missing: `make setup` runs npm ci"
    completed = subprocess.run(
        [node, str(KQL_CHECK)],
        input=json.dumps([{"name": name, "query": query} for name, query in queries.items()]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report: list[Checked] = json.loads(completed.stdout)
    assert [entry["name"] for entry in report] == list(queries)
    return {entry["name"]: entry["diagnostics"] for entry in report}


def errors(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return [diagnostic for diagnostic in diagnostics if diagnostic["severity"] == "Error"]


def explain(query: str, diagnostic: Diagnostic) -> str:
    """A diagnostic with the text it points at."""
    start, end = diagnostic["start"], diagnostic["start"] + diagnostic["length"]
    return f"  {diagnostic['code']} at {start}: {diagnostic['message']} -> {query[start:end]!r}"


# --- Log alert rules ---------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"(?<!\\)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPED = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}


def template_name(path: Path) -> str:
    return "main" if path == BICEP_DIR / "main.bicep" else path.stem


def bicep_string(tpl: Template, text: str) -> str:
    """The text Kusto receives: ${param} filled with the parameter's default, Bicep escapes undone."""

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name in tpl.get("variables", {}) and isinstance(variable(tpl, name), str):
            return bicep_string(tpl, variable(tpl, name))
        default = parameter(tpl, name).get("default") if name in tpl.get("parameters", {}) else None
        assert isinstance(default, str | int), f"${{{name}}} has no literal value to put in the query"
        return str(default)

    return _ESCAPE.sub(lambda match: _ESCAPED.get(match[1], match[0]), _INTERPOLATION.sub(fill, text))


def rule_queries(tpl: Template, symbol: str, value: Any) -> dict[str, str]:
    """The query texts one `query:` property takes: a string, or `item.query` over a [for item in array]."""
    value = resolve(tpl, value)
    if isinstance(value, str):
        return {symbol: bicep_string(tpl, value)}
    loop = loop_of(tpl, symbol)
    assert render(value) == f"{loop['item_name']}.query", f"{symbol}: cannot follow the query {render(value)}"
    found = {}
    for index, item in enumerate(resolve(tpl, loop["array_name"])):
        query = resolve(tpl, item["query"])
        assert isinstance(query, str), f"{symbol}[{index}]: the query is not a string: {render(query)}"
        found[f"{symbol}[{item.get('name', index)}]"] = bicep_string(tpl, query)
    return found


def alert_queries() -> dict[str, str]:
    """Every log alert query of every template, named file:resource[alert]."""
    queries = {}
    for path in bicep_files():
        tpl = template(template_name(path))
        for symbol, resource in tpl.get("resources", {}).items():
            if resource["type"].lower() != SCHEDULED_QUERY_RULES:
                continue
            config = resource["config"]
            body = config["config"] if "loop_type" in config or "condition" in config else config
            for criterion in body["properties"]["criteria"]["allOf"]:
                for name, query in rule_queries(tpl, symbol, criterion["query"]).items():
                    queries[f"{path.name}:{name}"] = query
    return queries


# --- Workbooks ---------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<format>[A-Za-z]+))?\}")


def loaded_files(value: Any) -> list[str]:
    """The paths of the loadTextContent(...) calls inside an expression."""
    if isinstance(value, dict):
        function = value.get("function")
        if isinstance(function, dict) and function.get("type") == "load_text_content":
            return [function["parameters"]["file_path"]]
        return [path for item in value.values() for path in loaded_files(item)]
    if isinstance(value, list):
        return [path for item in value for path in loaded_files(item)]
    return []


def workbook_files() -> list[Path]:
    """The JSON file each workbook resource loads as its serializedData."""
    files = []
    for path in bicep_files():
        tpl = template(template_name(path))
        for resource in tpl.get("resources", {}).values():
            if resource["type"].lower() != WORKBOOKS:
                continue
            config = resource["config"]
            body = config["config"] if "loop_type" in config or "condition" in config else config
            # serializedData is usually a variable wrapping loadTextContent() in replace() calls.
            loaded = loaded_files(expand_variables(tpl, body["properties"]["serializedData"]))
            assert len(loaded) == 1, f"{path.name}: a workbook's serializedData should load one JSON file"
            files.append(path.parent / loaded[0])
    return files


def expand_variables(tpl: Template, value: Any) -> Any:
    """A value with every variable name replaced by the variable's value, at any depth."""
    value = resolve(tpl, value)
    if isinstance(value, dict):
        return {key: expand_variables(tpl, item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_variables(tpl, item) for item in value]
    return value


def workbook_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every item of a workbook, groups opened."""
    found = []
    for item in items:
        found.append(item)
        found.extend(workbook_items(item.get("content", {}).get("items", [])))
    return found


def fill_parameters(query: str, parameters: dict[str, dict[str, Any]]) -> str:
    """Replace {Name} and {Name:format} of the workbook's own parameters as the portal would."""

    def fill(match: re.Match[str]) -> str:
        declared = parameters.get(match["name"])
        if declared is None:
            return match[0]  # not a parameter: left for Kusto to judge
        kind, form = declared.get("type"), match["format"]
        if kind == TEXT_PARAMETER and form is None:
            return TEXT_SAMPLE
        assert kind == TIME_RANGE_PARAMETER and form in TIME_RANGE_FORMATS, (
            f"teach test_kql.py how the portal renders {match[0]} (parameter type {kind})"
        )
        return TIME_RANGE_FORMATS[form]

    return _PLACEHOLDER.sub(fill, query)


def workbook_queries() -> dict[str, str]:
    """Every query of every workbook (query items and parameter queries), named file:item."""
    queries = {}
    for path in workbook_files():
        items = workbook_items(json.loads(path.read_text(encoding="utf-8"))["items"])
        parameters = {
            declared["name"]: declared for item in items for declared in item.get("content", {}).get("parameters", [])
        }
        sources = [(item["name"], item["content"]) for item in items]
        sources += [(f"parameter {name}", declared) for name, declared in parameters.items()]
        for name, content in sources:
            if "query" not in content:
                continue
            assert content.get("queryType") == LOGS_QUERY_TYPE, f"{path.name}:{name}: not a Logs query"
            resource_type = content.get("resourceType", APP_INSIGHTS).lower()
            assert resource_type == APP_INSIGHTS, f"{path.name}:{name}: queries {resource_type}"
            queries[f"{path.name}:{name}"] = fill_parameters(content["query"], parameters)
    return queries


# --- Tests -------------------------------------------------------------------------------------------


def test_every_query_in_the_templates_is_collected() -> None:
    alerts, workbooks = alert_queries(), workbook_queries()
    assert len(alerts) >= 4, alerts
    for path in workbook_files():
        # Each "query" key of the workbook's JSON is one query we check: none is left behind.
        in_file = len(re.findall(r'"query"\s*:', path.read_text(encoding="utf-8")))
        assert sum(name.startswith(f"{path.name}:") for name in workbooks) == in_file, path.name
    assert workbooks
    for name, query in {**alerts, **workbooks}.items():
        assert "${" not in query and "{TimeRange" not in query, f"{name} still has a placeholder: {query}"


def test_every_query_in_the_templates_compiles() -> None:
    queries = {**alert_queries(), **workbook_queries()}
    failures = [
        f"{name}:\n{queries[name]}\n" + "\n".join(explain(queries[name], error) for error in found)
        for name, diagnostics in compile_kql(queries).items()
        if (found := errors(diagnostics))
    ]
    assert not failures, "KQL that Kusto rejects:\n\n" + "\n\n".join(failures)


def test_a_broken_query_is_reported() -> None:
    report = compile_kql(
        {
            "syntax": "traces | wher x",
            "unknown column": "traces | project timestamp, no_such_column",
            "valid": "traces | where message startswith 'longrun.' | summarize sum(itemCount) by bin(timestamp, 1h)",
        }
    )
    assert [error["code"] for error in errors(report["syntax"])][0] == "KS176"
    assert any("no_such_column" in error["message"] for error in errors(report["unknown column"]))
    assert errors(report["valid"]) == []
