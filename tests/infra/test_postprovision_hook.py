"""The azd postprovision hook generates the webhook signing secret in Key Vault once, without ever showing it.

Stand-in `az` and `azd` on PATH record every command line (tests/infra/azd_hooks.py, shared with
test_hooks.py): Azure is the one thing these tests may not reach.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from tests.infra import azd_hooks
from tests.infra.templates import ROOT

HOOK = ROOT / "infra" / "hooks" / "postprovision.sh"

AZ_ANSWERS = """  "functionapp show"*)
    echo "/subscriptions/s/resourceGroups/rg-test/providers/Microsoft.Web/sites/func-x"; exit 0 ;;
"""
OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_FUNCTION_APP_NAME": "func-x",
    "AZURE_KEY_VAULT_NAME": "kv-x",
    "AZURE_KEY_VAULT_WEBHOOK_SECRET_NAME": "longrun-webhook-secret",
}


def run_hook(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return azd_hooks.run_hook(HOOK, tmp_path, AZ_ANSWERS, {**OUTPUTS, **env})


def test_azure_yaml_runs_the_hook_after_provision_with_outputs_of_main_bicep() -> None:
    azd_hooks.assert_azure_yaml_runs(HOOK, "postprovision")


def test_a_random_whsec_secret_goes_to_key_vault_and_nowhere_else(tmp_path: Path) -> None:
    done = run_hook(tmp_path)
    assert done.returncode == 0, done.stderr
    secret = (tmp_path / "record" / "secret").read_text()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    log = azd_hooks.calls(tmp_path)
    assert secret not in log and secret not in done.stdout and secret not in done.stderr
    assert "az keyvault secret set --vault-name kv-x --name longrun-webhook-secret --file " in log
    assert "sites/func-x/config/configreferences/appsettings/refresh" in log
    assert log.strip().endswith("azd env set WEBHOOK_SECRET_IN_KEY_VAULT true")
    (tmp_path / "again").mkdir()
    assert run_hook(tmp_path / "again").returncode == 0
    assert (tmp_path / "again" / "record" / "secret").read_text() != secret, "each run draws a new secret"


def test_once_stored_the_secret_is_left_alone(tmp_path: Path) -> None:
    done = run_hook(tmp_path, WEBHOOK_SECRET_IN_KEY_VAULT="true")
    assert done.returncode == 0 and "already in Key Vault" in done.stdout
    assert not (tmp_path / "record" / "calls").exists()
