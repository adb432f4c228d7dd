"""The Bicep linter rules bicepconfig.json sets to `error`, as far as they can be checked without the compiler.

Each rule follows the analyzer in Azure/bicep (src/Bicep.Core/Analyzers/Linter/Rules/<Rule>.cs), read at
commit 9beb0fee (August 2026); the differences are stricter on purpose and said where they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from tests.infra.templates import Template, render

# NoHardcodedEnvironmentUrlsRule: the default disallowed and excluded hosts of Bicep's built-in
# bicepconfig.json (src/Bicep.Core/Configuration/bicepconfig.json).
DISALLOWED_HOSTS = (
    "azuredatalakeanalytics.net",
    "azuredatalakestore.net",
    "batch.core.windows.net",
    "core.windows.net",
    "database.windows.net",
    "datalake.azure.net",
    "gallery.azure.com",
    "graph.windows.net",
    "login.microsoftonline.com",
    "management.azure.com",
    "management.core.windows.net",
    "vault.azure.net",
)
EXCLUDED_HOSTS = ("schema.management.azure.com",)

# SecretsInParamsMustBeSecureRule: HasSecretRegex and AllowedRegex.
SECRET_NAME = re.compile("password|pwd|secret|accountkey|acctkey", re.IGNORECASE)
ALLOWED_SECRET_NAME = re.compile("secretpermissions|secretversion|secretur[il]|secretname", re.IGNORECASE)


def string_literals(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal of a Bicep source, comments skipped, `${...}` holes kept as is."""
    i, line, n = 0, 1, len(text)
    while i < n:
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            i = end
        elif text.startswith("'''", i):
            end = text.find("'''", i + 3)
            end = n if end < 0 else end
            yield line, text[i + 3 : end]
            line += text.count("\n", i, end)
            i = end + 3
        elif text[i] == "'":
            j, depth, chars = i + 1, 0, []
            while j < n:
                if text[j] == "\\" and j + 1 < n:
                    chars.append(text[j : j + 2])
                    j += 2
                    continue
                if text.startswith("${", j):
                    depth += 1
                elif text[j] == "}" and depth:
                    depth -= 1
                elif text[j] == "'" and not depth:
                    break
                chars.append(text[j])
                j += 1
            yield line, "".join(chars)
            line += text.count("\n", i, j)
            i = j + 1
        else:
            if text[i] == "\n":
                line += 1
            i += 1


def hardcoded_hosts(text: str) -> list[str]:
    """no-hardcoded-env-urls: every disallowed host in a string literal, as `line: host in 'literal'`.

    Stricter than Bicep 0.38.3 and later, which skips @description and @metadata (Azure/bicep#17667): older
    releases, still bundled with some azd and Azure CLI versions, read descriptions too (Azure/bicep#2959).
    """
    found = []
    for line, literal in string_literals(text):
        for host in DISALLOWED_HOSTS:
            for match in re.finditer(re.escape(host), literal, re.IGNORECASE):
                before = literal[match.start() - 1] if match.start() else ""
                after = literal[match.end()] if match.end() < len(literal) else ""
                if before.isalnum() or after.isalnum():
                    continue
                if any(excluded in literal.lower() and host in excluded for excluded in EXCLUDED_HOSTS):
                    continue
                found.append(f"{line}: {host} in {literal[:80]!r}")
    return found


def is_secure(param: dict[str, Any]) -> bool:
    """Whether a parameter is declared @secure()."""
    return any(item["type"] == "secure" for item in param["decorators"])


def insecure_secret_params(tpl: Template) -> list[str]:
    """secure-secrets-in-params: string or object parameters named like a secret, without @secure()."""
    return [
        name
        for name, param in tpl.get("parameters", {}).items()
        if param["type"] in ("string", "object")
        and not is_secure(param)
        and SECRET_NAME.search(name)
        and not ALLOWED_SECRET_NAME.search(name)
    ]


def secure_params_with_defaults(tpl: Template) -> list[str]:
    """secure-parameter-default: a @secure() parameter's default is '' , {} or contains newGuid()."""
    bad = []
    for name, param in tpl.get("parameters", {}).items():
        default = param.get("default")
        if not is_secure(param) or default in (None, "", {}):
            continue
        if "new_guid(" not in render(default):  # pycep names newGuid() new_guid
            bad.append(name)
    return bad


def secret_outputs(tpl: Template) -> list[str]:
    """outputs-should-not-contain-secrets: no output named *password*, none built from a @secure()
    parameter or a list*() function."""
    secure = {name for name, param in tpl.get("parameters", {}).items() if is_secure(param)}
    bad = []
    for name, output in tpl.get("outputs", {}).items():
        text = render(output["value"])
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
        if "password" in name.lower() or words & secure or re.search(r"\blist[A-Z]\w*\(", text):
            bad.append(name)
    return bad


def hardcoded_locations(tpl: Template) -> list[str]:
    """no-hardcoded-location: a resource's location is a parameter or expression, never a literal but 'global'."""
    names = set(tpl.get("parameters", {})) | set(tpl.get("variables", {}))
    bad = []
    for symbol, resource in tpl.get("resources", {}).items():
        config = resource["config"]
        while "config" in config and ("loop_type" in config or "condition" in config):
            config = config["config"]
        location = config.get("location")
        if isinstance(location, str) and location not in names and "${" not in location and location != "global":
            bad.append(f"{symbol}: {location}")
    for name, declared in tpl.get("modules", {}).items():
        config = declared["config"]
        body = config.get("config", config) if "condition" in config else config
        location = body.get("params", {}).get("location")
        if isinstance(location, str) and location not in names and "${" not in location:
            bad.append(f"module {name}: {location}")
    return bad


def _resource_keys(tpl: Template, matches: Callable[[str, Any], bool]) -> list[str]:
    """Paths of every object key in the resources for which `matches(key, value)` holds."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for item_key, value in node.items():
                if matches(item_key, value):
                    found.append(f"{path}.{item_key}")
                walk(value, f"{path}.{item_key}")
        elif isinstance(node, list):
            for position, value in enumerate(node):
                walk(value, f"{path}[{position}]")

    walk(tpl.get("resources", {}), "resources")
    return found


def literal_properties(tpl: Template, key: str) -> list[str]:
    """adminusername-should-not-be-literal (and friends): every `key:` written with a literal string."""
    names = set(tpl.get("parameters", {})) | set(tpl.get("variables", {}))
    return _resource_keys(
        tpl, lambda item_key, value: item_key.lower() == key.lower() and isinstance(value, str) and value not in names
    )


def keys_anywhere(tpl: Template, key: str) -> list[str]:
    """Paths of every object key named `key` in the resources (protect-commandtoexecute-secrets)."""
    return _resource_keys(tpl, lambda item_key, _value: item_key == key)
