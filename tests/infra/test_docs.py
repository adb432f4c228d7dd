"""The deployment docs stay in step with the templates they describe."""

from __future__ import annotations

import re

from tests.infra.templates import ROOT, template

MAIN = template("main")
DOCS = ROOT / "docs"


def test_deploy_doc_explains_every_parameter_of_main() -> None:
    doc = (DOCS / "deploy.md").read_text(encoding="utf-8")
    undocumented = [name for name in MAIN["parameters"] if f"`{name}`" not in doc]
    assert undocumented == []
    for command in ("azd up", "az deployment sub create", "func start", "az login"):
        assert command in doc


def test_timeouts_doc_states_the_defaults_and_our_value() -> None:
    doc = (DOCS / "timeouts.md").read_text(encoding="utf-8")
    for fact in ("20 s", "300 s", "240 s", "30 s", "4 min", "230 s", "functionTimeout", "Retry-After", "heartbeat"):
        assert fact in doc
    timeout = MAIN["parameters"]["gatewayBackendTimeoutSeconds"]["default"]
    assert f"gatewayBackendTimeoutSeconds = {timeout} s" in doc
    assert f"**{timeout} s**" in doc


NOT_DEPLOYED = {"bench", "client", "devhost", "tests"}
"""Top-level packages that are tools of ours, not code the Functions host runs (.funcignore drops them)."""


def test_the_zip_in_the_deploy_doc_holds_every_package_the_app_runs() -> None:
    """A package missing from the zip imports fine here and fails at the host's indexing in Azure."""
    doc = (DOCS / "deploy.md").read_text(encoding="utf-8")
    command = re.search(r"zip -r app\.zip (.*?) -x", doc, flags=re.S)
    assert command is not None
    listed = set(command.group(1).replace("\\", " ").split())
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - NOT_DEPLOYED
    assert packages - listed == set()
    assert {"function_app.py", "host.json", "requirements.txt", "web"} <= listed
