"""The azd postdeploy hook wires the function key into Key Vault without ever showing it.

The hook runs against a stand-in `az` and `azd` on PATH (Azure itself is the one thing these tests may not
reach): the stand-ins record every command line and answer like the real CLIs (`az functionapp keys list`
prints the key with --output tsv, `keys set` creates it, `keyvault secret set --file` reads the file).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.infra.templates import ROOT

HOOK = ROOT / "infra" / "hooks" / "postdeploy.sh"
KEY = "Zx9-function-key-value-from-the-host=="

FAKE_AZ = r"""#!/bin/sh
echo "az $*" >> "$RECORD/calls"
case "$*" in
  "functionapp keys list"*)
    n=$(cat "$RECORD/list-count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$RECORD/list-count"
    if [ "$n" -le "${FAIL_LISTS:-0}" ]; then echo "ERROR: Bad Request (host not started)" >&2; exit 1; fi
    [ -f "$RECORD/key" ] && cat "$RECORD/key"; exit 0 ;;
  "functionapp keys set"*)
    printf '%s\n' "$KEY_VALUE" > "$RECORD/key"; cat "$RECORD/key"; exit 0 ;;
  "keyvault secret set"*)
    file=$(echo "$*" | sed -n 's/.*--file \([^ ]*\).*/\1/p'); cp "$file" "$RECORD/secret"; exit 0 ;;
  "apim show"*)
    echo "/subscriptions/s/resourceGroups/rg-test/providers/Microsoft.ApiManagement/service/apim-x"; exit 0 ;;
  "rest"*) exit 0 ;;
esac
echo "unexpected az call: $*" >&2; exit 2
"""
FAKE_AZD = """#!/bin/sh
echo "azd $*" >> "$RECORD/calls"
"""


def run_hook(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RECORD": str(record),
        "KEY_VALUE": KEY,
        "GATEWAY_TYPE": "apiManagement",
        "AZURE_RESOURCE_GROUP": "rg-test",
        "AZURE_FUNCTION_APP_NAME": "func-x",
        "AZURE_KEY_VAULT_NAME": "kv-x",
        "AZURE_KEY_VAULT_FUNCTION_KEY_NAME": "longrun-function-key",
        "AZURE_API_MANAGEMENT_NAME": "apim-x",
        "POSTDEPLOY_PAUSE_SECONDS": "0",
        **env,
    }
    return subprocess.run(["sh", str(HOOK)], env=environment, capture_output=True, text=True, timeout=60, check=False)


def calls(tmp_path: Path) -> str:
    return (tmp_path / "record" / "calls").read_text()


def test_azure_yaml_runs_the_hook_after_deploy() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(
        r"^hooks:\n(  #.*\n)?  postdeploy:\n    posix:\n      shell: sh\n      run: infra/hooks/postdeploy.sh$",
        text,
        re.M,
    )
    assert HOOK.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["sh", "-n", str(HOOK)], check=False).returncode == 0
    # The outputs the hook reads are outputs of main.bicep (azd hands them to hooks as variables).
    main = (ROOT / "infra" / "bicep" / "main.bicep").read_text()
    for name in set(re.findall(r"\$\{(AZURE_[A-Z_]+|GATEWAY_TYPE)", HOOK.read_text())):
        assert f"output {name} " in main, name


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
