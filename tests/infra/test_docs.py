"""The deployment docs stay in step with the templates they describe."""

from __future__ import annotations

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
