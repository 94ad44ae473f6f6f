"""Sending and delivery tracking in a real headless Chromium (Debian's, through Playwright).

Everything is real: the app served over HTTP on loopback, deliveries and webhook processing
in a real `python worker.py` subprocess, and Twilio played by a loopback server speaking
Twilio's wire format (POST .../Messages.json with basic auth, 201 JSON). The status callback
is signed here as Twilio signs it (X-Twilio-Signature over the public URL and the sorted
form parameters) and posted to the StatusCallback URL Twilio was given.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug import Response

from tests.conftest import PASSWORD, REDIS_URL, TEST_KEY
from tests.live_server import WorkerProcess
from tests.test_browser import assert_clean_markup, chromium, live_server, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS_OUTBOUND", "/tmp/switchboard-outbound"))
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
FROM_NUMBER = "+14155550100"
TO_NUMBER = "+14155552671"


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


class FakeTwilio:
    """POST /2010-04-01/Accounts/{sid}/Messages.json as Twilio answers it. `gate` holds the
    answer back so the test can watch the message while it is being sent."""

    def __init__(self, httpserver, token: str):
        self.token = token
        self.gate = threading.Event()
        self.sends: list[dict] = []
        self.authorizations: list[str | None] = []
        httpserver.expect_request(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
                                  method="POST").respond_with_handler(self.send)
        self.base = httpserver.url_for("/").rstrip("/")

    def send(self, request):
        self.authorizations.append(request.headers.get("Authorization"))
        self.gate.wait(timeout=20)
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return Response(json.dumps({"code": 20003, "message": "Authenticate", "status": 401}), status=401,
                            content_type="application/json")
        form = request.form.to_dict()
        sid = "SM" + secrets.token_hex(16)
        self.sends.append({**form, "sid": sid})
        return Response(json.dumps({"sid": sid, "account_sid": ACCOUNT_SID, "status": "queued", "to": form["To"],
                                    "from": form["From"], "body": form["Body"], "num_segments": "1",
                                    "api_version": "2010-04-01", "error_code": None, "error_message": None}),
                        status=201, content_type="application/json")


@pytest.fixture
def twilio(httpserver):
    fake = FakeTwilio(httpserver, token=secrets.token_hex(16))
    yield fake
    fake.gate.set()  # never leave a handler waiting


@pytest.fixture
def public_url(app, live_server, monkeypatch):
    """The live server is the public address: the StatusCallback URL Twilio gets, and the URL
    the intake checks signatures against, are both built from PUBLIC_BASE_URL."""
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server.url)
    return live_server.url


@pytest.fixture
def worker_env(app, twilio, public_url, tmp_path):
    assert app.config["ENCRYPTION_KEYS"] == TEST_KEY
    return {
        "APP_ENV": "testing",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": REDIS_URL,
        "RQ_QUEUE": app.config["RQ_QUEUE"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "ENCRYPTION_KEYS": TEST_KEY,
        "TWILIO_API_BASE": twilio.base,
        "PUBLIC_BASE_URL": public_url,
        "PROVIDER_TIMEOUT_SECONDS": "30",
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """As Twilio computes X-Twilio-Signature: base64(HMAC-SHA1(auth token, the full URL followed
    by every form parameter's name and value, sorted by name))."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def test_send_through_twilio_and_watch_it_delivered(page, live_server, admin, twilio, worker_env, tmp_path):
    worker = WorkerProcess(worker_env, tmp_path / "worker.log", redis_url=REDIS_URL, queue=worker_env["RQ_QUEUE"])
    try:
        _run_flow(page, live_server, admin, twilio, worker)
    except Exception:
        shot(page, "failure")
        if worker.process:
            print("worker output:\n" + worker.output())
        raise
    finally:
        if worker.process:
            worker.__exit__(None, None, None)
    assert page.problems == [], page.problems


def _run_flow(page, live_server, admin, twilio, worker):
    from app.extensions import db
    email = admin.email
    db.session.remove()  # the test thread holds no connection while the server works

    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")

    # Configure Twilio against the local fake.
    page.locator("#type-sms").get_by_role("link", name="Add SMS").click()
    expect(page.locator("#provider")).to_have_value("twilio")
    page.get_by_label("Name", exact=True).fill("Shop texts")
    page.locator("#f-from_phone_number").fill(FROM_NUMBER)
    page.locator("#f-account_sid").fill(ACCOUNT_SID)
    page.locator("#f-auth_token").fill(twilio.token)
    page.get_by_role("button", name="Add integration").click()
    expect(page.locator(".flash.success")).to_contain_text("Shop texts was added")
    detail_url = page.url
    integration_id = int(detail_url.rsplit("/", 1)[1])

    # The empty outbox says what to do; the form takes a number and a body, no subject.
    outbox = page.locator("#outbox")
    expect(outbox.locator(".empty")).to_contain_text("No messages yet.")
    expect(page.locator("#subject")).to_have_count(0)
    assert_clean_markup(page, page.content())
    shot(page, "20-sms-detail-empty")

    # A bad number is refused next to the field, and nothing is sent.
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("To", exact=True).fill("12345")
    page.get_by_label("Message", exact=True).fill("Your order is ready for pickup.")
    page.get_by_role("button", name="Send test message").click()
    expect(page.locator("#to-error")).to_contain_text("E.164")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Your order is ready for pickup.")
    shot(page, "21-send-error")

    # Send: no worker runs yet, so the message waits as queued in the outbox.
    page.get_by_label("To", exact=True).fill(TO_NUMBER)
    page.get_by_role("button", name="Send test message").click()
    expect(page.locator("#send-result")).to_contain_text(f"Test message to {TO_NUMBER} is queued.")
    row = outbox.locator("tbody tr").first
    expect(row).to_contain_text(TO_NUMBER)
    expect(row.locator(".badge")).to_have_text("queued")
    expect(outbox).to_have_attribute("hx-trigger", re.compile(r"^every 2s"))
    assert_clean_markup(page, page.content())
    shot(page, "22-queued")

    # The worker starts and calls the fake, which holds its answer back: the message is sending.
    worker.__enter__()
    worker.wait_until_listening()
    expect(row.locator(".badge")).to_have_text("sending", timeout=15_000)
    twilio.gate.set()
    expect(row.locator(".badge")).to_have_text("sent", timeout=15_000)
    expect(row.locator("td.num")).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    shot(page, "23-sent")

    # Twilio got the message, with our basic auth and a StatusCallback on the public URL.
    assert len(twilio.sends) == 1
    sent = twilio.sends[0]
    assert (sent["To"], sent["From"], sent["Body"]) == (TO_NUMBER, FROM_NUMBER, "Your order is ready for pickup.")
    callback = sent["StatusCallback"]
    assert callback.startswith(f"{live_server.url}/api/webhooks/twilio/"), callback
    message_id = parse_qs(urlsplit(callback).query)["m"][0]

    # The message page: fields and timeline, refreshing by itself while the message may change.
    row.get_by_role("link", name=TO_NUMBER).click()
    expect(page).to_have_url(f"{live_server.url}/integrations/{integration_id}/messages/{message_id}")
    expect(page.locator("#message-status .badge")).to_have_text("sent")
    expect(page.locator("#provider-message-id")).to_have_text(sent["sid"])
    timeline = page.locator("#timeline li")
    expect(timeline).to_have_count(3)
    assert [k for k in timeline.evaluate_all("els => els.map(e => e.dataset.kind)")] == ["queued", "sending", "sent"]
    assert_clean_markup(page, page.content())
    shot(page, "24-message-sent")

    # The overview stays open in a second tab, to watch its outbox too.
    overview = page.context.new_page()
    overview.goto(detail_url)
    overview_row = overview.locator("#outbox tbody tr").first
    expect(overview_row.locator(".badge")).to_have_text("sent")
    page.evaluate("window.__sameDocument = true")
    overview.evaluate("window.__sameDocument = true")

    # Twilio's status callback, signed as Twilio signs it, posted to the URL Twilio was given.
    params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": FROM_NUMBER, "MessageSid": sent["sid"],
              "MessageStatus": "delivered", "SmsSid": sent["sid"], "SmsStatus": "delivered", "To": TO_NUMBER}
    forged = requests.post(callback, data=params, headers={"X-Twilio-Signature": twilio_signature("wrong", callback, params)},
                           timeout=10)
    assert forged.status_code == 401  # a wrong signature changes nothing
    answer = requests.post(callback, data=params,
                           headers={"X-Twilio-Signature": twilio_signature(twilio.token, callback, params)}, timeout=10)
    assert answer.status_code == 200, answer.text

    # Both pages show it delivered, without a reload.
    expect(page.locator("#message-status .badge")).to_have_text("delivered", timeout=15_000)
    expect(timeline).to_have_count(4)
    expect(timeline.last).to_contain_text("Delivered")
    expect(timeline.last.locator(".badge")).to_have_text("delivered")
    expect(page.locator("#message-view")).not_to_have_attribute("hx-trigger", re.compile(".+"))  # final: no more polling
    expect(overview_row.locator(".badge")).to_have_text("delivered", timeout=15_000)
    assert page.evaluate("window.__sameDocument") is True and overview.evaluate("window.__sameDocument") is True
    assert_clean_markup(page, page.content())
    shot(page, "25-message-delivered")
    shot(overview, "26-outbox-delivered")
    overview.close()

    # The webhook inspector has the callback, processed, with its payload behind a <details>.
    page.get_by_role("link", name="Webhooks").click()
    event = page.locator("article.webhook-event").first
    expect(event.locator(".badge")).to_have_text("processed")
    expect(page.locator("article.webhook-event")).to_have_count(1)  # the forged one was never stored
    payload = event.locator("pre.payload")
    expect(payload).not_to_be_visible()
    event.locator("summary").click()
    expect(payload).to_contain_text("MessageStatus = delivered")
    assert_clean_markup(page, page.content())
    shot(page, "27-webhooks")
    # Replay: processed again, changing nothing twice.
    with page.expect_response(lambda r: r.url.endswith("/replay")) as replayed:
        event.get_by_role("button", name="Replay").click()
    assert replayed.value.status == 200
    expect(page.locator("article.webhook-event").first.locator(".badge")).to_have_text("processed", timeout=15_000)

    # Delivery rates: one accepted, one delivered.
    page.get_by_role("link", name="Delivery rates").click()
    expect(page.locator("#rate-delivery .tile-value")).to_have_text("100%")
    expect(page.locator("#rates-chart")).to_be_visible()
    assert_clean_markup(page, page.content())
    shot(page, "28-delivery-rates")

    # The timeline still holds one delivered event after the replay.
    page.goto(f"/integrations/{integration_id}/messages/{message_id}")
    expect(page.locator("#timeline li")).to_have_count(4)

    # The edit form: sending settings, saved, and a visible Sandbox badge.
    page.goto(f"/integrations/{integration_id}/edit")
    expect(page.locator("#rate_limit")).to_have_attribute("placeholder", "1 (provider default)")
    page.get_by_label("Priority").fill("10")
    page.locator("#sandbox").check()
    assert_clean_markup(page, page.content())
    shot(page, "29-edit-sending")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash.success")).to_have_text("Saved.")
    expect(page.locator("#sandbox-badge")).to_be_visible()
    expect(page.locator("#setting-priority")).to_contain_text("10")
    assert_clean_markup(page, page.content())
    shot(page, "30-detail-sandbox")
