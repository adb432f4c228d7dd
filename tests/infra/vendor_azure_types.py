"""Copy the subset of Azure's resource type definitions the templates use into tests/infra/azure_types/.

Run after adding a resource type or changing an api version in infra/bicep:

    .venv/bin/python -m tests.infra.vendor_azure_types [GENERATED_ROOT ...]

The definitions are the ones the Bicep compiler ships, generated in Azure/bicep-types-az (`generated/`).
Each root is searched in order for `<group>/<provider>/<api-version>/types.json`; the default roots are the
project's reference copy (../shared/reference/bicep-types, which also holds `index.json`, the list of
every published api version) and a checkout of Azure/bicep-types-az at the same commit. Only the resource
types a template declares, and the types they refer to, are kept, renumbered, one file per
provider and api version, with the source path and commit recorded in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tests.infra.templates import bicep_files

OUT = Path(__file__).resolve().parent / "azure_types"
DEFAULT_ROOTS = [Path("/work/shared/reference/bicep-types"), Path("/work/.mirror/Azure+bicep-types-az/repo")]


def declared_types() -> set[tuple[str, str]]:
    """(type, api version) of every resource the templates declare, `existing` ones included."""
    found = set()
    for path in bicep_files():
        for resource in BicepParser().parse(file_path=path).get("resources", {}).values():
            found.add((resource["type"], resource["api_version"]))
    return found


def read_types_json(roots: list[Path], relative: str) -> list[dict[str, Any]]:
    """The types.json of one provider and api version, from the first root that has it."""
    for root in roots:
        if (root / relative).is_file():
            loaded: list[dict[str, Any]] = json.loads((root / relative).read_text())
            return loaded
        if (root / "HEAD").exists() or (root / ".git").exists():  # a bare mirror or a checkout
            shown = subprocess.run(
                ["git", "-C", str(root), "show", f"HEAD:generated/{relative}"], capture_output=True, check=False
            )
            if shown.returncode == 0:
                loaded = json.loads(shown.stdout)
                return loaded
    raise FileNotFoundError(f"{relative} in none of {roots}")


def subset(types: list[dict[str, Any]], wanted: set[str]) -> list[dict[str, Any]]:
    """The ResourceType entries named in `wanted` and everything they refer to, renumbered from 0."""
    keep: dict[int, int] = {}
    order: list[int] = []

    def visit(index: int) -> None:
        if index in keep:
            return
        keep[index] = len(order)
        order.append(index)
        for ref in refs(types[index]):
            visit(ref)

    for index, entry in enumerate(types):
        if entry["$type"] == "ResourceType" and entry["name"] in wanted:
            visit(index)
    missing = wanted - {types[i]["name"] for i in order if types[i]["$type"] == "ResourceType"}
    assert not missing, f"not in the type definitions: {sorted(missing)}"
    return [renumber(types[index], keep) for index in order]


def refs(node: Any) -> list[int]:
    """Every `{"$ref": "#/N"}` index inside a node."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return [int(node["$ref"].removeprefix("#/"))]
        return [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def renumber(node: Any, mapping: dict[int, int]) -> Any:
    """A node with its references rewritten to the subset's numbering."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return {"$ref": f"#/{mapping[int(node['$ref'].removeprefix('#/'))]}"}
        return {key: renumber(value, mapping) for key, value in node.items()}
    if isinstance(node, list):
        return [renumber(value, mapping) for value in node]
    return node


def main(roots: list[Path]) -> None:
    """Write the subset, the api-version index and the provenance README."""
    index = json.loads((roots[0] / "index.json").read_text())
    by_file: dict[str, set[str]] = {}
    versions: dict[str, list[str]] = {}
    for resource_type, api_version in sorted(declared_types()):
        entry = index["types"].get(resource_type.lower())
        assert entry, f"{resource_type} is not in index.json's namespaces"
        versions[resource_type.lower()] = entry["versions"]
        provider = resource_type.split("/")[0].lower()
        candidates = [
            path for path in index["vendored"] if path.split("/")[1:3] == [provider, api_version]
        ] or _find_in_mirror(roots, provider, api_version)
        by_file.setdefault(candidates[0], set()).add(f"{resource_type}@{api_version}")
    OUT.mkdir(exist_ok=True)
    for stale in OUT.glob("*.json"):
        stale.unlink()
    for relative, wanted in sorted(by_file.items()):
        types = subset(read_types_json(roots, relative), wanted)
        provider, api_version = relative.split("/")[1:3]
        document = {"source": f"Azure/bicep-types-az generated/{relative}", "commit": index["commit"], "types": types}
        (OUT / f"{provider}@{api_version}.json").write_text(json.dumps(document, indent=0, sort_keys=True) + "\n")
    index_subset = {"source": index["source"], "commit": index["commit"], "versions": dict(sorted(versions.items()))}
    (OUT / "index.json").write_text(json.dumps(index_subset, indent=1) + "\n")
    (OUT / "README.md").write_text(readme(index["commit"], by_file))


def readme(commit: str, by_file: dict[str, set[str]]) -> str:
    """The provenance note: where each file comes from and which resource types it keeps."""
    lines = [
        "# Azure resource type definitions (a vendored subset)",
        "",
        "Copied from [Azure/bicep-types-az](https://github.com/Azure/bicep-types-az) `generated/` at commit",
        f"`{commit}` (the copy in ../shared/reference/bicep-types/ and, for files it lacks, the repository",
        "itself at the same commit) by `tests/infra/vendor_azure_types.py`. These are the definitions the Bicep",
        "compiler ships. Only the resource types the templates declare are kept, with every type they refer to,",
        "renumbered; nothing is edited. `index.json` lists every published api version of those resource types.",
        "Regenerate after changing a resource type or api version in infra/bicep:",
        "`.venv/bin/python -m tests.infra.vendor_azure_types`.",
        "",
        "License: MIT (Azure/bicep-types-az).",
        "",
        "| File | From | Resource types |",
        "|---|---|---|",
    ]
    for relative, wanted in sorted(by_file.items()):
        provider, api_version = relative.split("/")[1:3]
        names = ", ".join(sorted(name.split("@")[0] for name in wanted))
        lines.append(f"| `{provider}@{api_version}.json` | `generated/{relative}` | {names} |")
    return "\n".join(lines) + "\n"


def _find_in_mirror(roots: list[Path], provider: str, api_version: str) -> list[str]:
    for root in roots[1:]:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-tree", "-r", "--name-only", "HEAD", "generated/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        found = [
            path.removeprefix("generated/") for path in listed if path.endswith(f"/{provider}/{api_version}/types.json")
        ]
        if found:
            return found
    raise FileNotFoundError(f"{provider}/{api_version}/types.json")


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]] or DEFAULT_ROOTS)
