"""What the browser tests do on the pages, written once: open the dashboard, type the key into its dialog,
wait for a job's status, try an operation in Swagger UI, and check that a screenshot is not blank."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import take_screenshot


def ui(host: Any, fragment: str = "") -> str:
    """The dashboard's URL on a host (devhost, or the gateway in front of one), with a route fragment."""
    return f"{host.base_url}/api/ui{fragment}"


def wait_for_status(page: Any, status: str, timeout: float = 60_000) -> None:
    """Wait until the job page's summary shows `status`."""
    page.locator(".summary .badge", has_text=status).wait_for(timeout=timeout)


def enter_key(page: Any, key: str) -> str:
    """Wait for the key dialog, type `key` and use it; returns the header the dialog says the key is sent in."""
    dialog = page.get_by_role("dialog", name="API key")
    dialog.wait_for()
    header = str(dialog.locator("#key-header").inner_text())
    dialog.get_by_label("Key").fill(key)
    dialog.get_by_role("button", name="Use key").click()
    return header


def try_it_out(page: Any, operation_id: str) -> str:
    """In Swagger UI: open an operation, "Try it out", "Execute"; returns the HTTP status the page shows."""
    operation = page.locator(f"#operations-default-{operation_id}")
    operation.locator(".opblock-summary").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    return str(status.inner_text()).strip()


def assert_not_blank(
    browser: Any, page: Any, name: str, *, colours: int = 20, variance: float = 100.0
) -> dict[str, float]:
    """Take a screenshot (kept under SHOTS) and fail if it is blank: too few colours or too little contrast."""
    shot = take_screenshot(browser, page, name)
    assert shot["colours"] > colours and shot["variance"] > variance, shot
    return shot
