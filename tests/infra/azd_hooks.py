"""Running the azd hooks (infra/hooks/*.sh) against stand-in `az` and `azd` CLIs, shared by their tests.

Azure is the one thing these tests may not reach: the stand-ins on PATH record every command line in
$RECORD/calls and answer the calls a hook makes as the real CLIs do (`keyvault secret set --file` copies the
file it is given to $RECORD/secret); any other call fails loudly.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from tests.infra.templates import BICEP_DIR, ROOT

KEYVAULT_SECRET_SET = r"""  "keyvault secret set"*)
    file=$(echo "$*" | sed -n 's/.*--file \([^ ]*\).*/\1/p'); cp "$file" "$RECORD/secret"; exit 0 ;;
  "rest"*) exit 0 ;;
"""
"""The `az` answers every hook needs: store a Key Vault secret from a file, and `az rest` calls."""

FAKE_AZD = """#!/bin/sh
echo "azd $*" >> "$RECORD/calls"
"""


def fake_az(answers: str) -> str:
    """A stand-in `az`: records its command line, then answers from `answers` (sh `case` branches)."""
    return (
        '#!/bin/sh\necho "az $*" >> "$RECORD/calls"\ncase "$*" in\n'
        + answers
        + KEYVAULT_SECRET_SET
        + 'esac\necho "unexpected az call: $*" >&2; exit 2\n'
    )


def run_hook(hook: Path, tmp_path: Path, az_answers: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `hook` with the stand-ins on PATH and `env` (azd's outputs and the test's settings)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("az", fake_az(az_answers)), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record), **env}
    return subprocess.run(["sh", str(hook)], env=environment, capture_output=True, text=True, timeout=60, check=False)


def calls(tmp_path: Path) -> str:
    """Every command line the stand-ins recorded, one a line."""
    return (tmp_path / "record" / "calls").read_text()


def assert_azure_yaml_runs(hook: Path, event: str, outputs: str = r"AZURE_[A-Z_]+") -> None:
    """azure.yaml's project-level hooks run `hook` on `event` with sh, the hook is executable and parses, and
    every output it reads (names matching `outputs` in ${...}) is an output of main.bicep (azd hands those to
    hooks as variables)."""
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    section = re.search(r"^hooks:\n((?:[ #].*\n|\n)*)", text, re.M)
    assert section, "azure.yaml has no project-level hooks"
    relative = hook.relative_to(ROOT).as_posix()
    assert re.search(
        rf"^(  #.*\n)?  {event}:\n    posix:\n      shell: sh\n      run: {re.escape(relative)}$", section[1], re.M
    ), f"azure.yaml does not run {relative} on {event}"
    assert hook.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["sh", "-n", str(hook)], check=False).returncode == 0
    main = (BICEP_DIR / "main.bicep").read_text()
    for name in set(re.findall(rf"\$\{{({outputs})", hook.read_text())):
        assert f"output {name} " in main, name
