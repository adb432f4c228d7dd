"""The azd postdeploy hook wires the function key into Key Vault without ever showing it.

The hook runs against a stand-in `az` and `azd` on PATH (tests/infra/azd_hooks.py; Azure itself is the one
thing these tests may not reach): they record every command line and answer like the real CLIs (`az
functionapp keys list` prints the key with --output tsv, `keys set` creates it, `keyvault secret set --file`
reads the file).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.infra import azd_hooks
from tests.infra.azd_hooks import calls
from tests.infra.templates import ROOT

HOOK = ROOT / "infra" / "hooks" / "postdeploy.sh"
KEY = "Zx9-function-key-value-from-the-host=="

AZ_ANSWERS = r"""  "functionapp keys list"*)
    n=$(cat "$RECORD/list-count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$RECORD/list-count"
    if [ "$n" -le "${FAIL_LISTS:-0}" ]; then echo "ERROR: Bad Request (host not started)" >&2; exit 1; fi
    [ -f "$RECORD/key" ] && cat "$RECORD/key"; exit 0 ;;
  "functionapp keys set"*)
    printf '%s\n' "$KEY_VALUE" > "$RECORD/key"; cat "$RECORD/key"; exit 0 ;;
  "apim show"*)
    echo "/subscriptions/s/resourceGroups/rg-test/providers/Microsoft.ApiManagement/service/apim-x"; exit 0 ;;
"""
OUTPUTS = {
    "GATEWAY_TYPE": "apiManagement",
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_FUNCTION_APP_NAME": "func-x",
    "AZURE_KEY_VAULT_NAME": "kv-x",
    "AZURE_KEY_VAULT_FUNCTION_KEY_NAME": "longrun-function-key",
    "AZURE_API_MANAGEMENT_NAME": "apim-x",
}


def run_hook(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {"KEY_VALUE": KEY, "POSTDEPLOY_PAUSE_SECONDS": "0"}
    return azd_hooks.run_hook(HOOK, tmp_path, AZ_ANSWERS, {**OUTPUTS, **settings, **env})


def test_azure_yaml_runs_the_hook_after_deploy() -> None:
    azd_hooks.assert_azure_yaml_runs(HOOK, "postdeploy", outputs=r"AZURE_[A-Z_]+|GATEWAY_TYPE")


def test_the_key_goes_to_key_vault_and_nowhere_else(tmp_path: Path) -> None:
    done = run_hook(tmp_path)
    assert done.returncode == 0, done.stderr
    # Exactly the key, without the newline `--output tsv` adds.
    assert (tmp_path / "record" / "secret").read_text() == KEY
    log = calls(tmp_path)
    assert KEY not in log and KEY not in done.stdout and KEY not in done.stderr
    assert (
        "az functionapp keys set --resource-group rg-test --name func-x --key-type functionKeys --key-name apim-gateway"
        in log
    )
    assert "az keyvault secret set --vault-name kv-x --name longrun-function-key --file " in log
    assert re.search(
        r"az rest --method post .*apim-x/namedValues/longrun-function-key/refreshSecret\?api-version=2024-05-01", log
    )
    assert log.strip().endswith("azd env set FUNCTION_KEY_IN_KEY_VAULT true")


def test_an_existing_key_is_reused_and_the_host_is_waited_for(tmp_path: Path) -> None:
    (tmp_path / "record").mkdir()
    (tmp_path / "record" / "key").write_text(KEY + "\n")
    done = run_hook(tmp_path, FAIL_LISTS="2", POSTDEPLOY_ATTEMPTS="5")
    assert done.returncode == 0, done.stderr
    assert "waiting for the function app's host (2/5)" in done.stdout
    assert "keys set" not in calls(tmp_path)
    assert (tmp_path / "record" / "secret").read_text() == KEY


def test_a_host_that_never_answers_fails_the_deploy_with_what_to_do(tmp_path: Path) -> None:
    done = run_hook(tmp_path, FAIL_LISTS="99", POSTDEPLOY_ATTEMPTS="2")
    assert done.returncode == 1
    assert "did not return its keys after 2 tries" in done.stderr and "azd hooks run postdeploy" in done.stderr
    assert "keyvault" not in calls(tmp_path) and "env set" not in calls(tmp_path)


@pytest.mark.parametrize("missing", ["AZURE_KEY_VAULT_NAME", "AZURE_RESOURCE_GROUP"])
def test_outside_azd_it_says_what_is_missing(tmp_path: Path, missing: str) -> None:
    done = run_hook(tmp_path, **{missing: ""})
    assert done.returncode != 0 and missing in done.stderr


def test_application_gateway_needs_no_wiring(tmp_path: Path) -> None:
    done = run_hook(tmp_path, GATEWAY_TYPE="applicationGateway")
    assert done.returncode == 0 and "clients send their own function keys" in done.stdout
    assert not (tmp_path / "record" / "calls").exists()
