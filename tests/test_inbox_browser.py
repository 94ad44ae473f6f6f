"""The inbox live, in a real headless Chromium: connect with Meta through the loopback dialog and a
WhatsApp number through the Channels form, then a signed WhatsApp message posted to the
organisation's Meta webhook address while the inbox is open. A real RQ worker (`python worker.py`,
a subprocess on the test's database and Redis) processes it, and the conversation appears without
a reload; open it, reply, the reply leaves for the loopback Graph API, and when the signed
`delivered` status arrives the delivered tick appears, again without a reload. Every page is clean:
no console errors, no CSP violations, no inline styles or scripts."""
from __future__ import annotations

import itertools
import json
import os
import re
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, REDIS_URL, TEST_KEY, point_at
from tests.graph_messaging_fake import sign, wa_message, wa_status, whatsapp_notification
from tests.live_server import WorkerProcess
from tests.meta_fake import APP_ID, APP_SECRET, VERSION, FakeMeta, _json
from tests.test_browser import assert_clean_markup, chromium, live_server, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS_INBOX", "/tmp/switchboard-inbox"))
NUMBER_ID, WABA_ID = "106540352242922", "102290129340398"
CUSTOMER = "16505551234"  # the person's WhatsApp id (their number)
LIVE = 15_000  # ms: a few polls, and the worker's turn
TEMPLATE = {"name": "order_ready", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "7001",
            "components": [{"type": "BODY", "text": "Hi {{1}}, your order is ready."}]}


class MetaWithWhatsAppSends(FakeMeta):
    """tests/meta_fake.py's Meta (the dialog, tokens, Pages, numbers, subscriptions), which also takes
    WhatsApp Cloud API sends and read marks on POST /<phone number id>/messages, as Graph does (the
    number's system user token as Bearer, a wamid back for each message), and lists the business
    account's message templates."""

    def __init__(self, httpserver):
        super().__init__(httpserver)
        self.sent: list[dict] = []
        self.read_marks: list[str] = []
        self.wamids = (f"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI{n:04d}" for n in itertools.count(1))

    def handle(self, request):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if request.method == "GET" and request.path == f"/{VERSION}/{WABA_ID}/message_templates":
            if WABA_ID not in self.tokens.get(token, {}).get("businesses", ()):
                return _json({"error": {"message": "(#200) Permissions error", "type": "OAuthException", "code": 200,
                                        "fbtrace_id": "AxYz03"}}, 400)
            return _json({"data": [TEMPLATE], "paging": {"cursors": {"before": "b", "after": "a"}}})
        match = re.fullmatch(rf"/{VERSION}/(\d+)/messages", request.path)
        if request.method != "POST" or match is None:
            return super().handle(request)
        with self.lock:
            info = self.tokens.get(token)
            number = next((n for n in self.numbers if n.id == match.group(1)), None)
            if info is None or not info["valid"] or number is None or number.business_account_id not in info.get(
                    "businesses", ()):
                return _json({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException",
                                        "code": 190, "fbtrace_id": "AxYz02"}}, 401)
            body = json.loads(request.get_data() or b"{}")
            if body.get("status") == "read":
                self.read_marks.append(body.get("message_id"))
                return _json({"success": True})
            wamid = next(self.wamids)
            self.sent.append({**body, "wamid": wamid})
            return _json({"messaging_product": "whatsapp", "messages": [{"id": wamid}],
                          "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}]})


@pytest.fixture
def meta(app, httpserver, monkeypatch, live_server):
    fake = MetaWithWhatsAppSends(httpserver)
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", fake.base)
    monkeypatch.setitem(app.config, "META_OAUTH_DIALOG_URL", fake.dialog_url)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server.url)  # Meta sends the browser back here
    return fake


@pytest.fixture
def worker(app, meta, tmp_path):
    """`python worker.py` on the test's database and Redis, talking to the loopback Meta."""
    env = {
        "APP_ENV": "testing",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": REDIS_URL,
        "RQ_QUEUE": app.config["RQ_QUEUE"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "ENCRYPTION_KEYS": TEST_KEY,
        "META_GRAPH_API_BASE": meta.base,
        "MEDIA_STORAGE_URL": f"file://{tmp_path / 'media'}",
        "PROVIDER_TIMEOUT_SECONDS": "10",
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    with WorkerProcess(env, tmp_path / "worker.log", redis_url=REDIS_URL, queue=app.config["RQ_QUEUE"]) as process:
        yield process


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


def _ours(page, response=None):
    """Our page is clean, and fully loaded before the test goes on."""
    page.wait_for_load_state()
    assert_clean_markup(page, response.text() if response else page.content())


def signed_post(url: str, body: bytes) -> None:
    """Meta posting a notification: the body signed with the app secret (X-Hub-Signature-256)."""
    answer = requests.post(url, data=body, headers=sign(body, APP_SECRET), timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_whatsapp_message_appears_live_is_answered_and_its_delivered_tick_arrives(page, live_server, admin, meta,
                                                                                   worker):
    from app.crypto import vault
    from app.extensions import db
    from app.models import MetaApp

    meta_app = MetaApp(organization_id=admin.organization_id, app_id=APP_ID,
                       secrets_ciphertext=vault().encrypt_json({"app_secret": APP_SECRET}))
    db.session.add(meta_app)
    db.session.commit()
    webhook_url = f"{live_server.url}/api/webhooks/meta/{meta_app.public_id}/"
    email = admin.email
    db.session.remove()  # the test thread holds no connection while the server and the worker work
    system_token = meta.add_number(NUMBER_ID, WABA_ID)
    try:
        _run_flow(page, live_server, meta, worker, email, webhook_url, system_token)
    except Exception:
        shot(page, "failure")
        print("worker output:\n" + worker.output())
        raise
    assert page.problems == [], page.problems


def _run_flow(page, live_server, meta, worker, email, webhook_url, system_token):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")
    page.wait_for_load_state()

    # No account yet: the inbox says where to connect one.
    response = page.goto("/inbox")
    expect(page.locator("#no-channels")).to_contain_text("No Facebook Page, Instagram account or WhatsApp number")
    _ours(page, response)
    shot(page, "01-inbox-no-accounts")

    # Connect with Meta, through Meta's dialog (the loopback fake), then pick the Page.
    page.locator("#no-channels").get_by_role("link", name="Connect one on the Channels page").click()
    expect(page).to_have_url(f"{live_server.url}/platforms")
    page.locator("#connect-meta").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(meta.dialog_url)}\?"))
    expect(page.locator("#scopes")).to_contain_text("whatsapp_business_messaging")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Choose the Page to connect")).to_be_visible()
    _ours(page)
    page.get_by_role("button", name="Connect this Page").click()
    expect(page.locator(".flash.success")).to_contain_text("Connected Acme Bakery and @acmebakery")

    # The WhatsApp number, checked against the loopback Graph API before it is saved.
    page.get_by_label("Phone number ID").fill(NUMBER_ID)
    page.get_by_label("WhatsApp Business Account ID").fill(WABA_ID)
    page.get_by_label("Access token").fill(system_token)
    page.get_by_role("button", name="Connect WhatsApp number").click()
    expect(page.locator(".flash.success")).to_contain_text("Connected Acme Bakery (+1 555-078-3881)")
    whatsapp_row = page.locator('tr[data-platform="whatsapp"]')
    expect(whatsapp_row.get_by_role("button", name="Sync templates")).to_be_visible()
    expect(page.locator('tr[data-platform="messenger"]').get_by_role("button", name="Sync now")).to_be_visible()
    assert meta.subscriptions.get(WABA_ID) is not None
    _ours(page)

    # Sync templates: progress while the worker runs the job, then the result in words, kept in view
    # when the panel refreshes itself.
    worker.wait_until_listening()
    whatsapp_row.get_by_role("button", name="Sync templates").click()
    status = whatsapp_row.locator(".sync-status")
    expect(status).to_contain_text(re.compile("Queued, waiting for a worker…|Syncing message templates|Synced"))
    expect(status).to_have_text("Synced 1 template from WhatsApp.", timeout=LIVE)
    expect(status).to_have_class(re.compile(r"\bdone\b.*\bok\b"))
    page.evaluate("window.__oldPanel = document.querySelector('#platforms-panel')")
    page.evaluate("htmx.ajax('GET', window.__oldPanel.getAttribute('hx-get'), "
                  "{target: '#platforms-panel', swap: 'outerHTML'})")  # what its every-60s refresh does
    page.wait_for_function("document.querySelector('#platforms-panel') !== window.__oldPanel")
    expect(whatsapp_row.locator(".sync-status")).to_have_text("Synced 1 template from WhatsApp.")
    shot(page, "02-channels")

    # The inbox, open and empty; from here on the page must not reload.
    page.get_by_role("link", name="Inbox").click()
    expect(page.locator("#no-conversations")).to_contain_text("No conversations yet")
    _ours(page)
    page.evaluate("window.__sameDocument = true")
    loads = []
    page.on("load", lambda: loads.append(page.url))

    # Jane writes on WhatsApp: Meta posts the signed notification to the organisation's address.
    signed_post(webhook_url, whatsapp_notification(
        messages=[wa_message("text", {"body": "Hi! Is the lemon cake available today?"}, wamid="wamid.IN.browser1",
                             timestamp=int(time.time()), sender=CUSTOMER)],
        wa_id=CUSTOMER, name="Jane Doe", phone_id=NUMBER_ID))
    item = page.locator("#conversation-list li").first
    expect(item).to_contain_text("Jane Doe", timeout=LIVE)
    expect(item).to_contain_text("Is the lemon cake available today?")
    expect(item.locator(".unread-count")).to_contain_text("1")
    expect(page.locator("#nav-unread")).to_contain_text("1")
    assert page.evaluate("window.__sameDocument") is True and loads == [], "the page reloaded"
    _ours(page)
    shot(page, "03-message-arrived")

    # Open it: the history, the window in words, and it is read (here at once, at Meta by a job).
    item.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Jane Doe")).to_be_visible()
    expect(page.locator("#thread")).to_contain_text("Hi! Is the lemon cake available today?")
    expect(page.locator("#window-notice")).to_contain_text(
        re.compile(r"You can reply freely until tomorrow \d\d:\d\d UTC"))
    expect(page.locator("#conversation-list li.current .unread-count")).to_have_count(0, timeout=LIVE)
    expect(page.locator("#nav-unread")).to_have_text("")
    _ours(page)
    _wait_for(lambda: meta.read_marks == ["wamid.IN.browser1"], "the read mark at Meta")
    page.evaluate("window.__sameDocument = true")
    loads.clear()

    # Reply.
    page.get_by_label("Reply").fill("Yes! We have two left; shall I keep one for you?")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#reply-queued")).to_be_visible()
    expect(page.get_by_label("Reply")).to_have_value("")
    reply = page.locator("article.message.out").last
    expect(reply).to_contain_text("Yes! We have two left; shall I keep one for you?", timeout=LIVE)
    expect(reply.locator(".ticks.sent")).to_be_visible(timeout=LIVE)  # the worker sent it: ✓
    assert [(m["to"], m["text"]["body"]) for m in meta.sent] == [
        (CUSTOMER, "Yes! We have two left; shall I keep one for you?")]
    expect(page.locator("#conversation-list li.current .preview")).to_have_text(
        "You: Yes! We have two left; shall I keep one for you?", timeout=LIVE)
    _ours(page)
    shot(page, "04-replied")

    # Meta reports the reply delivered: ✓✓ without a reload.
    signed_post(webhook_url, whatsapp_notification(
        statuses=[wa_status(meta.sent[0]["wamid"], "delivered", timestamp=int(time.time()), recipient=CUSTOMER)],
        phone_id=NUMBER_ID))
    ticks = reply.locator(".ticks")
    expect(ticks).to_have_class(re.compile(r"\bdelivered\b"), timeout=LIVE)
    expect(ticks).to_have_attribute("title", "Delivered")
    expect(ticks.locator("[aria-hidden]")).to_have_text("✓✓")
    assert page.evaluate("window.__sameDocument") is True and loads == [], "the page reloaded"
    _ours(page)
    shot(page, "05-delivered")

    # The stats page and the narrow (phone) layout are clean too.
    response = page.goto("/inbox/stats")
    expect(page.get_by_role("heading", name="Messaging stats")).to_be_visible()
    _ours(page, response)
    page.set_viewport_size({"width": 390, "height": 844})
    page.go_back()
    expect(page.locator(".inbox-list")).to_be_hidden()  # a conversation takes the whole narrow screen
    expect(page.get_by_role("link", name="← All conversations")).to_be_visible()
    _ours(page)
    shot(page, "06-phone")


def _wait_for(condition, what: str, timeout: float = LIVE / 1000) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
