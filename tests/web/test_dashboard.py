"""The web dashboard at /api/ui and Swagger UI at /api/docs, in a real headless Chromium against a real devhost.

What users meet: submit through the form and watch the job finish, upload a file through the form, replay a
dead letter, the key prompt behind --enforce-auth, a phone's viewport, the keyboard alone, Swagger UI's
"Try it out"; every page without console errors, and screenshots that are not blank.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.api.probes import FUNCTION_KEY
from tests.web.pages import assert_not_blank, enter_key, try_it_out, ui, wait_for_status

pytestmark = pytest.mark.slow
FINISHED = re.compile(r"COMPLETED|FAILED|CANCELLED")


def test_pages_are_served_with_a_strict_csp_and_nothing_outside_web(devhost):
    client = devhost.client
    page = client.get("/api/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # The submit form PUTs uploads to Blob storage: the CSP allows exactly that origin besides our own.
    assert re.search(r"connect-src 'self' http://127\.0\.0\.1:\d+(;|$)", csp), csp
    assert '<base href="/api/ui">' in page.text
    assert "<script>" not in page.text  # no inline script anywhere
    assert "{{" not in page.text  # every shared part (web/partials/) and marker filled in
    assert page.text.count('<dialog id="key-dialog"') == 1
    for path, content_type in (
        ("/api/ui/app.js", "text/javascript"),
        ("/api/ui/style.css", "text/css"),
        ("/api/ui/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("/api/ui/vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(content_type), path
        assert "content-security-policy" in response.headers
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "{{" not in docs.text and docs.text.count('<dialog id="key-dialog"') == 1
    for path in (
        "/api/ui/../function_app.py",
        "/api/ui/%2e%2e/function_app.py",
        "/api/ui/..%2f..%2ffunction_app.py",
        "/api/ui/vendor/uplot/LICENSE",  # a type we do not serve
        "/api/ui/.hidden.js",
        "/api/ui/nothing.js",
        "/api/ui/partials/key-dialog.html",  # a fragment of the pages, not a document of its own
    ):
        assert client.get(path).status_code == 404, path
    assert client.post("/api/ui").status_code == 405


def test_submit_through_the_form_and_watch_the_job_finish(devhost, open_page, browser):
    watched = open_page(ui(devhost, "#/submit"))
    page = watched.page
    page.get_by_label("Kind").select_option("simulate")
    page.get_by_label("Options (JSON object)").fill(json.dumps({"chunks": 3, "chunk_seconds": 0.5}))
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert page.locator("#live-mode").inner_text().startswith("Live:")
    # Live: the page shows the job running with its progress, then finished, without a reload.
    wait_for_status(page, "COMPLETED")
    assert "3/3" in page.locator(".summary").inner_text()
    timeline = page.locator(".timeline").inner_text()
    assert "Submitted" in timeline and "COMPLETED" in timeline
    assert '"chunks": 3' in page.locator("pre.json").inner_text()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download result (JSON)").click()
    download = download_info.value
    assert json.loads(open(download.path()).read()) == devhost.client.get(f"/api/jobs/{job_id}/result").json()
    assert_not_blank(browser, page, "job-completed")

    # The list shows it, filtered by kind and status.
    page.goto(ui(devhost, "#/jobs?status=COMPLETED&kind=simulate"))
    page.locator(f"tr[data-job='{job_id}']").wait_for()
    assert page.get_by_label("Status").input_value() == "COMPLETED"
    page.get_by_label("Status").select_option("FAILED")
    page.wait_for_url(re.compile(r"status=FAILED"))
    page.locator(f"tr[data-job='{job_id}']").wait_for(state="detached")
    # A function, not an expression: Playwright evals expressions in the page, which the page's CSP forbids.
    page.wait_for_function(
        "() => document.querySelectorAll('tr[data-job]').length > 0"
        " || document.querySelector('main p[role=status]')?.textContent === 'No jobs match.'"
    )
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    # Other tests' jobs share the session's Jobs table: whatever is listed is FAILED.
    assert set(page.locator("tr[data-job] .badge").all_inner_texts()) <= {"FAILED"}


def test_the_job_list_shows_live_status(devhost, open_page):
    job = devhost.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 2, "chunk_seconds": 2}})
    job_id = job.json()["id"]
    page = open_page(ui(devhost, "#/jobs")).page
    row = page.locator(f"tr[data-job='{job_id}']")
    row.wait_for()
    # The same row, without reloading the page, moves on to COMPLETED.
    row.locator(".badge", has_text="COMPLETED").wait_for(timeout=60_000)


def test_upload_a_file_through_the_form(devhost, open_page, tmp_path):
    data = tmp_path / "sales.csv"
    rows = ["region,amount"] + [f"{r},{i}" for i in range(2000) for r in ("north", "south")]
    data.write_text("\n".join(rows) + "\n")
    page = open_page(ui(devhost, "#/submit")).page
    page.get_by_label("Kind").select_option("csv-report")
    page.get_by_label("Options (JSON object)").fill(json.dumps({"group_by": "region", "metrics": ["amount"]}))
    page.get_by_label("Input file (CSV, NDJSON or JSON)").set_input_files(str(data))
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"), timeout=60_000)
    wait_for_status(page, "COMPLETED")
    job_id = page.url.rsplit("/", 1)[1]
    result = devhost.client.get(f"/api/jobs/{job_id}/result").json()
    assert json.dumps(result).count("north") >= 1
    assert str(sum(range(2000))) in json.dumps(result)
    # The kind renders CSV too: the page offers it.
    assert page.get_by_role("button", name="Download CSV").is_visible()


def test_upload_progress_is_shown(devhost, open_page, tmp_path):
    """The form stays on the page when the submit itself is refused, so the finished upload's progress shows."""
    data = tmp_path / "big.csv"
    data.write_text("region,amount\n" + "north,1\n" * 200_000)
    page = open_page(ui(devhost, "#/submit"), allow=["status of 422"]).page
    page.get_by_label("Kind").select_option("csv-report")
    page.get_by_label("Options (JSON object)").fill(json.dumps({"group_by": "region"}))
    page.get_by_label("Deadline in seconds (optional)").fill("0")  # refused (422) after the upload
    page.get_by_label("Input file (CSV, NDJSON or JSON)").set_input_files(str(data))
    page.get_by_role("button", name="Submit job").click()
    page.locator("#submit-status .error").wait_for()
    assert page.locator("#upload-progress").get_attribute("value") == "100"
    assert f"Uploaded {data.stat().st_size} bytes" in page.locator("#upload-progress-text").inner_text()


def test_replay_a_dead_letter(devhost, open_page):
    failed = devhost.client.post(
        "/api/jobs", json={"kind": "simulate", "options": {"chunks": 1, "permanent_failure": True}}
    )
    job_id = failed.json()["id"]
    assert devhost.wait_for_job(failed.headers["location"]).json()["status"] == "FAILED"
    deadline = time.monotonic() + 30
    while not any(i["job_id"] == job_id for i in devhost.client.get("/api/dead-letters").json()["items"]):
        assert time.monotonic() < deadline, "no dead letter recorded"
        time.sleep(0.2)
    page = open_page(ui(devhost, "#/dead-letters")).page
    row = page.locator("tr[data-dead-letter]", has=page.locator(f"a[href='#/jobs/{job_id}']"))
    row.get_by_role("button", name="Replay").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    new_id = page.url.rsplit("/", 1)[1]
    assert new_id != job_id
    # The replay is a real new job, with the failed job's kind and options: it fails the same way.
    wait_for_status(page, "FAILED")
    assert "simulated_failure" in page.locator("[role=alert]").inner_text()
    assert devhost.client.get(f"/api/jobs/{new_id}").json()["kind"] == "simulate"


def test_overview_shows_health_queue_depths_and_charts(devhost, open_page, browser):
    done = devhost.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1}})
    devhost.wait_for_job(done.headers["location"])
    page = open_page(ui(devhost)).page
    page.get_by_role("table", name="Queue depths").wait_for()
    assert "jobs-inbox" in page.get_by_role("table", name="Queue depths").inner_text()
    page.locator(".charts canvas").nth(2).wait_for()
    assert page.locator(".charts canvas").count() == 3
    assert re.search(r"[1-9]\d* submitted", page.locator("#stats-totals").inner_text())
    assert_not_blank(browser, page, "overview")


def test_phone_viewport(devhost, open_page, browser):
    devhost.client.post("/api/jobs", json={"kind": "simulate", "options": {"chunks": 1}})
    for fragment in ("#/jobs", "", "#/submit"):
        page = open_page(ui(devhost, fragment), viewport={"width": 390, "height": 844}, is_mobile=True).page
        page.locator("main h1").wait_for()
        if fragment == "#/jobs":
            page.locator("tr[data-job]").first.wait_for()
        # Nothing wider than the screen: no sideways scrolling of the page.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), fragment
        name = f"phone{fragment.replace('#/', '-') or '-overview'}"
        shot = assert_not_blank(browser, page, name, colours=10, variance=50)
        assert shot["width"] == 390, shot


def test_keyboard_only(devhost, open_page):
    page = open_page(ui(devhost)).page
    page.locator("main h1").wait_for()
    # Tab from the top of the page to the Submit link and follow it with Enter.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Submit":
            break
    else:
        pytest.fail("the Submit link is not reachable with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/submit$"))
    page.get_by_label("Kind").locator("option", has_text="simulate").wait_for(state="attached")
    # Focus moved to the new view's heading; Tab reaches the kind, arrows choose, Tab on to the fields.
    assert page.evaluate("document.activeElement.tagName") == "H1"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit-kind"
    page.get_by_label("Kind").select_option("simulate")  # a <select>: the keyboard opens it natively
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit-input"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "submit-options"
    page.keyboard.press("Control+A")
    page.keyboard.type('{"chunks": 2}')
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Submit job"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    wait_for_status(page, "COMPLETED")
    # Every control on the job page is a real button or link: focusable in order.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") in ("BUTTON", "A")


def test_swagger_ui_try_it_out(devhost, open_page, browser):
    page = open_page(f"{devhost.base_url}/api/docs").page
    assert try_it_out(page, "health") == "200"
    assert '"storage": "ok"' in page.locator(".live-responses-table .microlight").first.inner_text()
    assert_not_blank(browser, page, "swagger")


def test_a_key_is_asked_for_behind_enforce_auth_and_kept_in_the_session_only(devhost_factory, open_page):
    host = devhost_factory(args=["--enforce-auth"])
    host.client.post("/api/jobs", json={"kind": "simulate"}, headers={"x-functions-key": FUNCTION_KEY})
    # The first call without a key is a 401 the browser reports on its console: that one is expected.
    watched = open_page(ui(host, "#/jobs"), allow=["status of 401"])
    page = watched.page
    assert enter_key(page, FUNCTION_KEY) == "x-functions-key"
    page.locator("tr[data-job]").first.wait_for()
    assert page.evaluate("sessionStorage.getItem('longrun.functionKey')") == FUNCTION_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    # Swagger UI in the same tab reuses the key for the document and for "Try it out".
    page.goto(f"{host.base_url}/api/docs")
    assert try_it_out(page, "listJobs") == "200"
    assert all("401" in e for e in watched.errors), watched.errors
