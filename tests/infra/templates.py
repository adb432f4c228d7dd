"""Read the Bicep templates as data: pycep-parser's JSON, with small helpers to follow variables.

pycep renders an identifier (a parameter, variable or resource name) as a bare string, a string literal
as the same bare string, and an expression as {"function": ...} or {"operator": ...}. The helpers below
resolve variable names where a value is expected, which is all the property tests need.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MODULES_DIR = BICEP_DIR / "modules"

Template = dict[str, Any]


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@cache
def template(name: str) -> Template:
    """The parsed template: 'main' or a module's file name without .bicep."""
    path = BICEP_DIR / "main.bicep" if name == "main" else MODULES_DIR / f"{name}.bicep"
    parsed: Template = dict(BicepParser().parse(file_path=path))
    return parsed


def source(name: str) -> str:
    path = BICEP_DIR / "main.bicep" if name == "main" else MODULES_DIR / f"{name}.bicep"
    return path.read_text(encoding="utf-8")


def resources(tpl: Template, resource_type: str) -> list[dict[str, Any]]:
    """The config of every resource of a type; a loop's config is its body."""
    found = []
    for resource in tpl.get("resources", {}).values():
        if resource["type"].lower() == resource_type.lower():
            config = resource["config"]
            # A loop (`[for ...]`) or a condition (`if (...)`) nests the body one level down.
            found.append(config["config"] if "loop_type" in config or "condition" in config else config)
    return found


def only_resource(tpl: Template, resource_type: str) -> dict[str, Any]:
    matches = resources(tpl, resource_type)
    assert len(matches) == 1, f"expected one {resource_type}, found {len(matches)}"
    return matches[0]


def loop_of(tpl: Template, symbol: str) -> dict[str, Any]:
    """The loop header (item name and the array) of a resource declared with [for ...]."""
    config = tpl["resources"][symbol]["config"]
    assert "loop_type" in config, f"{symbol} is not declared with a loop"
    detail: dict[str, Any] = config["loop_type"]["detail"]
    return detail


def variable(tpl: Template, name: str) -> Any:
    return tpl["variables"][name]["value"]


def resolve(tpl: Template, value: Any) -> Any:
    """Replace a variable name by the variable's value (once; call again for nested names)."""
    if isinstance(value, str) and value in tpl.get("variables", {}):
        return resolve(tpl, variable(tpl, value))
    return value


def parameter(tpl: Template, name: str) -> dict[str, Any]:
    found: dict[str, Any] = tpl["parameters"][name]
    return found


def decorator(param: dict[str, Any], kind: str) -> Any:
    for item in param["decorators"]:
        if item["type"] == kind:
            return item.get("argument")
    return None


def strings_in(tpl: Template, value: Any) -> Iterator[str]:
    """Every string reachable from a value, following variable names into their values."""
    value = resolve(tpl, value)
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(tpl, item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(tpl, item)


def unquote(key: str) -> str:
    """pycep keeps the quotes of quoted object keys ('x-functions-key')."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def object_entries(tpl: Template, value: Any) -> dict[str, Any]:
    """The keys and values an object expression can produce: follows variables, union() and a ? b : c."""
    value = resolve(tpl, value)
    if not isinstance(value, dict):
        return {}
    if set(value) == {"function"} and value["function"]["type"] == "union":
        merged: dict[str, Any] = {}
        for argument in value["function"]["parameters"].values():
            merged.update(object_entries(tpl, argument))
        return merged
    if set(value) == {"operator"} and value["operator"]["type"] == "conditional":
        operands = value["operator"]["operands"]
        return {**object_entries(tpl, operands["false_value"]), **object_entries(tpl, operands["true_value"])}
    if set(value) in ({"function"}, {"operator"}):
        return {}
    return {unquote(key): item for key, item in value.items()}


_OPERATORS = {
    "add": "+",
    "minus": "-",
    "multiply": "*",
    "divide": "/",
    "equals": "==",
    "not_equals": "!=",
    "greater_than": ">",
    "less_than": "<",
    "and": "&&",
    "or": "||",
}


def render(value: Any) -> str:
    """A compact Bicep-like text of a pycep value, to compare expressions: identity.outputs.clientId."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    if set(value) == {"operator"}:
        kind, operands = value["operator"]["type"], value["operator"].get("operands", {})
        if kind == "property_accessor":
            return f"{render(operands['operand_1'])}.{render(operands['operand_2'])}"
        if kind == "index_accessor":
            return f"{render(operands['operand_1'])}[{render(operands['operand_2'])}]"
        if kind == "conditional":
            return (
                f"{render(operands['condition'])} ? {render(operands['true_value'])}"
                f" : {render(operands['false_value'])}"
            )
        if kind == "not":
            return "!" + render(operands.get("bool_value", next(iter(operands.values()))))
        if kind in _OPERATORS and len(operands) == 2:
            left, right = operands.values()
            return f"{render(left)} {_OPERATORS[kind]} {render(right)}"
        return f"{kind}(" + ", ".join(render(item) for item in operands.values()) + ")"
    if set(value) == {"function"}:
        name, parameters = value["function"]["type"], dict(value["function"].get("parameters") or {})
        if name == "list_func":  # listKeys(...), listSecrets(...): pycep names the list* function apart
            name = parameters.pop("func_name")
        arguments = [render(item) for item in parameters.values() if item is not None]
        return f"{name}(" + ", ".join(arguments) + ")"
    return "{" + ", ".join(f"{unquote(key)}: {render(item)}" for key, item in value.items()) + "}"


def module(name: str) -> dict[str, Any]:
    """A module declaration of main.bicep: its path, condition and params."""
    declared: dict[str, Any] = template("main")["modules"][name]
    return declared


def module_params(name: str) -> dict[str, Any]:
    config = module(name)["config"]
    # A conditional module (`= if (...) {`) nests its body one level down.
    body = config["config"] if "condition" in config else config
    params: dict[str, Any] = body["params"]
    return params


def module_condition(name: str) -> Any:
    return module(name)["config"].get("condition")


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(tpl: Template, text: str) -> str:
    """Fill ${name} with the value of a variable that is a plain string; leave other expressions."""

    def fill(match: re.Match[str]) -> str:
        value = tpl.get("variables", {}).get(match["name"], {}).get("value")
        return value if isinstance(value, str) and "${" not in value else match[0]

    return _INTERPOLATION.sub(fill, text)


def modules_using(path: str) -> list[str]:
    return [name for name, mod in template("main")["modules"].items() if mod["detail"]["path"] == path]


_SKIP = re.compile(r"//\s*checkov:skip=(?P<check>[A-Z0-9_]+)(?P<rest>[^\n]*)")


def checkov_skips() -> list[tuple[Path, str, str]]:
    """(file, check id, reason) of every `// checkov:skip=ID: reason` comment under infra/."""
    skips = []
    for path in bicep_files():
        for match in _SKIP.finditer(path.read_text(encoding="utf-8")):
            skips.append((path, match["check"], match["rest"].lstrip(":").strip()))
    return skips


def _compare(kind: str, left: Any, right: Any) -> bool:
    """==, !=, && and || on evaluated operands."""
    if kind == "equals":
        return bool(left == right)
    if kind == "not_equals":
        return bool(left != right)
    if kind == "and":
        return bool(left) and bool(right)
    return bool(left) or bool(right)


# Bicep binds ==/!= tighter than &&, && tighter than ||, and ?: loosest; pycep nests every binary
# operator's right side as if it bound tightest (`a == b ? c : d` comes out as `a == (b ? c : d)`).
_PRECEDENCE = {"conditional": 0, "or": 1, "and": 2, "equals": 3, "not_equals": 3}


def _operator(kind: str, operands: dict[str, Any]) -> dict[str, Any]:
    return {"operator": {"type": kind, "operands": operands}}


def reassociate(value: Any) -> Any:
    """Regroup pycep's right-nested chain of ==, !=, &&, || (and a trailing ?:) by Bicep's precedence.

    pycep keeps no node for parentheses, so an explicitly parenthesised right operand of lower precedence,
    `a && (b || c)`, looks like `a && b || c` and is regrouped too: put such a condition in a variable.
    """
    terms: list[Any] = []
    kinds: list[str] = []
    branches: tuple[Any, Any] | None = None
    node = value
    while isinstance(node, dict) and set(node) == {"operator"} and node["operator"]["type"] in _PRECEDENCE:
        kind, operands = node["operator"]["type"], node["operator"].get("operands", {})
        if kind == "conditional":
            terms.append(operands["condition"])
            branches = (operands["true_value"], operands["false_value"])
            break
        terms.append(operands["operand_1"])
        kinds.append(kind)
        node = operands["operand_2"]
    else:
        terms.append(node)
    if not kinds:
        return value

    def climb(index: int, minimum: int) -> tuple[Any, int]:
        """Precedence climbing over terms[index:], all operators left-associative."""
        left = terms[index]
        while index < len(kinds) and _PRECEDENCE[kinds[index]] >= minimum:
            kind = kinds[index]
            right, index = climb(index + 1, _PRECEDENCE[kind] + 1)
            left = _operator(kind, {"operand_1": left, "operand_2": right})
        return left, index

    grouped, _ = climb(0, 1)
    if branches is None:
        return grouped
    return _operator("conditional", {"condition": grouped, "true_value": branches[0], "false_value": branches[1]})


def parameter_values(tpl: Template, **given: Any) -> dict[str, Any]:
    """The template's parameters with their literal defaults, overridden by `given` (a deployment's values)."""
    values = {
        name: declared["default"]
        for name, declared in tpl["parameters"].items()
        if "default" in declared and not isinstance(declared["default"], dict)
    }
    values.update(given)
    return values


def evaluate(tpl: Template, value: Any, params: dict[str, Any]) -> Any:
    """The value an expression takes for given parameter values, as far as the templates need.

    Names of parameters and variables resolve; comparisons, &&, ||, !, empty() and a ? b : c are computed
    with Bicep's precedence;
    anything else (a module's output, a resource id) stays as its rendered text, a symbol to compare.
    pycep writes identifiers and string literals alike, so a literal that equals a parameter's name would
    be misread: the templates have none.
    """
    if isinstance(value, str):
        if value in params:
            return params[value]
        if value in tpl.get("variables", {}):
            return evaluate(tpl, variable(tpl, value), params)
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        return [evaluate(tpl, item, params) for item in value]
    if set(value) == {"operator"}:
        value = reassociate(value)
        kind, operands = value["operator"]["type"], value["operator"].get("operands", {})
        if kind == "conditional":
            chosen = "true_value" if evaluate(tpl, operands["condition"], params) else "false_value"
            return evaluate(tpl, operands[chosen], params)
        if kind in ("equals", "not_equals", "and", "or"):
            left, right = (evaluate(tpl, item, params) for item in operands.values())
            return _compare(kind, left, right)
        if kind == "not":
            return not evaluate(tpl, next(iter(operands.values())), params)
        return render(value)
    if set(value) == {"function"}:
        if value["function"]["type"] == "empty":
            return not evaluate(tpl, next(iter(value["function"]["parameters"].values())), params)
        return render(value)
    return {unquote(key): evaluate(tpl, item, params) for key, item in value.items()}
