"""Fixtures: a real headless Chromium (Debian's, driven by Playwright from PyPI) against a real devhost.

Every page a test opens records its console errors and uncaught exceptions; a test fails on any it did
not expect (the dashboard promises no console errors). Screenshots land in $TMPDIR/longrun-web/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("TMPDIR", "/tmp")) / "longrun-web"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless; `make browser` installs it (no browser download by Playwright)."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make browser` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """A page and what its console said."""

    page: Any
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Watched]]:
    """Open pages in fresh contexts (their own sessionStorage); fail the test on console errors."""
    watched: list[Watched] = []
    contexts: list[Any] = []

    def start(
        url: str, *, viewport: dict[str, int] | None = None, allow: list[str] | None = None, **options: Any
    ) -> Watched:
        context = browser.new_context(
            viewport=viewport or {"width": 1280, "height": 900}, accept_downloads=True, **options
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        entry = Watched(page, allowed=list(allow or []))

        def on_console(message: Any) -> None:
            if message.type == "error":
                entry.errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: entry.errors.append(f"uncaught: {error}"))
        watched.append(entry)
        page.goto(url)
        return entry

    yield start
    for context in contexts:
        context.close()
    problems = [error for entry in watched for error in entry.unexpected()]
    assert not problems, f"console errors: {problems}"


def screenshot_stats(browser: Any, png: bytes) -> dict[str, float]:
    """Decode a screenshot in Chromium itself (a canvas of a blank page) and measure it: how many distinct
    colours, and the variance of the luminance. A blank or single-colour page has ~1 colour and ~0 variance."""
    import base64

    context = browser.new_context()
    try:
        page = context.new_page()
        data_url = "data:image/png;base64," + base64.b64encode(png).decode()
        return dict(
            page.evaluate(
                """async (src) => {
                    const image = new Image();
                    image.src = src;
                    await image.decode();
                    const canvas = document.createElement('canvas');
                    canvas.width = image.width; canvas.height = image.height;
                    const ctx = canvas.getContext('2d');
                    ctx.drawImage(image, 0, 0);
                    const pixels = ctx.getImageData(0, 0, image.width, image.height).data;
                    const colours = new Set();
                    let sum = 0, sumSq = 0, n = 0;
                    for (let i = 0; i < pixels.length; i += 16) {
                        const y = 0.299 * pixels[i] + 0.587 * pixels[i + 1] + 0.114 * pixels[i + 2];
                        sum += y; sumSq += y * y; n++;
                        colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
                    }
                    const mean = sum / n;
                    const variance = sumSq / n - mean * mean;
                    return {colours: colours.size, variance, width: image.width, height: image.height};
                }""",
                data_url,
            )
        )
    finally:
        context.close()


def take_screenshot(browser: Any, page: Any, name: str) -> dict[str, float]:
    """Save a full-page screenshot under SHOTS and return its measurements (for "not blank" assertions)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    return screenshot_stats(browser, png)
