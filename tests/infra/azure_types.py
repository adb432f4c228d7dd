"""Check templates against Azure's own resource type definitions, without the Bicep compiler.

The definitions in tests/infra/azure_types/ are a subset of Azure/bicep-types-az `generated/` (see
vendor_azure_types.py and azure_types/README.md): one `ResourceType` per `type@apiVersion`, whose body is an
`ObjectType` (properties, each with a type reference and flags, and maybe `additionalProperties` for
dictionaries), a `DiscriminatedObjectType` (one object per value of a discriminator property, e.g. the
`name` of a `Microsoft.Web/sites/config`), or a `UnionType` of `StringLiteralType`s for an enum.

What is checked, as the compiler's type checker would (BCP037 unknown property, BCP036/BCP088 wrong value,
BCP073 read-only, BCP081 unknown api version): every property written in a resource body exists at that
path; every literal written where an enum is expected is one of its values, and so is every `@allowed`
value of a parameter written there; literals have the right kind (string, integer, boolean); string
literals respect minLength, maxLength and pattern, integer literals minValue and maxValue. Expressions
(function calls, interpolations, property accesses) are not evaluated: their type is unknown here, so they
pass. A string is a literal unless it names a parameter, variable, resource, module or loop item of the
template (pycep renders both the same way).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.infra.templates import Template, decorator, unquote

TYPES_DIR = Path(__file__).resolve().parent / "azure_types"
READ_ONLY = 2
WRITE_ONLY = 4
# Keys of a resource body that are Bicep syntax, not part of the resource's type.
BICEP_KEYS = {"parent", "dependsOn", "scope"}


@dataclass(frozen=True)
class TypeRef:
    """A type inside one vendored file: the file's types and an index into them."""

    file: str
    index: int

    @property
    def node(self) -> dict[str, Any]:
        """The definition this reference points at."""
        node: dict[str, Any] = _file(self.file)[self.index]
        return node

    def follow(self, ref: dict[str, str]) -> TypeRef:
        """The type a `{"$ref": "#/N"}` inside this file points at."""
        return TypeRef(self.file, int(ref["$ref"].removeprefix("#/")))


@cache
def _file(name: str) -> list[dict[str, Any]]:
    types: list[dict[str, Any]] = json.loads((TYPES_DIR / name).read_text())["types"]
    return types


@cache
def versions() -> dict[str, list[str]]:
    """Every published api version of each resource type the templates use (lower-case type name)."""
    loaded: dict[str, list[str]] = json.loads((TYPES_DIR / "index.json").read_text())["versions"]
    return loaded


def resource_type(type_name: str, api_version: str) -> TypeRef | None:
    """The vendored definition of type@apiVersion, or None when it is not vendored."""
    provider = type_name.split("/")[0].lower()
    name = f"{provider}@{api_version}.json"
    if not (TYPES_DIR / name).exists():
        return None
    wanted = f"{type_name}@{api_version}".lower()
    for index, node in enumerate(_file(name)):
        if node["$type"] == "ResourceType" and node["name"].lower() == wanted:
            return TypeRef(name, index)
    return None


def identifiers(tpl: Template) -> set[str]:
    """Names a bare string in pycep's output can mean: parameters, variables, resources, modules, loop items."""
    names = set(tpl.get("parameters", {})) | set(tpl.get("variables", {}))
    names |= set(tpl.get("resources", {})) | set(tpl.get("modules", {}))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            loop = node.get("loop_type")
            if isinstance(loop, dict):
                detail = loop.get("detail", {})
                names.update(value for key, value in detail.items() if key in ("item_name", "index_name") and value)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tpl)
    return names


def _body(config: dict[str, Any]) -> dict[str, Any]:
    """The object a resource declaration writes: a loop or a condition nests it one level down."""
    while "config" in config and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


class Checker:
    """Collects type errors of one template."""

    def __init__(self, name: str, tpl: Template) -> None:
        self.name = name
        self.tpl = tpl
        self.names = identifiers(tpl)
        self.errors: list[str] = []
        self.secure_input_errors: list[str] = []

    def run(self) -> list[str]:
        """Check every resource of the template; returns the errors found."""
        for symbol, resource in self.tpl.get("resources", {}).items():
            type_name, api_version = resource["type"], resource["api_version"]
            where = f"{self.name}.bicep resource {symbol} ({type_name}@{api_version})"
            published = versions().get(type_name.lower())
            if published is None:
                self.errors.append(f"{where}: type not vendored; run tests/infra/vendor_azure_types.py")
                continue
            if api_version not in published:
                self.errors.append(f"{where}: api version does not exist (BCP081); published: {published[-5:]}")
                continue
            ref = resource_type(type_name, api_version)
            if ref is None:
                self.errors.append(f"{where}: definition not vendored; run tests/infra/vendor_azure_types.py")
                continue
            if resource.get("existing"):
                continue  # an `existing` reference writes nothing but its name
            body = {key: value for key, value in _body(resource["config"]).items() if key not in BICEP_KEYS}
            self.check_value(ref.follow(ref.node["body"]), body, where, top=True)
        return self.errors

    # -- values -------------------------------------------------------------------------------------------

    def literal(self, value: Any) -> bool:
        """A literal string, number or boolean (not an identifier, interpolation or expression)."""
        if isinstance(value, bool | int | float):
            return True
        return isinstance(value, str) and "${" not in value and value not in self.names

    def candidates(self, value: Any) -> Iterator[Any]:
        """The values an expression can take that we can see: a literal, a parameter's @allowed values,
        a variable's value, both branches of a ? b : c, each argument of union() and concat()."""
        if isinstance(value, str) and value in self.tpl.get("parameters", {}):
            allowed = decorator(self.tpl["parameters"][value], "allowed")
            if allowed:
                yield from allowed
            return
        if isinstance(value, str) and value in self.tpl.get("variables", {}):
            yield from self.candidates(self.tpl["variables"][value]["value"])
            return
        if isinstance(value, dict) and set(value) == {"operator"} and value["operator"]["type"] == "conditional":
            operands = value["operator"]["operands"]
            yield from self.candidates(operands["true_value"])
            yield from self.candidates(operands["false_value"])
            return
        if isinstance(value, dict) and set(value) == {"function"} and value["function"]["type"] in ("union", "concat"):
            for argument in value["function"]["parameters"].values():
                yield from self.candidates(argument)
            return
        yield value

    def check_value(self, ref: TypeRef, value: Any, path: str, top: bool = False) -> None:
        """Check a value (and every value we can see it taking) against a type."""
        for candidate in self.candidates(value):
            self.check_one(ref, candidate, path, top)

    def check_one(self, ref: TypeRef, value: Any, path: str, top: bool = False) -> None:
        """Check one candidate value against a type."""
        node = ref.node
        kind = node["$type"]
        if kind == "StringType" and node.get("sensitive"):
            self.check_secure_input(value, path)
        if isinstance(value, dict) and ("function" in value or "operator" in value) and len(value) == 1:
            return  # an expression: its type is not known without the compiler
        if isinstance(value, str) and not self.literal(value):
            return
        if kind == "AnyType":
            return
        if kind == "UnionType":
            self.check_union(ref, value, path)
        elif kind == "StringLiteralType":
            if value != node["value"]:
                self.errors.append(f"{path}: {value!r} is not {node['value']!r}")
        elif kind == "StringType":
            if not isinstance(value, str):
                self.errors.append(f"{path}: expects a string, got {value!r}")
            else:
                self.check_string_constraints(node, value, path)
        elif kind == "IntegerType":
            if isinstance(value, bool) or not isinstance(value, int):
                self.errors.append(f"{path}: expects an integer, got {value!r}")
            elif not node.get("minValue", value) <= value <= node.get("maxValue", value):
                self.errors.append(f"{path}: {value} is outside {node.get('minValue')}..{node.get('maxValue')}")
        elif kind == "BooleanType":
            if not isinstance(value, bool):
                self.errors.append(f"{path}: expects a boolean, got {value!r}")
        elif kind == "ArrayType":
            self.check_array(ref, value, path)
        elif kind == "ObjectType":
            self.check_object(ref, node, value, path, top)
        elif kind == "DiscriminatedObjectType":
            self.check_discriminated(ref, value, path, top)

    def check_string_constraints(self, node: dict[str, Any], value: str, path: str) -> None:
        """A literal string within the type's minLength, maxLength and pattern (names, ids, GUIDs)."""
        if not node.get("minLength", 0) <= len(value) <= node.get("maxLength", len(value)):
            self.errors.append(f"{path}: {value!r} is not {node.get('minLength')}..{node.get('maxLength')} long")
        pattern = node.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                return  # a .NET-only construct: leave it to the service
            if not compiled.search(value):
                self.errors.append(f"{path}: {value!r} does not match {pattern}")

    def check_secure_input(self, value: Any, path: str) -> None:
        """use-secure-value-for-secure-inputs: a property the definitions mark sensitive gets a @secure()
        parameter (or ''), never a literal or a plain parameter or variable."""
        if value == "" or not isinstance(value, str):
            return  # '' is allowed; a function call's value is a runtime value the rule leaves alone
        param = self.tpl.get("parameters", {}).get(value)
        if param is not None and any(item["type"] == "secure" for item in param["decorators"]):
            return
        self.secure_input_errors.append(f"{path}: {value!r} is not a @secure() parameter")

    def check_union(self, ref: TypeRef, value: Any, path: str) -> None:
        """A value for a union: a string literal must be one of its literals, anything else fit a member."""
        members = [ref.follow(element) for element in ref.node["elements"]]
        literals = [member.node["value"] for member in members if member.node["$type"] == "StringLiteralType"]
        if isinstance(value, str) and literals:
            # Stricter than the compiler for "extensible" enums (literals plus any string): a value the
            # definitions do not list is a typo far more often than a value the service added later.
            if value not in literals:
                self.errors.append(f"{path}: {value!r} is not one of {literals}")
            return
        for member in members:
            if member.node["$type"] == "StringLiteralType":
                continue
            trial = Checker(self.name, self.tpl)
            trial.check_one(member, value, path)
            if not trial.errors:
                return
        self.errors.append(f"{path}: {value!r} fits none of {[m.node['$type'] for m in members]}")

    def check_array(self, ref: TypeRef, value: Any, path: str) -> None:
        """An array value, a loop (`[for ...]`) or a literal list, item by item."""
        item = ref.follow(ref.node["itemType"])
        if isinstance(value, dict) and "loop_type" in value:
            self.check_value(item, _body(value), f"{path}[]")
            return
        if not isinstance(value, list):
            if isinstance(value, dict):
                self.errors.append(f"{path}: expects an array, got an object")
            return
        for position, element in enumerate(value):
            self.check_value(item, element, f"{path}[{position}]")

    def check_object(self, ref: TypeRef, node: dict[str, Any], value: Any, path: str, top: bool) -> None:
        """An object value: every key a declared property (or allowed by additionalProperties)."""
        if isinstance(value, list):
            self.errors.append(f"{path}: expects an object, got an array")
            return
        if not isinstance(value, dict):
            if self.literal(value):
                self.errors.append(f"{path}: expects an object, got {value!r}")
            return
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        for raw_key, item in value.items():
            key = unquote(raw_key)
            here = f"{path}.{key}" if not top else f"{path}: {key}"
            if key in properties:
                declared = properties[key]
                flags = declared.get("flags", 0)
                if flags & READ_ONLY and not flags & WRITE_ONLY and key not in ("name", "type", "apiVersion"):
                    self.errors.append(f"{here}: read-only property (BCP073)")
                self.check_value(ref.follow(declared["type"]), item, here)
            elif extra is not None:
                self.check_value(ref.follow(extra), item, here)
            else:
                self.errors.append(f"{here}: no such property in the type (BCP037); known: {sorted(properties)}")

    def check_discriminated(self, ref: TypeRef, value: Any, path: str, top: bool) -> None:
        """An object whose properties depend on a discriminator (e.g. sites/config by `name`)."""
        node = ref.node
        if not isinstance(value, dict):
            return
        entries = {unquote(key): item for key, item in value.items()}
        discriminator = entries.get(node["discriminator"])
        base = {"$type": "ObjectType", "properties": dict(node.get("baseProperties", {}))}
        if not self.literal(discriminator):
            # Unknown variant: only the base properties and the discriminator can be checked by name.
            return
        if discriminator not in node["elements"]:
            self.errors.append(
                f"{path}: {node['discriminator']} {discriminator!r} is not one of {sorted(node['elements'])}"
            )
            return
        variant = ref.follow(node["elements"][discriminator])
        merged = dict(base["properties"])
        merged.update(variant.node.get("properties", {}))
        combined = {**variant.node, "properties": merged}
        self.check_object(variant, combined, value, path, top)


def type_errors(name: str, tpl: Template) -> list[str]:
    """Every type error of one parsed template."""
    return Checker(name, tpl).run()


def insecure_secure_inputs(name: str, tpl: Template) -> list[str]:
    """Sensitive properties (KV secret values, passwords, ...) assigned something other than a @secure() param."""
    checker = Checker(name, tpl)
    checker.run()
    return checker.secure_input_errors
