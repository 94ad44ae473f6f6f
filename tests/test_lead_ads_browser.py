"""The Lead Ads panel in a real headless Chromium (Debian's, through Playwright).

Everything is real: the app served over HTTP on loopback, webhook processing and the import in a
real `python worker.py` subprocess, and the Graph API played by tests/graph_fake.py on loopback.
A leadgen webhook is signed here as Meta signs it and posted to the integration's public address.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, REDIS_URL, TEST_KEY
from tests.graph_fake import FORM_ID, OTHER_FORM_ID, GraphFake
from tests.live_server import WorkerProcess
from tests.test_browser import assert_clean_markup, chromium, live_server, page  # noqa: F401  (fixtures)
from tests.test_lead_ads import LEAD_ID, configure, leadgen, sign

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS_LEADS", "/tmp/switchboard-leads"))


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


@pytest.fixture
def graph_server(app, httpserver, live_server, monkeypatch):
    version = app.config["META_API_VERSION"]
    fake = GraphFake(version, httpserver.url_for("/").rstrip("/"))
    httpserver.expect_request(re.compile(f"/{version}/.*"), method="GET").respond_with_handler(fake.handle)
    monkeypatch.setitem(app.config, "META_GRAPH_API_BASE", fake.base_url)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server.url)  # the address Meta posts to
    return fake


@pytest.fixture
def worker(app, graph_server, live_server, tmp_path):
    assert app.config["ENCRYPTION_KEYS"] == TEST_KEY
    env = {"APP_ENV": "testing", "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": REDIS_URL,
           "RQ_QUEUE": app.config["RQ_QUEUE"], "SECRET_KEY": app.config["SECRET_KEY"], "ENCRYPTION_KEYS": TEST_KEY,
           "META_GRAPH_API_BASE": graph_server.base_url, "PUBLIC_BASE_URL": live_server.url,
           "PROVIDER_TIMEOUT_SECONDS": "30", "INSTANCE_PATH": str(tmp_path / "instance")}
    with WorkerProcess(env, tmp_path / "worker.log", redis_url=REDIS_URL, queue=app.config["RQ_QUEUE"]) as process:
        yield process


def test_choose_a_form_map_its_questions_and_import_leads(page, live_server, admin, api, graph_server, worker):
    for n in range(3):
        graph_server.add_lead(f"90000000000002{n}", email=f"lead{n}@example.com", full_name=f"Lead Number{n}",
                              budget=str(1000 * (n + 1)))
    graph_server.add_lead(LEAD_ID, email="jane@example.com", full_name="Jane Doe", phone_number="4155552671")
    fb = configure(api)
    try:
        _run_flow(page, live_server, admin, fb, worker)
    except Exception:
        shot(page, "failure")
        print("worker output:\n" + worker.output())
        raise
    assert page.problems == [], page.problems


def _run_flow(page, live_server, admin, fb, worker):
    from app.extensions import db
    email = admin.email
    db.session.remove()  # the test thread holds no connection while the server works

    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")

    # The overview loads the panel, which asks Meta for the forms and the chosen form's questions.
    page.goto(f"/integrations/{fb['id']}")
    panel = page.locator("#lead-ads")
    expect(panel.locator("#leads-empty")).to_contain_text("No leads yet.")
    forms = panel.locator("#lead-forms-table")
    expect(forms).to_contain_text("Spring offer")
    expect(forms.locator(f'tr[data-form-id="{FORM_ID}"] .badge')).to_have_text("Chosen")
    mapping = panel.locator("#mapping-table")
    expect(mapping).to_contain_text("What is your budget?")
    expect(mapping.locator('tr[data-key="company_name"] input[type=text]')).to_have_value("company")
    assert_clean_markup(page, page.content())
    shot(page, "30-lead-ads-panel")

    # Choosing another form updates the settings and reloads the mapping with that form's questions.
    page.evaluate("window.__sameDocument = true")
    forms.locator(f'tr[data-form-id="{OTHER_FORM_ID}"]').get_by_role("button", name="Choose").click()
    expect(panel.locator("#form-chosen")).to_have_text(f"Leads now come from form {OTHER_FORM_ID}.")
    expect(panel.locator("#chosen-form")).to_have_text(f"Form {OTHER_FORM_ID}")
    expect(mapping.locator("tbody tr")).to_have_count(1)
    panel.locator(f'#lead-forms-table tr[data-form-id="{FORM_ID}"]').get_by_role("button", name="Choose").click()
    expect(panel.locator("#chosen-form")).to_have_text(f"Form {FORM_ID}")
    expect(mapping.locator("tbody tr")).to_have_count(5)

    # Map the budget question to a custom field of our own name.
    row = mapping.locator('tr[data-key="budget"]')
    row.locator("select").select_option("fields")
    row.locator("input[type=text]").fill("Budget range")
    panel.get_by_role("button", name="Save mapping").click()
    expect(panel.locator("#mapping-saved")).to_be_visible()
    shot(page, "31-mapping-saved")

    # A lead arrives by webhook, signed as Meta signs it; the worker makes its contact.
    worker.wait_until_listening()
    body = leadgen(LEAD_ID)
    answer = requests.post(fb["webhook_url"].replace("https://switchboard.example.com", live_server.url), data=body,
                           headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "accepted"}

    # Import the others: progress while the job runs, then the list of leads refreshes by itself.
    panel.get_by_role("button", name="Import recent leads").click()
    progress = panel.locator("#import-progress")
    expect(progress).to_contain_text("Import finished.", timeout=15_000)
    expect(progress).to_contain_text("4 read from Meta, 3 new, 3 processed, 1 already here, 0 failed")
    leads = panel.locator("#leads-table tbody tr")
    expect(leads).to_have_count(4)
    expect(panel.locator("#lead-counts")).to_have_text("4 processed · 0 pending · 0 failed")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert_clean_markup(page, page.content())
    shot(page, "32-imported")

    # A lead's contact carries the mapped answer.
    panel.get_by_role("link", name="Lead Number1").click()
    expect(page.locator("#custom-fields")).to_contain_text("Budget range")
    expect(page.locator("#custom-fields")).to_contain_text("2000")
    expect(page.locator("#tags")).to_contain_text("Facebook lead")
