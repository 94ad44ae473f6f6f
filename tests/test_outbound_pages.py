"""The sending pages as a signed-in user sees them (server side): the test-message form, the
outbox and its cheap polling, a message's timeline, the webhook inspector with replay,
delivery rates by day, and the sending settings of the edit form.

Real parts throughout: SendGrid is a loopback server speaking mail/send, its Event Webhook is
signed with a freshly made ECDSA key and posted to the real intake, and jobs run in a real
RQ worker (burst mode).
"""
from __future__ import annotations

import base64
import json
import re
import time
from datetime import date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug import Response

from app.extensions import db
from app.models import Integration, Message, WebhookEvent, utcnow
from app.services import integrations as svc
from app.services import message_stats
from tests.conftest import point_at

HTMX = {"HX-Request": "true"}


class FakeSendGrid:
    """POST /v3/mail/send as SendGrid answers it: 202 and X-Message-Id (200 in sandbox mode)."""

    def __init__(self, httpserver, key: str = "SG.good-key"):
        self.key = key
        self.requests: list[dict] = []
        httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(self.send)

    def send(self, request):
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return Response(json.dumps({"errors": [{"message": "authorization required"}]}), status=401,
                            content_type="application/json")
        payload = json.loads(request.data)
        self.requests.append(payload)
        sandbox = payload.get("mail_settings", {}).get("sandbox_mode", {}).get("enable")
        return Response("", status=200 if sandbox else 202, headers={"X-Message-Id": f"sg-{len(self.requests)}"})


@pytest.fixture
def sendgrid(app, monkeypatch, httpserver):
    fake = FakeSendGrid(httpserver)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", httpserver.url_for("/"))
    return fake


@pytest.fixture
def signing_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_sendgrid(admin, signing_key=None, name="Mail") -> Integration:
    integration, errors = svc.create_integration(admin.organization_id, admin, "email", name, "sendgrid")
    assert not errors
    values = {"from_email": "hello@acme.example.com", "api_key": "SG.good-key"}
    if signing_key is not None:
        der = signing_key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        values["webhook_verification_key"] = base64.b64encode(der).decode()
    assert svc.configure(integration, values, admin, partial=True) == {}
    db.session.commit()
    return integration


def make_integration(admin, integration_type, provider, name="Texts") -> Integration:
    integration, errors = svc.create_integration(admin.organization_id, admin, integration_type, name, provider)
    assert not errors
    db.session.commit()
    return integration


def post_event_webhook(client, integration, signing_key, events: list[dict]):
    """A SendGrid Signed Event Webhook, as SendGrid signs it: ECDSA over timestamp + body."""
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = signing_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(f"/api/webhooks/sendgrid/{integration.public_id}/", data=body, headers={
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp})


def outbox_poll_trigger(html: str) -> str:
    return re.search(r'id="outbox"[^>]*hx-trigger="([^"]*)"', html, re.S).group(1)


def outbox_version(html: str) -> str:
    return re.search(r'id="outbox"[^>]*data-version="([0-9a-f]+)"', html, re.S).group(1)


def assert_no_inline_style_or_script(html: str) -> None:
    assert not re.search(r"<[^>]*\sstyle\s*=", html), "inline style attribute"
    assert not re.search(r"<style\b", html), "<style> element"
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"


# ---- sending a test message -----------------------------------------------------------------

def test_send_a_test_message_through_the_pipeline_and_follow_it(browser, admin, sendgrid, run_jobs):
    integration = make_sendgrid(admin)
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "Send a test message" in detail and 'name="subject"' in detail and 'type="email"' in detail
    assert "No messages yet." in detail and "POST /api/messages/" in detail  # the empty outbox says what to do
    assert "every 2s" not in outbox_poll_trigger(detail)  # nothing to watch, so no polling
    assert_no_inline_style_or_script(detail)

    response = browser.post(f"/integrations/{integration.id}/send",
                            {"to": "Someone@Example.com", "subject": "Hello", "body": "Testing 1 2 3"},
                            token_from=f"/integrations/{integration.id}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/integrations/{integration.id}#outbox")
    message = db.session.query(Message).one()
    assert (message.integration_id, message.recipient, message.subject, message.status) == (
        integration.id, "Someone@example.com", "Hello", "queued")

    page = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "Test message to Someone@example.com is queued." in page  # the flash
    row = re.search(rf'<tr id="outbox-{message.id}".*?</tr>', page, re.S).group(0)
    assert "badge queued" in row and "Someone@example.com" in row and "Hello" in row
    assert outbox_poll_trigger(page).startswith("every 2s")

    run_jobs()  # the real delivery job: SendGrid's fake takes it
    assert sendgrid.requests[0]["personalizations"][0]["to"] == [{"email": "Someone@example.com"}]
    assert sendgrid.requests[0]["subject"] == "Hello"
    fragment = browser.get(f"/integrations/{integration.id}/outbox", headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="outbox"') and "<html" not in fragment
    assert "badge sent" in fragment and ">1<" in fragment  # one attempt
    assert outbox_poll_trigger(fragment).startswith("every 2s")  # a delivery receipt is still due

    # The message page: every field and the whole timeline.
    html = browser.get(f"/integrations/{integration.id}/messages/{message.id}").get_data(as_text=True)
    assert "Message to Someone@example.com" in html and "Testing 1 2 3" in html and "sg-1" in html
    kinds = re.findall(r'<li data-kind="([a-z]+)"', html)
    assert kinds == ["queued", "sending", "sent"]
    assert "Queued on Mail." in html and "Attempt 1 through Mail." in html and "Sent through Mail (provider id sg-1)." in html
    assert 'hx-trigger="every 2s"' in html
    assert_no_inline_style_or_script(html)


def test_send_form_shows_errors_by_field_and_sends_nothing(browser, admin, sendgrid):
    integration = make_sendgrid(admin)
    url = f"/integrations/{integration.id}/send"
    response = browser.post(url, {"to": "not an address", "subject": "", "body": ""}, headers=HTMX,
                            token_from=f"/integrations/{integration.id}")
    assert response.status_code == 200  # htmx swaps the form in with its errors
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="send-test">') and "<html" not in html
    assert 'id="to-error"' in html and "Not a valid email address" in html
    assert 'id="subject-error"' in html and "An email needs a subject." in html
    assert 'id="body-error"' in html and "An email needs a body or html." in html
    assert 'value="not an address"' in html  # what was typed is kept
    assert "HX-Trigger" not in response.headers
    assert db.session.query(Message).count() == 0

    # Without htmx: the whole page, 400, the same words next to the fields.
    page = browser.post(url, {"to": "x@", "subject": "Hi", "body": "b"})
    assert page.status_code == 400
    body = page.get_data(as_text=True)
    assert 'id="to-error"' in body and "<h1" in body and "Nothing was sent" in body
    assert db.session.query(Message).count() == 0

    ok = browser.post(url, {"to": "a@example.com", "subject": "Hi", "body": "b"}, headers=HTMX)
    assert ok.status_code == 200 and ok.headers["HX-Trigger"] == "message-sent"
    text = ok.get_data(as_text=True)
    message = db.session.query(Message).one()
    assert "Test message to a@example.com is queued." in text
    assert f"/integrations/{integration.id}/messages/{message.id}" in text
    assert 'value="a@example.com"' in text  # the recipient stays for the next test


def test_sms_form_takes_a_phone_number_and_no_subject(browser, admin):
    integration = make_integration(admin, "sms", "twilio")
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert 'type="tel"' in detail and 'name="subject"' not in detail
    response = browser.post(f"/integrations/{integration.id}/send", {"to": "0123", "body": ""}, headers=HTMX,
                            token_from=f"/integrations/{integration.id}")
    html = response.get_data(as_text=True)
    assert "E.164" in html and "An SMS needs a body." in html
    ok = browser.post(f"/integrations/{integration.id}/send", {"to": "+1 415 555 2671", "body": "Hi"}, headers=HTMX)
    assert ok.headers["HX-Trigger"] == "message-sent"
    assert db.session.query(Message).one().recipient == "+14155552671"


def test_deactivated_integration_offers_no_form_and_refuses_sends(browser, admin, sendgrid):
    integration = make_sendgrid(admin)
    svc.update(integration, {"is_active": False}, admin)
    db.session.commit()
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "This integration is deactivated. Activate it above to send through it." in detail
    assert 'id="send-button"' not in detail
    response = browser.post(f"/integrations/{integration.id}/send", {"to": "a@example.com", "subject": "s", "body": "b"},
                            headers=HTMX, token_from=f"/integrations/{integration.id}/logs")
    assert "This integration is deactivated." in response.get_data(as_text=True)
    assert db.session.query(Message).count() == 0


def test_send_needs_the_csrf_token(browser, admin, sendgrid):
    integration = make_sendgrid(admin)
    response = browser.client.post(f"/integrations/{integration.id}/send", data={"to": "a@example.com"})
    assert response.status_code == 400
    assert db.session.query(Message).count() == 0


def test_sandboxed_send_uses_sendgrids_sandbox_mode(browser, admin, sendgrid, run_jobs):
    integration = make_sendgrid(admin)
    svc.update(integration, {"sandbox": True}, admin)
    db.session.commit()
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert 'id="sandbox-badge"' in detail and "Sandbox mode is on" in detail
    browser.post(f"/integrations/{integration.id}/send", {"to": "a@example.com", "subject": "s", "body": "b"},
                 token_from=f"/integrations/{integration.id}")
    run_jobs()
    assert sendgrid.requests[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    fragment = browser.get(f"/integrations/{integration.id}/outbox").get_data(as_text=True)
    assert "badge sandboxed" in fragment
    assert "every" not in outbox_poll_trigger(fragment)  # sandboxed is final: polling stops


# ---- the outbox and message pages poll cheaply ------------------------------------------------

def test_outbox_answers_204_when_nothing_changed(browser, admin, sendgrid, run_jobs):
    integration = make_sendgrid(admin)
    browser.post(f"/integrations/{integration.id}/send", {"to": "a@example.com", "subject": "s", "body": "b"},
                 token_from=f"/integrations/{integration.id}")
    first = browser.get(f"/integrations/{integration.id}/outbox", headers=HTMX).get_data(as_text=True)
    version = outbox_version(first)
    assert f"since={version}" in first  # the next poll brings the version it shows
    unchanged = browser.get(f"/integrations/{integration.id}/outbox?since={version}", headers=HTMX)
    assert unchanged.status_code == 204 and unchanged.get_data() == b""
    run_jobs()
    changed = browser.get(f"/integrations/{integration.id}/outbox?since={version}", headers=HTMX)
    assert changed.status_code == 200 and "badge sent" in changed.get_data(as_text=True)
    assert outbox_version(changed.get_data(as_text=True)) != version


def test_outbox_shows_the_ten_newest_and_links_to_all(browser, admin):
    integration = make_integration(admin, "sms", "twilio")
    now = utcnow()
    for n in range(12):
        db.session.add(Message(organization_id=admin.organization_id, integration_id=integration.id, channel="sms",
                               recipient=f"+1415555{n:04d}", body=f"n{n}", status="failed",
                               created_at=now - timedelta(minutes=12 - n)))
    db.session.commit()
    html = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "+14155550011" in html and "+14155550002" in html and "+14155550001" not in html
    assert "every" not in outbox_poll_trigger(html)  # every message is final
    assert f'href="/integrations/{integration.id}/messages"' in html
    listing = browser.get(f"/integrations/{integration.id}/messages").get_data(as_text=True)
    assert "+14155550000" in listing and "+14155550011" in listing
    assert "No sent messages." in browser.get(f"/integrations/{integration.id}/messages?status=sent").get_data(as_text=True)
    assert "Page 1 of 1" in listing


def test_polling_is_fast_while_news_is_due_slow_while_it_may_come_and_off_when_final():
    def message(status, channel="email", sent_minutes_ago=None):
        sent_at = utcnow() - timedelta(minutes=sent_minutes_ago) if sent_minutes_ago is not None else None
        return Message(status=status, channel=channel, sent_at=sent_at)

    poll = message_stats.poll_seconds
    assert poll([]) is None
    assert poll([message("failed"), message("queued")]) == 2 and poll([message("sending")]) == 2
    assert poll([message("sent", sent_minutes_ago=1)]) == 2  # its delivery receipt is due
    assert poll([message("sent", sent_minutes_ago=120)]) == 15  # late: it may still come
    assert poll([message("sent", sent_minutes_ago=1)], receipts=False) is None  # SMTP: nothing comes after sent
    assert poll([message("scheduled")], receipts=False) == 15
    assert poll([message("delivered")]) == 15 and poll([message("opened")]) == 15  # an email may be opened, clicked
    assert poll([message("delivered", "whatsapp")]) == 15  # and read
    assert poll([message("delivered", "sms")]) is None  # an SMS ends at delivered
    assert poll([message("read", "whatsapp"), message("clicked"), message("bounced"), message("failed"),
                 message("sandboxed")]) is None


def test_message_page_polls_until_final_and_answers_204_when_unchanged(browser, admin):
    integration = make_integration(admin, "sms", "twilio")
    message = Message(organization_id=admin.organization_id, integration_id=integration.id, channel="sms",
                      recipient="+14155552671", body="Hi", status="sent", provider_message_id="SM1", attempts=1)
    db.session.add(message)
    db.session.commit()
    url = f"/integrations/{integration.id}/messages/{message.id}"
    fragment = browser.get(url, headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="message-view"') and "<html" not in fragment
    version = re.search(r"since=([0-9a-f]+)", fragment).group(1)
    assert browser.get(f"{url}?since={version}", headers=HTMX).status_code == 204
    # A timeline event that moves no status still changes the version.
    from app.services.messaging import add_event
    add_event(message, "info", "Delivery deferred by the carrier.")
    db.session.commit()
    deferred = browser.get(f"{url}?since={version}", headers=HTMX)
    assert deferred.status_code == 200 and "Delivery deferred by the carrier." in deferred.get_data(as_text=True)
    message.status = "delivered"
    db.session.commit()
    final = browser.get(url).get_data(as_text=True)
    assert "badge delivered" in final and "hx-trigger" not in final.split('id="message-view"')[1].split(">")[0]


def test_messages_of_other_integrations_and_organisations_are_404(browser, admin, other_admin):
    mine = make_integration(admin, "sms", "twilio", "Mine")
    other_mine = make_integration(admin, "sms", "twilio", "Other of mine")
    theirs = make_integration(other_admin, "sms", "twilio", "Theirs")
    their_message = Message(organization_id=other_admin.organization_id, integration_id=theirs.id, channel="sms",
                            recipient="+14155552671", body="secret words", status="sent")
    sibling_message = Message(organization_id=admin.organization_id, integration_id=other_mine.id, channel="sms",
                              recipient="+14155552672", body="b", status="sent")
    db.session.add_all([their_message, sibling_message])
    db.session.commit()
    for url in (f"/integrations/{mine.id}/messages/{their_message.id}", f"/integrations/{theirs.id}/messages/{their_message.id}",
                f"/integrations/{mine.id}/messages/{sibling_message.id}", f"/integrations/{mine.id}/messages/{'x' * 40}"):
        response = browser.get(url)
        assert response.status_code == 404, url
        assert "secret words" not in response.get_data(as_text=True)
    assert browser.get(f"/integrations/{other_mine.id}/messages/{sibling_message.id}").status_code == 200
    assert "+14155552671" not in browser.get(f"/integrations/{mine.id}/messages").get_data(as_text=True)


def test_pages_for_sending_and_webhooks_exist_only_where_they_apply(browser, admin):
    signup = make_integration(admin, "signup_page", "hosted", "Newsletter")
    smtp = make_integration(admin, "email", "smtp", "Relay")
    for path in ("outbox", "messages", "delivery", "messages/abc", "webhooks", "webhooks/1"):
        assert browser.get(f"/integrations/{signup.id}/{path}").status_code == 404, path
    assert browser.get(f"/integrations/{smtp.id}/webhooks").status_code == 404  # SMTP posts no webhooks
    assert browser.get(f"/integrations/{smtp.id}/outbox").status_code == 200
    detail = browser.get(f"/integrations/{signup.id}").get_data(as_text=True)
    assert "Send a test message" not in detail and "Outbox" not in detail and "Delivery rates" not in detail
    smtp_detail = browser.get(f"/integrations/{smtp.id}").get_data(as_text=True)
    assert "Delivery rates" in smtp_detail and f"/integrations/{smtp.id}/webhooks" not in smtp_detail


# ---- the webhook inspector --------------------------------------------------------------------

def test_webhook_inspector_shows_events_and_replays_them(app, browser, admin, sendgrid, signing_key, run_jobs):
    integration = make_sendgrid(admin, signing_key)
    empty = browser.get(f"/integrations/{integration.id}/webhooks").get_data(as_text=True)
    assert "No webhooks received yet." in empty and svc.webhook_url(integration) in empty

    browser.post(f"/integrations/{integration.id}/send", {"to": "a@example.com", "subject": "s", "body": "b"},
                 token_from=f"/integrations/{integration.id}")
    run_jobs()
    message = db.session.query(Message).one()
    client = app.test_client()
    # One event for our message, one for a message nobody sent.
    assert post_event_webhook(client, integration, signing_key, [
        {"event": "delivered", "sg_event_id": "ev-1", "sg_message_id": "sg-1.filter", "timestamp": int(time.time()),
         "switchboard_message_id": message.id, "email": "a@example.com"}]).status_code == 200
    assert post_event_webhook(client, integration, signing_key, [
        {"event": "open", "sg_event_id": "ev-2", "sg_message_id": "unknown.filter", "timestamp": int(time.time())}
    ]).status_code == 200
    pending = browser.get(f"/integrations/{integration.id}/webhooks").get_data(as_text=True)
    assert pending.count('data-status="pending"') == 2 and 'hx-trigger="every 2s"' in pending
    run_jobs()
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "delivered"
    delivered, unmatched = (db.session.query(WebhookEvent).order_by(WebhookEvent.id).all())

    html = browser.get(f"/integrations/{integration.id}/webhooks").get_data(as_text=True)
    assert_no_inline_style_or_script(html)
    first = re.search(rf'<article[^>]*id="webhook-event-{delivered.id}".*?</article>', html, re.S).group(0)
    assert "badge processed" in first and "<details>" in first and "hx-trigger" not in first
    assert '&#34;sg_event_id&#34;: &#34;ev-1&#34;' in first  # the payload, indented JSON
    second = re.search(rf'<article[^>]*id="webhook-event-{unmatched.id}".*?</article>', html, re.S).group(0)
    assert "No message matches unknown yet; will try again." in second and "badge pending" in second
    filtered = browser.get(f"/integrations/{integration.id}/webhooks?status=processed").get_data(as_text=True)
    assert f"webhook-event-{delivered.id}" in filtered and f"webhook-event-{unmatched.id}" not in filtered

    # Replay with htmx: the row comes back pending and polls itself until processed.
    replayed = browser.post(f"/integrations/{integration.id}/webhooks/{delivered.id}/replay", headers=HTMX,
                            token_from=f"/integrations/{integration.id}/webhooks")
    row = replayed.get_data(as_text=True)
    assert replayed.status_code == 200 and "badge pending" in row and 'hx-trigger="every 2s"' in row
    run_jobs()
    after = browser.get(f"/integrations/{integration.id}/webhooks/{delivered.id}").get_data(as_text=True)
    assert "badge processed" in after and "hx-trigger" not in after
    # Replay changed nothing twice: one delivered event on the timeline.
    timeline = browser.get(f"/integrations/{integration.id}/messages/{message.id}").get_data(as_text=True)
    assert re.findall(r'<li data-kind="([a-z]+)"', timeline) == ["queued", "sending", "sent", "delivered"]
    # Without htmx: a redirect back to the inspector with a flash.
    response = browser.post(f"/integrations/{integration.id}/webhooks/{unmatched.id}/replay")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/integrations/{integration.id}/webhooks")
    assert f"Webhook event {unmatched.id} was queued for processing again." in browser.get(
        f"/integrations/{integration.id}/webhooks").get_data(as_text=True)
    # Replay needs the CSRF token.
    assert browser.client.post(f"/integrations/{integration.id}/webhooks/{delivered.id}/replay").status_code == 400


def test_webhook_inspector_paginates_redacts_and_scopes(browser, admin, other_admin):
    mine = make_integration(admin, "sms", "twilio", "Mine")
    theirs = make_integration(other_admin, "sms", "twilio", "Theirs")
    for n in range(23):
        db.session.add(WebhookEvent(organization_id=admin.organization_id, integration_id=mine.id, provider="twilio",
                                    dedup_key=f"k{n}", url="https://x/", headers={"content-type": "application/x-www-form-urlencoded"},
                                    form=[["MessageSid", f"SM{n}"], ["MessageStatus", "delivered"]],
                                    body=f"MessageSid=SM{n}&MessageStatus=delivered".encode(), status="processed"))
    secret_header = "Basic c2VjcmV0LXZhbHVl"
    db.session.add(WebhookEvent(organization_id=admin.organization_id, integration_id=mine.id, provider="twilio",
                                dedup_key="leak", url="https://x/", headers={"authorization": secret_header},
                                form=[], body=f'{{"echo": "{secret_header}"}}'.encode(), status="failed",
                                error="The payload could not be read."))
    their_event = WebhookEvent(organization_id=other_admin.organization_id, integration_id=theirs.id, provider="twilio",
                               dedup_key="theirs", url="https://x/", headers={}, form=[], body=b"theirs", status="processed")
    db.session.add(their_event)
    db.session.commit()
    first = browser.get(f"/integrations/{mine.id}/webhooks").get_data(as_text=True)
    assert first.count("<article") == 20 and "Page 1 of 2 · 24 events" in first and "Older" in first
    assert secret_header not in first and "[redacted]" in first and "The payload could not be read." in first
    assert "MessageSid = SM22" in first  # form fields one a line
    second = browser.get(f"/integrations/{mine.id}/webhooks?page=2").get_data(as_text=True)
    assert second.count("<article") == 4 and "MessageSid = SM0" in second
    assert "No failed events" not in browser.get(f"/integrations/{mine.id}/webhooks?status=failed").get_data(as_text=True)
    assert "No pending events." in browser.get(f"/integrations/{mine.id}/webhooks?status=pending").get_data(as_text=True)
    # Another integration's or organisation's event through my integration: 404, and no replay.
    assert browser.get(f"/integrations/{mine.id}/webhooks/{their_event.id}").status_code == 404
    response = browser.post(f"/integrations/{mine.id}/webhooks/{their_event.id}/replay",
                            token_from=f"/integrations/{mine.id}/webhooks")
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(WebhookEvent, their_event.id).status == "processed"


# ---- delivery rates ----------------------------------------------------------------------------

def _message(admin, integration, status, day: date, *, sent=True, hour=12):
    created = datetime(day.year, day.month, day.day, hour, 30)
    return Message(organization_id=admin.organization_id, integration_id=integration.id, channel="email",
                   recipient="a@example.com", subject="s", body="b", status=status, created_at=created,
                   sent_at=created + timedelta(seconds=5) if sent else None)


def test_delivery_stats_count_by_day_and_status(admin, sendgrid):
    integration = make_sendgrid(admin)
    other = make_sendgrid(admin, name="Other")
    today = utcnow().date()
    yesterday = today - timedelta(days=1)
    rows = ([("delivered", today)] * 3 + [("opened", today)] * 2 + [("clicked", today)] + [("bounced", today)]
            + [("sent", today)] + [("sandboxed", today)])
    messages = [_message(admin, integration, status, day) for status, day in rows]
    messages += [_message(admin, integration, "failed", today, sent=False),  # never accepted
                 _message(admin, integration, "queued", today, sent=False, hour=0),
                 _message(admin, integration, "delivered", yesterday, hour=23),
                 _message(admin, integration, "delivered", today - timedelta(days=14)),  # outside the window
                 _message(admin, other, "delivered", today)]  # another integration
    db.session.add_all(messages)
    db.session.commit()
    stats = message_stats.delivery_stats(integration)
    assert [d.day for d in stats.days] == [today - timedelta(days=13 - i) for i in range(14)]
    day = stats.days[-1]
    assert (day.total, day.accepted, day.delivered, day.opened, day.clicked, day.bounced, day.failed) == (
        11, 8, 6, 3, 1, 1, 1)  # accepted: the 9 with sent_at, less the sandboxed one
    assert day.rates == {"delivery": 6 / 8, "open": 3 / 6, "click": 1 / 6, "bounce": 1 / 8}
    assert stats.days[-2].total == 1 and stats.days[-2].rates["delivery"] == 1.0
    assert stats.days[0].total == 0 and stats.days[0].rates == {"delivery": None, "open": None, "click": None,
                                                                 "bounce": None}
    assert stats.totals.total == 12 and stats.totals.delivered == 7
    assert stats.series("delivery") == [[(12, 1.0), (13, 6 / 8)]]


def test_delivery_page_has_rates_a_chart_and_definitions(browser, admin, sendgrid):
    integration = make_sendgrid(admin)
    empty = browser.get(f"/integrations/{integration.id}/delivery").get_data(as_text=True)
    assert "No messages in the last 14 days." in empty and "<svg" not in empty
    assert "delivered ÷ accepted" in empty  # the definitions are always there
    today = utcnow().date()
    db.session.add_all([_message(admin, integration, "delivered", today), _message(admin, integration, "clicked", today),
                        _message(admin, integration, "bounced", today - timedelta(days=3)),
                        _message(admin, integration, "opened", today - timedelta(days=2))])
    db.session.commit()
    html = browser.get(f"/integrations/{integration.id}/delivery").get_data(as_text=True)
    assert_no_inline_style_or_script(html)
    assert '<svg class="chart rates-chart"' in html and "<polyline" in html and 'class="series delivery"' in html
    assert f"{today.isoformat()}: Delivery rate 100.0%" in html
    assert re.search(r'id="rate-delivery".*?>75%<', html, re.S)  # 3 delivered of 4 accepted
    assert re.search(r'id="rate-bounce".*?>25%<', html, re.S)
    assert re.search(r'id="rate-click".*?>33%<', html, re.S)  # 1 clicked of 3 delivered
    assert f'id="day-{today.isoformat()}"' in html
    for words in ("delivered ÷ accepted", "opened ÷ delivered", "clicked ÷ delivered", "bounced ÷ accepted"):
        assert words in html
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert re.search(r'id="rate-delivery".*?>75%<', detail, re.S) and "Daily rates and chart" in detail


# ---- sending settings on the edit form ---------------------------------------------------------

def test_sms_rates_leave_out_opens_and_clicks(browser, admin):
    integration = make_integration(admin, "sms", "twilio")
    db.session.add(Message(organization_id=admin.organization_id, integration_id=integration.id, channel="sms",
                           recipient="+14155552671", body="b", status="delivered", sent_at=utcnow()))
    db.session.commit()
    html = browser.get(f"/integrations/{integration.id}/delivery").get_data(as_text=True)
    assert re.search(r'id="rate-delivery".*?>100%<', html, re.S)
    assert re.search(r'id="rate-open".*?not reported for SMS', html, re.S)
    assert 'class="series open"' not in html and 'class="series delivery"' in html
    assert "SMS providers report no opens or clicks" in html


def test_edit_form_saves_priority_rate_limit_and_sandbox(browser, admin, sendgrid):
    integration = make_sendgrid(admin)
    url = f"/integrations/{integration.id}/edit"
    form = browser.get(url).get_data(as_text=True)
    assert 'name="priority"' in form and 'value="100"' in form
    assert 'placeholder="100 (provider default)"' in form and 'name="sandbox"' in form
    base = {"name": "Mail", "from_email": "hello@acme.example.com", "api_key": ""}

    bad = browser.post(url, {**base, "priority": "-1", "rate_limit": "0"}, token_from=url)
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert "Give a whole number from 0 to 1000000" in html and "Give messages per second from 0.01" in html
    assert 'id="rate_limit-error"' in html and "Please correct the fields" in html
    junk = browser.post(url, {**base, "priority": "soon", "rate_limit": "fast"})
    assert junk.status_code == 400 and "Not a valid integer value." in junk.get_data(as_text=True)
    db.session.expire_all()
    stored = db.session.get(Integration, integration.id)
    assert (stored.priority, stored.rate_limit, stored.sandbox) == (100, None, False)

    good = browser.post(url, {**base, "priority": "5", "rate_limit": "2.5", "sandbox": "y"})
    assert good.status_code == 302
    db.session.expire_all()
    stored = db.session.get(Integration, integration.id)
    assert (stored.priority, stored.rate_limit, stored.sandbox) == (5, 2.5, True)
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert 'id="sandbox-badge"' in detail
    assert re.search(r'id="setting-priority">5 ', detail) and re.search(r'id="setting-rate-limit">2.5 messages per second<', detail)
    assert "admin@acme.example.com set sandbox to True." in detail  # the activity log says who changed what

    # Emptying the rate limit goes back to the provider's default; unticking turns the sandbox off.
    browser.post(url, {**base, "priority": "5", "rate_limit": ""})
    db.session.expire_all()
    stored = db.session.get(Integration, integration.id)
    assert (stored.rate_limit, stored.sandbox) == (None, False)
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert 'id="sandbox-badge"' not in detail and "(provider default)" in detail


def test_edit_form_of_a_non_sending_integration_has_no_sending_settings(browser, admin):
    integration = make_integration(admin, "facebook", "graph_api", "Page")
    assert 'name="priority"' not in browser.get(f"/integrations/{integration.id}/edit").get_data(as_text=True)


def test_every_new_page_renders_for_every_sending_provider(browser, admin):
    """Each provider's pages render (no adapter-specific template gaps)."""
    from app.providers import INTEGRATION_TYPES
    for key in ("email", "sms", "whatsapp"):
        for provider in INTEGRATION_TYPES[key].providers:
            integration = make_integration(admin, key, provider.name, f"{key}-{provider.name}")
            paths = ["", "/edit", "/outbox", "/messages", "/delivery", "/logs"]
            if provider.receives_webhooks:
                paths.append("/webhooks")
            for path in paths:
                response = browser.get(f"/integrations/{integration.id}{path}")
                assert response.status_code == 200, (provider.name, path)
                assert_no_inline_style_or_script(response.get_data(as_text=True))


@pytest.fixture
def second_org_browser(app, other_admin):
    from tests.conftest import Browser
    return Browser(app.test_client()).login(other_admin.email)


def test_another_organisation_sees_none_of_it(browser, second_org_browser, admin, sendgrid, run_jobs):
    integration = make_sendgrid(admin)
    browser.post(f"/integrations/{integration.id}/send", {"to": "private@example.com", "subject": "s", "body": "b"},
                 token_from=f"/integrations/{integration.id}")
    message = db.session.query(Message).one()
    for path in ("", "/outbox", "/messages", f"/messages/{message.id}", "/delivery", "/webhooks"):
        response = second_org_browser.get(f"/integrations/{integration.id}{path}")
        assert response.status_code == 404, path
        assert "private@example.com" not in response.get_data(as_text=True)
    response = second_org_browser.post(f"/integrations/{integration.id}/send",
                                       {"to": "x@example.com", "subject": "s", "body": "b"}, token_from="/integrations")
    assert response.status_code == 404 and db.session.query(Message).count() == 1


