"""The dashboard's files reach a deployed app: web/ is packaged, web/vendor/ is generated before packaging
and holds every file the pages load (a file missing there would break the page only in Azure)."""

from __future__ import annotations

import re
from pathlib import Path

from api.web import page_template

ROOT = Path(__file__).resolve().parents[2]


def makefile_vendor_files() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(r"^VENDOR_FILES := (.*?)\n(?=\S)", text, re.M | re.S)
    assert block, "the Makefile lists VENDOR_FILES"
    return set(re.findall(r"web/vendor/\S+", block.group(1)))


def page_references() -> set[str]:
    found = set()
    for page in ("ui", "docs"):
        html = page_template(page)  # as served: with the partials the pages share (web/partials/)
        found |= {f"web/{ref[len('ui/') :]}" for ref in re.findall(r'(?:src|href)="(ui/[^"]+)"', html)}
    return found


def test_every_vendored_file_a_page_loads_is_copied_by_make_vendor() -> None:
    vendored = {ref for ref in page_references() if ref.startswith("web/vendor/")}
    assert vendored, "the pages load uPlot and Swagger UI from web/vendor/"
    assert vendored <= makefile_vendor_files()
    # Our own files exist in the repository.
    for ref in page_references() - vendored:
        assert (ROOT / ref).is_file(), ref


def test_make_vendor_copies_from_the_pinned_npm_packages() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    package = (ROOT / "package.json").read_text(encoding="utf-8")
    for name in ("uplot", "swagger-ui-dist"):
        assert f"node_modules/{name}/" in text
        assert re.search(rf'"{name}": "\d+\.\d+\.\d+"', package), f"{name} pinned exactly"
    assert re.search(r"^setup: .*web/vendor/\.installed", text, re.M)


def test_web_is_deployed_and_vendor_is_generated_not_committed() -> None:
    funcignore = [line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()]
    assert not any(line.startswith(("web", "/web", "*.js", "*.html", "*.css")) for line in funcignore), funcignore
    assert "web/vendor/" in (ROOT / ".gitignore").read_text().splitlines()
    azure = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(
        r"^    hooks:\n(      #.*\n)*      prepackage:\n        posix:\n.*\n          run: make vendor$", azure, re.M
    )
