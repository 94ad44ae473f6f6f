"""The pages a person uses, driven in a real headless Chromium (Debian's, through Playwright).

Everything is real: the app is served over HTTP on loopback with its own migrated
database, connection tests run in a real `python worker.py` subprocess, and SendGrid
is a loopback server speaking SendGrid's wire format.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import threading
from pathlib import Path

import pytest
from werkzeug import Response

from tests.conftest import REDIS_URL, TEST_KEY
from tests.live_server import LiveServer, WorkerProcess

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS", "/tmp/switchboard-browser"))

# Reported into the console by every page, so CSP violations cannot go unnoticed even if
# the browser's own report changes wording. Init scripts are injected by the browser, not by
# the page, so the page's CSP does not apply to them.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
                ' at ' + e.sourceFile + ':' + e.lineNumber);
});
"""


@pytest.fixture(scope="module")
def live_server(app):
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is not installed (scripts/test.sh installs it: apt-get install chromium)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.problems = []  # console errors and warnings, uncaught exceptions, failed requests
    page.on("console", lambda m: m.type in ("error", "warning") and page.problems.append(
        f"console {m.type}: {m.text} ({m.location.get('url')})"))
    page.on("pageerror", lambda exc: page.problems.append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda r: aborted_by_navigation(r) or page.problems.append(
        f"request failed: {r.method} {r.url} {r.failure}"))
    yield page
    context.close()


def aborted_by_navigation(request) -> bool:
    """The browser cancels a favicon still loading when the next page is requested: not a fault of the page."""
    return request.url.endswith("/favicon.svg") and request.failure == "net::ERR_ABORTED"


class FakeSendGrid:
    """GET /v3/scopes as SendGrid answers it. `gate` holds answers back, so a test can see
    the in-progress state for as long as it likes; every Authorization header is recorded."""

    def __init__(self, httpserver, key: str):
        self.key = key
        self.gate = threading.Event()
        self.authorizations: list[str | None] = []
        httpserver.expect_request("/v3/scopes", method="GET").respond_with_handler(self.scopes)
        self.base = httpserver.url_for("/").rstrip("/")

    def scopes(self, request):
        self.authorizations.append(request.headers.get("Authorization"))
        self.gate.wait(timeout=20)
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return Response(json.dumps({"errors": [{"field": None, "message": "authorization required"}]}),
                            status=401, content_type="application/json")
        return Response(json.dumps({"scopes": ["mail.send", "scopes.read", "stats.read"]}),
                        content_type="application/json")


@pytest.fixture
def sendgrid(httpserver):
    fake = FakeSendGrid(httpserver, key="SG." + secrets.token_urlsafe(24))
    yield fake
    fake.gate.set()  # never leave a handler waiting


@pytest.fixture
def worker(app, sendgrid, tmp_path):
    env = {
        "APP_ENV": "testing",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": REDIS_URL,
        "RQ_QUEUE": app.config["RQ_QUEUE"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "ENCRYPTION_KEYS": TEST_KEY,
        "SENDGRID_API_BASE": sendgrid.base,
        "PROVIDER_TIMEOUT_SECONDS": "30",
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    assert app.config["ENCRYPTION_KEYS"] == TEST_KEY
    with WorkerProcess(env, tmp_path / "worker.log", redis_url=REDIS_URL, queue=app.config["RQ_QUEUE"]) as process:
        yield process


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # caret="initial": Playwright's default hides the caret by styling inputs, leaving style="" behind.
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


def assert_clean_markup(page, html: str) -> None:
    """No inline styles or scripts: the CSP (script-src/style-src 'self') would block them."""
    for pattern, what in ((r"<script(?![^>]*\bsrc=)[^>]*>", "inline <script>"), (r"<[^>]*\sstyle\s*=[^>]*>", "inline style"),
                          (r"<style\b[^>]*>", "<style> element"), (r"<[^>]*\son[a-z]+\s*=[^>]*>", "inline event handler")):
        found = re.search(pattern, html)
        assert not found, f"{what} in {page.url}: {found.group(0)}"
    styled = page.locator("[style]").evaluate_all("els => els.map(e => e.outerHTML.slice(0, 200))")
    assert styled == [], f"elements with a style attribute at run time: {styled}"


def test_setup_add_test_edit_delete(page, live_server, sendgrid, worker):
    secret = sendgrid.key
    try:
        _run_flow(page, live_server, sendgrid, worker, secret)
    except Exception:
        shot(page, "failure")
        print("worker output:\n" + worker.output())
        raise
    assert page.problems == [], page.problems


def _run_flow(page, live_server, sendgrid, worker, secret):
    # First run: with no users, / leads to the setup page.
    response = page.goto("/")
    assert response.ok
    assert page.url == f"{live_server.url}/setup"
    expect(page.get_by_role("heading", name="Welcome to Switchboard")).to_be_visible()
    assert_clean_markup(page, response.text())
    shot(page, "01-setup")
    page.get_by_label("Organisation name").fill("Acme Bakery")
    page.get_by_label("Your email").fill("owner@acme.example.com")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Create organisation").click()

    # The hub, signed in, with every type empty.
    expect(page).to_have_url(f"{live_server.url}/integrations")
    expect(page.locator(".flash.success")).to_contain_text("Welcome to Switchboard")
    expect(page.locator("header.top")).to_contain_text("owner@acme.example.com")
    expect(page.locator("#type-email .empty")).to_be_visible()
    assert page.locator(".grid > section .empty").count() == page.locator(".grid > section").count() >= 5
    assert_clean_markup(page, page.content())
    shot(page, "02-hub-empty")

    # Add a SendGrid integration against the local fake.
    page.locator("#type-email").get_by_role("link", name="Add Email").click()
    expect(page.get_by_role("heading", name="New Email integration")).to_be_visible()
    expect(page.locator("#provider")).to_have_value("sendgrid")
    page.get_by_label("Name", exact=True).fill("Marketing email")
    page.locator("#f-from_email").fill("hello@acme.example.com")
    page.locator("#f-from_name").fill("Acme Bakery")
    page.locator("#f-api_key").fill(secret)
    assert_clean_markup(page, page.content())
    shot(page, "03-add-form")
    page.get_by_role("button", name="Add integration").click()

    expect(page.locator(".flash.success")).to_contain_text("Marketing email was added")
    detail_url = page.url
    assert re.fullmatch(rf"{re.escape(live_server.url)}/integrations/\d+", detail_url)
    badge = page.locator("#integration-summary .badge")
    expect(badge).to_have_text("pending")
    assert secret not in page.content()

    # Test connection: visible progress while the worker runs the check, then the result,
    # and the badge turns active without a page load.
    page.evaluate("window.__sameDocument = true")
    loads = []
    page.on("load", lambda: loads.append(page.url))
    worker.wait_until_listening()
    page.get_by_role("button", name="Test connection").click()
    status = page.locator("#test-status")
    expect(status).to_have_text(re.compile(r"Test queued, waiting for a worker…|Testing the connection…"))
    expect(status.locator(".spinner")).to_be_visible()
    # The worker picks the job up and calls the fake, which holds its answer back.
    expect(status).to_have_text(re.compile(r"Testing the connection…"), timeout=15_000)
    expect(status.locator(".spinner")).to_be_visible()
    assert status.get_attribute("hx-trigger") == "every 1s"
    shot(page, "04-testing")
    sendgrid.gate.set()
    expect(status).to_contain_text("Connection test passed.", timeout=15_000)
    expect(status).to_contain_text("including Mail Send")
    expect(status).to_have_class(re.compile(r"\bpassed\b"))
    expect(status.locator(".spinner")).to_have_count(0)
    expect(badge).to_have_text("active")
    expect(page.locator("#error-count")).to_have_text("0")
    assert page.evaluate("window.__sameDocument") is True and loads == [], "the page reloaded"
    assert page.url == detail_url
    assert sendgrid.authorizations == [f"Bearer {secret}"]
    expect(page.locator("#recent-log")).to_contain_text("Connection test passed")
    assert_clean_markup(page, page.content())
    shot(page, "05-passed")

    # Edit: the secret is never sent back; the field is empty and says a value is set.
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit Marketing email")).to_be_visible()
    edit_html = page.request.get(page.url).text()
    assert secret not in edit_html and secret not in page.content()
    api_key = page.locator("#f-api_key")
    expect(api_key).to_have_value("")
    expect(api_key).to_have_attribute("type", "password")
    expect(page.locator("#set-api_key")).to_have_text("A value is set. Type a new one to replace it.")
    expect(page.locator("#f-from_email")).to_have_value("hello@acme.example.com")
    assert_clean_markup(page, edit_html)
    shot(page, "06-edit")
    page.get_by_label("Name", exact=True).fill("Marketing email (EU)")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash.success")).to_have_text("Saved.")
    expect(page.get_by_role("heading", name="Marketing email (EU)")).to_be_visible()
    assert secret not in page.content()

    # The stored key was kept: a second test sends it again and passes.
    sendgrid.gate.clear()
    page.get_by_role("button", name="Test connection").click()
    expect(status).to_have_text(re.compile(r"Testing the connection…"), timeout=15_000)
    sendgrid.gate.set()
    expect(status).to_contain_text("Connection test passed.", timeout=15_000)
    expect(badge).to_have_text("active")
    assert sendgrid.authorizations == [f"Bearer {secret}"] * 2

    # Delete through the confirmation page; the hub is empty again.
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete Marketing email (EU)?")).to_be_visible()
    assert_clean_markup(page, page.content())
    shot(page, "07-delete")
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")
    expect(page.locator(".flash.success")).to_have_text("Marketing email (EU) was deleted.")
    expect(page.locator("#type-email .empty")).to_be_visible()
    expect(page.locator("#type-email ul.items")).to_have_count(0)
    assert page.locator(".grid > section .empty").count() == page.locator(".grid > section").count()


def test_every_page_is_clean(page, live_server, admin):
    """Sign in, then every page a person reaches: no console errors, no CSP violations,
    no inline styles or scripts, and htmx fragments (the provider switch) work."""
    from app.extensions import db
    from app.services import integrations as svc
    from tests.conftest import PASSWORD

    integration, errors = svc.create_integration(admin.organization_id, admin, "sms", "Shop texts", "twilio")
    assert not errors
    svc.log_event(integration, "test_failed", "Connection test failed: Twilio refused the credentials.", level="error")
    from app.services import campaigns
    campaign, errors = campaigns.create(admin.organization_id, {"name": "Welcome", "steps": [
        {"channel": "sms", "body": "Hi {{first_name|there}}"}]})
    assert not errors
    from app.services import contacts
    contact, _, errors = contacts.upsert_contact(admin.organization_id, {"email": "jane@example.com", "tags": ["VIP"]})
    assert not errors
    db.session.commit()
    integration_id, email, campaign_id, contact_id = integration.id, admin.email, campaign.id, contact.id
    db.session.remove()  # the test thread holds no connection while the server works

    response = page.goto("/integrations")
    assert page.url == f"{live_server.url}/login?next=%2Fintegrations"
    assert_clean_markup(page, response.text())
    shot(page, "10-login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")
    expect(page.locator("#type-sms ul.items")).to_contain_text("Shop texts")
    page.wait_for_load_state()  # leaving before its deferred script arrived would abort that request

    pages = ["/integrations", f"/integrations/{integration_id}", f"/integrations/{integration_id}/edit",
             f"/integrations/{integration_id}/logs", f"/integrations/{integration_id}/logs?level=error",
             f"/integrations/{integration_id}/delete", "/integrations/stats", "/users", "/account/password",
             "/settings", "/contacts", "/contacts/tags", "/campaigns", "/campaigns/new",
             f"/campaigns/{campaign_id}", f"/campaigns/{campaign_id}/edit", f"/campaigns/{campaign_id}/delete"]
    pages += [f"/integrations/new/{kind}" for kind in ("email", "sms", "whatsapp", "signup_page", "facebook")]
    pages += ["/platforms"]  # connected Meta accounts (the settings page above holds the Meta app)
    pages += ["/inbox", "/inbox?channel=whatsapp&q=nobody", "/inbox/stats"]  # the inbox, empty; its stats
    pages += [f"/integrations/{integration_id}/messages", f"/integrations/{integration_id}/delivery",
              f"/contacts/{contact_id}", f"/contacts/{contact_id}/edit", f"/contacts/{contact_id}/delete",
              "/contacts/import", "/account/tokens"]
    for path in pages:
        response = page.goto(path)
        assert response.status == 200, path
        expect(page.locator("h1")).to_be_visible()
        assert_clean_markup(page, response.text())
        assert page.problems == [], (path, page.problems)
        if path in ("/integrations/stats", f"/integrations/{integration_id}/logs", "/users"):
            shot(page, "11-" + path.strip("/").replace("/", "-"))

    # On a phone, no page is wider than the screen: wide tables scroll within their card.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in pages:
        page.goto(path)
        wider = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => !e.closest('.table-scroll')
            && e.getBoundingClientRect().right > 391).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)""")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, (path, wider)
    shot(page, "13-phone-account-tokens")  # the last page of the list
    page.set_viewport_size({"width": 1280, "height": 900})

    # The provider select swaps the provider's fields in place through htmx.
    page.goto("/integrations/new/email")
    expect(page.locator("#f-api_key")).to_be_visible()
    page.locator("#provider").select_option("smtp")
    expect(page.locator("#f-host")).to_be_visible()
    expect(page.locator("#f-api_key")).to_have_count(0)
    assert_clean_markup(page, page.content())

    # A validation error keeps the person on the form with words next to the field.
    page.get_by_label("Name", exact=True).fill("Relay")
    page.get_by_role("button", name="Add integration").click()
    expect(page.locator(".flash.error")).to_contain_text("Please correct the fields")
    expect(page.locator(".field.invalid").first).to_be_visible()
    shot(page, "12-form-errors")
    page.problems = [p for p in page.problems if "status of 400" not in p]  # the form's own 400 answer

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    expect(page.locator(".flash")).to_contain_text("You are signed out.")
    assert page.problems == [], page.problems
