"""The azd postprovision hook generates the webhook signing secret in Key Vault once, without ever showing it.

As tests/infra/test_hooks.py does: stand-in `az` and `azd` on PATH record every command line (Azure is the one
thing these tests may not reach); `keyvault secret set --file` copies the file it is given.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

from tests.infra.templates import ROOT

HOOK = ROOT / "infra" / "hooks" / "postprovision.sh"

FAKE_AZ = r"""#!/bin/sh
echo "az $*" >> "$RECORD/calls"
case "$*" in
  "keyvault secret set"*)
    file=$(echo "$*" | sed -n 's/.*--file \([^ ]*\).*/\1/p'); cp "$file" "$RECORD/secret"; exit 0 ;;
  "functionapp show"*)
    echo "/subscriptions/s/resourceGroups/rg-test/providers/Microsoft.Web/sites/func-x"; exit 0 ;;
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
        "AZURE_RESOURCE_GROUP": "rg-test",
        "AZURE_FUNCTION_APP_NAME": "func-x",
        "AZURE_KEY_VAULT_NAME": "kv-x",
        "AZURE_KEY_VAULT_WEBHOOK_SECRET_NAME": "longrun-webhook-secret",
        **env,
    }
    return subprocess.run(["sh", str(HOOK)], env=environment, capture_output=True, text=True, timeout=60, check=False)


def test_azure_yaml_runs_the_hook_after_provision_with_outputs_of_main_bicep() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(
        r"^  postprovision:\n    posix:\n      shell: sh\n      run: infra/hooks/postprovision.sh$", text, re.M
    )
    assert subprocess.run(["sh", "-n", str(HOOK)], check=False).returncode == 0
    main = (ROOT / "infra" / "bicep" / "main.bicep").read_text()
    for name in set(re.findall(r"\$\{(AZURE_[A-Z_]+)", HOOK.read_text())):
        assert f"output {name} " in main, name


def test_a_random_whsec_secret_goes_to_key_vault_and_nowhere_else(tmp_path: Path) -> None:
    done = run_hook(tmp_path)
    assert done.returncode == 0, done.stderr
    secret = (tmp_path / "record" / "secret").read_text()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    log = (tmp_path / "record" / "calls").read_text()
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
