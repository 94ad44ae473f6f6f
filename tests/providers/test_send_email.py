"""Sending email through Mailgun, Mailchimp Transactional, Amazon SES and SMTP, and their delivery webhooks.

Every send goes through the real API and a real RQ worker to a real server on loopback: HTTP servers that
answer as each provider does (asserting the exact path, credentials and body they get), moto and a loopback
SES v2 API for SES, aiosmtpd over STARTTLS with AUTH for SMTP. Webhooks are posted to each integration's
webhook URL, signed afresh as the provider signs them, and also forged, stale, malformed, oversize, repeated
and sent to an unknown address. Amazon SNS is played over HTTPS on loopback by a server holding a
certificate for sns.us-east-1.amazonaws.com (see send_email_helpers)."""
import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import ssl
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from urllib.parse import urlencode

import boto3
import pytest
import trustme
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Response

from app.extensions import db
from app.models import Integration, WebhookEvent
from app.providers import net, sns_notifications
from app.providers.base import InboundWebhook, ProviderSettings, WebhookRejected
from app.providers.email.mailchimp import MailchimpTransactional
from app.providers.email.mailgun import Mailgun
from app.queue import task_queue
from tests.conftest import point_at
from tests.providers.checks import basic_auth, create_configured, json_response
from tests.providers.send_email_helpers import (
    SNS_HOST,
    TOPIC_ARN,
    SnsSigner,
    resolve_to_loopback,
    ses_notification,
    sns_timestamp,
    start_mailbox,
    subscription_confirmation,
)

PUBLIC = "https://switchboard.example.com"
SENDER = {"from_email": "hello@example.com", "from_name": "Acme Support", "reply_to": "support@example.com"}
TO = "jane@example.com"
ONE_MIB = 1024 * 1024


# --- shared steps ---------------------------------------------------------------------------------------------

def configured(api, provider, **fields) -> int:
    return create_configured(api, "email", provider, "email", {**SENDER, **fields})


def send(api, integration_id, to=TO, **extra) -> str:
    r = api.post("/api/messages/", json={"integration_id": integration_id, "to": to, "subject": "Your order",
                                         "body": "It ships today.", **extra})
    assert r.status_code == 202, r.json
    assert r.json["status"] == "queued"
    return r.json["id"]


def shown(api, message_id) -> dict:
    r = api.get(f"/api/messages/{message_id}/")
    assert r.status_code == 200
    return r.json


def kinds(message) -> list[str]:
    return [e["kind"] for e in message["events"]]


def sandbox(api, integration_id):
    r = api.put(f"/api/integrations/{integration_id}/", json={"sandbox": True})
    assert r.status_code == 200, r.json


def assert_sent(api, message_id, provider_id=None) -> dict:
    message = shown(api, message_id)
    assert message["status"] == "sent", message
    assert message["attempts"] == 1 and message["last_error"] is None
    assert message["provider_message_id"] and (provider_id is None or message["provider_message_id"] == provider_id)
    assert kinds(message) == ["queued", "sending", "sent"]
    assert message["provider_message_id"] in message["events"][-1]["description"]
    return message


def assert_sandboxed(api, message_id) -> dict:
    message = shown(api, message_id)
    assert message["status"] == "sandboxed", message
    assert kinds(message) == ["queued", "sending", "sandboxed"]
    assert "accepted, not delivered" in message["events"][-1]["description"]
    return message


def scheduled_retries() -> list[str]:
    return task_queue().scheduled_job_registry.get_job_ids()


def assert_failed_for_good(api, message_id, *words) -> dict:
    """Failed at once with the provider's reason: no retry scheduled, nothing more sent."""
    message = shown(api, message_id)
    assert message["status"] == "failed" and message["attempts"] == 1, message
    for word in words:
        assert word in message["last_error"], message["last_error"]
    assert "Traceback" not in message["last_error"]
    assert kinds(message) == ["queued", "sending", "failed"]
    assert message_id not in scheduled_retries()
    return message


def assert_retry_scheduled(api, message_id, *words) -> dict:
    """The job raised for RQ's Retry: the message waits as queued with the reason in words."""
    message = shown(api, message_id)
    assert message["status"] == "queued" and message["attempts"] == 1, message
    for word in words:
        assert word in message["last_error"], message["last_error"]
    assert kinds(message) == ["queued", "sending", "error", "retry"]
    assert message_id in scheduled_retries()
    return message


def webhook_path(api, integration_id) -> str:
    url = api.get(f"/api/integrations/{integration_id}/").json["webhook_url"]
    assert url.startswith(PUBLIC + "/api/webhooks/")
    return url[len(PUBLIC):]


def stored(integration_id) -> list[WebhookEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookEvent).where(WebhookEvent.integration_id == integration_id)
                                   .order_by(WebhookEvent.id)))


def unknown_path(path) -> str:
    return re.sub(r"/[^/]+/$", f"/{uuid.uuid4().hex}/", path)


# --- Mailgun ------------------------------------------------------------------------------------------------

MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"
MAILGUN_SIGNING_KEY = "signing-key-0123456789abcdef"
MAILGUN_BAD_TO, MAILGUN_DOWN_TO, MAILGUN_SLOW_TO = "no-such-mailbox@example.com", "down@example.com", "slow@example.com"


def mailgun_messages(request):
    if basic_auth(request) != ("api", MAILGUN_KEY):
        return Response("Forbidden", status=401, content_type="text/plain")
    to = request.form.get("to")
    if to == MAILGUN_BAD_TO:
        return json_response({"message": "'to' parameter is not a valid address. please check documentation"}, 400)
    if to == MAILGUN_DOWN_TO:
        return Response("<html><body>503 Service Temporarily Unavailable</body></html>", status=503,
                        content_type="text/html")
    if to == MAILGUN_SLOW_TO:
        time.sleep(0.4)
    return json_response({"id": f"<20251122121314.{uuid.uuid4().hex[:12]}@mg.example.com>",
                          "message": "Queued. Thank you."})


@pytest.fixture
def mailgun(app, monkeypatch, httpserver):
    """One loopback server plays both regions: /us for api.mailgun.net, /eu for api.eu.mailgun.net."""
    httpserver.expect_request(re.compile(r"^/(us|eu)/v3/[^/]+/messages$"), method="POST") \
        .respond_with_handler(mailgun_messages)
    point_at(app, monkeypatch, "MAILGUN_API_BASE", httpserver.url_for("/us"))
    point_at(app, monkeypatch, "MAILGUN_EU_API_BASE", httpserver.url_for("/eu"))
    return httpserver


def make_mailgun(api, region="us"):
    return configured(api, "mailgun", domain="mg.example.com", region=region, api_key=MAILGUN_KEY,
                      webhook_signing_key=MAILGUN_SIGNING_KEY)


@pytest.mark.parametrize("region", ["us", "eu"])
def test_mailgun_sends_the_exact_request(api, mailgun, run_jobs, region):
    integration_id = make_mailgun(api, region)
    message_id = send(api, integration_id, html="<p>It ships <b>today</b>.</p>")
    run_jobs()

    (request, response), = mailgun.log
    assert request.path == f"/{region}/v3/mg.example.com/messages"
    assert request.mimetype == "application/x-www-form-urlencoded"
    assert dict(request.form) == {"from": "Acme Support <hello@example.com>", "to": TO, "subject": "Your order",
                                  "text": "It ships today.", "html": "<p>It ships <b>today</b>.</p>",
                                  "h:Reply-To": "support@example.com", "v:switchboard_message_id": message_id}
    # Mailgun's id is "<...>"; its webhooks report it without the brackets, and so does the message.
    assert_sent(api, message_id, json.loads(response.get_data())["id"].strip("<>"))


def test_mailgun_sandbox_uses_test_mode(api, mailgun, run_jobs):
    integration_id = make_mailgun(api)
    sandbox(api, integration_id)
    message_id = send(api, integration_id)
    run_jobs()
    (request, _), = mailgun.log
    assert request.form["o:testmode"] == "yes"
    message = assert_sandboxed(api, message_id)
    assert message["provider_message_id"]  # Mailgun accepted it in test mode and gave it an id


def test_mailgun_bad_recipient_fails_without_retry(api, mailgun, run_jobs):
    message_id = send(api, make_mailgun(api), to=MAILGUN_BAD_TO)
    run_jobs()
    assert_failed_for_good(api, message_id, "Mailgun rejected the request (HTTP 400)",
                           "'to' parameter is not a valid address")
    run_jobs()
    assert len(mailgun.log) == 1


@pytest.mark.parametrize("to, words", [(MAILGUN_DOWN_TO, ["Mailgun had a server error (HTTP 503)"]),
                                       (MAILGUN_SLOW_TO, ["Mailgun did not answer within 0.2 seconds (timeout)"])])
def test_mailgun_server_error_or_timeout_retries_later(api, app, monkeypatch, mailgun, run_jobs, to, words):
    monkeypatch.setitem(app.config, "PROVIDER_TIMEOUT_SECONDS", 0.2)
    message_id = send(api, make_mailgun(api), to=to)
    run_jobs()
    assert_retry_scheduled(api, message_id, *words)


def mailgun_signed(event_data, *, key=MAILGUN_SIGNING_KEY, timestamp=None, token=None) -> bytes:
    timestamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def mailgun_event(kind, message, **extra) -> dict:
    return {"id": secrets.token_urlsafe(16), "timestamp": time.time(), "event": kind, "recipient": message["to"],
            "log-level": "info", "user-variables": {"switchboard_message_id": message["id"]},
            "message": {"headers": {"message-id": message["provider_message_id"], "to": message["to"],
                                    "from": "Acme Support <hello@example.com>", "subject": "Your order"}},
            "flags": {"is-test-mode": False}, **extra}


MAILGUN_VECTOR = {"key": "key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "timestamp": "1534108637",
                  "token": "651869375b9df3c98fc15c4889b102119add1235c38fc92824",
                  "signature": "03944e104dacc4a2743f824fd75e45ce3ab781053b7acaca5006a360ccc97797"}


def test_mailgun_signature_vector():
    v = MAILGUN_VECTOR
    body = json.dumps({"signature": {k: v[k] for k in ("timestamp", "token", "signature")},
                       "event-data": {"event": "delivered", "id": "hTWCTD81RtiDN"}}).encode()
    adapter = Mailgun(ProviderSettings())

    def verify(key, received_at):
        adapter.verify_webhook({}, {"webhook_signing_key": key},
                               InboundWebhook("POST", "https://x/", {}, body, received_at=received_at))

    verify(v["key"], int(v["timestamp"]) + 60)  # accepted
    with pytest.raises(WebhookRejected, match="does not match"):
        verify("key-another", int(v["timestamp"]) + 60)
    with pytest.raises(WebhookRejected, match="tolerance"):
        verify(v["key"], int(v["timestamp"]) + 301)


def test_mailgun_webhooks_move_the_message(api, app, mailgun, run_jobs):
    integration_id = make_mailgun(api)
    message_id = send(api, integration_id)
    run_jobs()
    message = shown(api, message_id)
    path, client = webhook_path(api, integration_id), app.test_client()
    assert path.startswith("/api/webhooks/mailgun/")

    temporary = mailgun_event("failed", message, severity="temporary", reason="generic",
                              **{"delivery-status": {"code": 452, "message": "4.2.2 Mailbox full"}})
    delivered = mailgun_event("delivered", message,
                              **{"delivery-status": {"code": 250, "message": "OK", "description": ""}})
    opened = mailgun_event("opened", message)
    for event in (temporary, delivered, opened):
        r = client.post(path, data=mailgun_signed(event), content_type="application/json")
        assert r.status_code == 200 and r.json == {"status": "accepted"}, r.json
    # Mailgun's retry of an event it already delivered, signed afresh: the same event, stored once.
    again = client.post(path, data=mailgun_signed(delivered), content_type="application/json")
    assert again.status_code == 200 and again.json == {"status": "duplicate"}
    run_jobs()

    message = shown(api, message_id)
    assert message["status"] == "opened"
    assert kinds(message) == ["queued", "sending", "sent", "info", "delivered", "opened"]
    assert message["events"][3]["description"] == "Delivery failed for now; Mailgun will retry: 452 4.2.2 Mailbox full"
    assert [row.status for row in stored(integration_id)] == ["processed"] * 3


def test_mailgun_permanent_failure_bounces(api, app, mailgun, run_jobs):
    integration_id = make_mailgun(api)
    message_id = send(api, integration_id)
    run_jobs()
    event = mailgun_event("failed", shown(api, message_id), severity="permanent", reason="bounce",
                          **{"delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"}})
    event["user-variables"] = {}  # matched by Mailgun's message id alone
    r = app.test_client().post(webhook_path(api, integration_id), data=mailgun_signed(event),
                               content_type="application/json")
    assert r.status_code == 200
    run_jobs()
    message = shown(api, message_id)
    assert message["status"] == "bounced"
    assert message["last_error"] == "Bounced: 550 5.1.1 The email account does not exist"


def test_mailgun_refused_webhooks(api, app, mailgun, run_jobs):
    integration_id = make_mailgun(api)
    message_id = send(api, integration_id)
    run_jobs()
    message = shown(api, message_id)
    path, client = webhook_path(api, integration_id), app.test_client()
    event = mailgun_event("delivered", message)

    def post(body, **kw):
        return client.post(path, data=body, content_type="application/json", **kw)

    forged = post(mailgun_signed(event, key="not-the-signing-key"))
    assert forged.status_code == 401 and "does not match" in forged.json["error"]
    stale = post(mailgun_signed(event, timestamp=int(time.time()) - 301))
    assert stale.status_code == 401 and "tolerance" in stale.json["error"]
    v = MAILGUN_VECTOR  # the published vector: signed correctly, but in 2018
    vector = post(json.dumps({"signature": {k: v[k] for k in ("timestamp", "token", "signature")},
                              "event-data": event}).encode())
    assert vector.status_code == 401
    unsigned = post(json.dumps({"event-data": event}).encode())
    assert unsigned.status_code == 401
    assert post(b"{not json").status_code == 400
    assert post(b"x" * (ONE_MIB + 1)).status_code == 413
    misaddressed = client.post(unknown_path(path), data=mailgun_signed(event), content_type="application/json")
    assert misaddressed.status_code == 404

    # Signed, but with no event in it: refused as unreadable before anything is stored.
    unreadable = post(mailgun_signed("not an event"))
    assert unreadable.status_code == 400 and "no event-data" in unreadable.json["error"]
    assert stored(integration_id) == []
    run_jobs()
    assert kinds(shown(api, message_id)) == ["queued", "sending", "sent"]


def test_mailgun_without_a_signing_key_refuses_events(api, app, mailgun):
    integration_id = configured(api, "mailgun", domain="mg.example.com", region="us", api_key=MAILGUN_KEY)
    r = app.test_client().post(webhook_path(api, integration_id), content_type="application/json",
                               data=mailgun_signed({"event": "delivered", "id": "x"}))
    assert r.status_code == 401 and "No Mailgun webhook signing key" in r.json["error"]
    assert stored(integration_id) == []


# --- Mailchimp Transactional (Mandrill) ----------------------------------------------------------------------

MANDRILL_KEY, MANDRILL_WEBHOOK_KEY = "md-good-key", "abcdEFGH1234_webhookkey"
MANDRILL_REJECTED_TO, MANDRILL_DOWN_TO = "bounced-before@example.com", "down@example.com"


def mandrill_send(request):
    payload = request.get_json()
    if payload.get("key") != MANDRILL_KEY:
        return json_response({"status": "error", "code": -1, "name": "Invalid_Key", "message": "Invalid API key"}, 500)
    to = payload["message"]["to"][0]["email"]
    if to == MANDRILL_DOWN_TO:
        return json_response({"status": "error", "code": -1, "name": "GeneralError",
                              "message": "An unexpected error occurred processing the request."}, 500)
    if to == MANDRILL_REJECTED_TO:
        return json_response([{"email": to, "status": "rejected", "reject_reason": "hard-bounce",
                               "queued_reason": None, "_id": uuid.uuid4().hex}])
    return json_response([{"email": to, "status": "sent", "reject_reason": None, "queued_reason": None,
                           "_id": uuid.uuid4().hex}])


@pytest.fixture
def mandrill(app, monkeypatch, httpserver):
    httpserver.expect_request("/api/1.0/messages/send.json", method="POST").respond_with_handler(mandrill_send)
    point_at(app, monkeypatch, "MANDRILL_API_BASE", httpserver.url_for("/api/1.0"))
    return httpserver


def make_mandrill(api):
    return configured(api, "mailchimp", api_key=MANDRILL_KEY, webhook_key=MANDRILL_WEBHOOK_KEY)


def test_mandrill_sends_the_exact_request(api, mandrill, run_jobs):
    message_id = send(api, make_mandrill(api), html="<p>It ships today.</p>")
    run_jobs()
    (request, response), = mandrill.log
    assert request.path == "/api/1.0/messages/send.json" and request.mimetype == "application/json"
    assert request.get_json() == {"key": MANDRILL_KEY, "message": {
        "subject": "Your order", "from_email": "hello@example.com", "from_name": "Acme Support",
        "to": [{"email": TO, "type": "to"}], "text": "It ships today.", "html": "<p>It ships today.</p>",
        "headers": {"Reply-To": "support@example.com"}, "metadata": {"switchboard_message_id": message_id}}}
    assert_sent(api, message_id, json.loads(response.get_data())[0]["_id"])


def test_mandrill_sandbox_makes_no_call(api, mandrill, run_jobs):
    integration_id = make_mandrill(api)
    sandbox(api, integration_id)
    message_id = send(api, integration_id)
    run_jobs()
    assert mandrill.log == []
    assert assert_sandboxed(api, message_id)["provider_message_id"] is None


def test_mandrill_rejected_recipient_fails_without_retry(api, mandrill, run_jobs):
    message_id = send(api, make_mandrill(api), to=MANDRILL_REJECTED_TO)
    run_jobs()
    assert_failed_for_good(api, message_id,
                           f"rejected the message to {MANDRILL_REJECTED_TO}: the address bounced before and is on "
                           "the rejection list (hard-bounce).")


def test_mandrill_general_error_retries_later(api, mandrill, run_jobs):
    message_id = send(api, make_mandrill(api), to=MANDRILL_DOWN_TO)
    run_jobs()
    assert_retry_scheduled(api, message_id, "temporary problem (GeneralError)", "unexpected error")


def mandrill_signature(key, url, form) -> str:
    signed = url + "".join(k + v for k, v in sorted(form.items()))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def mandrill_post(client, path, events, *, key=MANDRILL_WEBHOOK_KEY, url=None):
    form = {"mandrill_events": events if isinstance(events, str) else json.dumps(events)}
    signature = mandrill_signature(key, url or PUBLIC + path, form)
    return client.post(path, data=form, headers={"X-Mandrill-Signature": signature})


def mandrill_event(kind, message, **extra) -> dict:
    ts = int(time.time())
    return {"event": kind, "_id": message["provider_message_id"], "ts": ts,
            "msg": {"ts": ts - 5, "_id": message["provider_message_id"], "email": message["to"],
                    "sender": "hello@example.com", "subject": "Your order", "tags": [], "state": "sent",
                    "metadata": {"switchboard_message_id": message["id"]}}, **extra}


MANDRILL_VECTOR_URL = "https://crm.example.com/hooks/mandrill"
MANDRILL_VECTOR_EVENTS = ('[{"event":"send","_id":"abcdef012345789abcdef012345789","ts":1461095246,'
                          '"msg":{"ts":1461095211,"subject":"Webhook Test","email":"recipient@example.com",'
                          '"sender":"sender@example.com",'
                          '"tags":["tag1"],"metadata":{"crm_id":"42"},"_id":"abcdef012345789abcdef012345789",'
                          '"state":"sent"}}]')


def test_mandrill_signature_vector():
    form = (("mandrill_events", MANDRILL_VECTOR_EVENTS),)
    request = InboundWebhook("POST", MANDRILL_VECTOR_URL, {"x-mandrill-signature": "R1BOk9gCf53WgklvNtzdNjXSCcI="},
                             urlencode(form).encode(), form=form)
    adapter = MailchimpTransactional(ProviderSettings())
    adapter.verify_webhook({}, {"webhook_key": "abcdEFGH1234_webhookkey"}, request)
    event, = adapter.parse_webhook({}, request)
    assert event.status == "sent" and event.message_id is None
    assert event.provider_message_id == "abcdef012345789abcdef012345789"
    with pytest.raises(WebhookRejected):
        adapter.verify_webhook({}, {"webhook_key": "another-key"}, request)


def test_mandrill_webhooks_move_messages(api, app, mandrill, run_jobs):
    integration_id = make_mandrill(api)
    first, second = send(api, integration_id), send(api, integration_id, to="joe@example.com")
    run_jobs()
    first, second = shown(api, first), shown(api, second)
    path, client = webhook_path(api, integration_id), app.test_client()
    assert path.startswith("/api/webhooks/mailchimp/")

    batch = [mandrill_event("send", first), mandrill_event("open", first),
             mandrill_event("click", first, url="https://example.com/track"),
             mandrill_event("send", second), mandrill_event("soft_bounce", second),
             mandrill_event("hard_bounce", second, msg={**mandrill_event("x", second)["msg"], "state": "bounced",
                                                        "bounce_description": "bad_mailbox",
                                                        "diag": "smtp;550 5.1.1 User unknown"}),
             {"type": "blacklist", "action": "add", "entry": {"email": "joe@example.com"}}]  # a sync event: ignored
    r = mandrill_post(client, path, batch)
    assert r.status_code == 200 and r.json == {"status": "accepted"}
    again = mandrill_post(client, path, batch)  # Mandrill retries a batch as it was
    assert again.status_code == 200 and again.json == {"status": "duplicate"}
    run_jobs()

    first, second = shown(api, first["id"]), shown(api, second["id"])
    assert first["status"] == "clicked"
    assert kinds(first) == ["queued", "sending", "sent", "sent", "opened", "clicked"]
    assert first["events"][-1]["description"] == "Link clicked: https://example.com/track"
    assert second["status"] == "bounced" and second["last_error"] == "Bounced: smtp;550 5.1.1 User unknown"
    assert kinds(second) == ["queued", "sending", "sent", "sent", "info", "bounced"]
    row, = stored(integration_id)
    assert row.status == "processed" and row.error is None


def test_mandrill_url_check_and_test_post(api, app, mandrill):
    integration_id = make_mandrill(api)
    path, client = webhook_path(api, integration_id), app.test_client()
    assert client.get(path).status_code == 200
    # When its URL check fails, Mandrill posts an empty batch signed with its published test key.
    assert mandrill_post(client, path, [], key="test-webhook").status_code == 200
    # That key signs nothing else.
    assert mandrill_post(client, path, [{"event": "send", "_id": "x", "ts": 1}], key="test-webhook").status_code == 401


def test_mandrill_refused_webhooks(api, app, mandrill, run_jobs):
    integration_id = make_mandrill(api)
    message_id = send(api, integration_id)
    run_jobs()
    message = shown(api, message_id)
    path, client = webhook_path(api, integration_id), app.test_client()
    batch = [mandrill_event("open", message)]

    forged = mandrill_post(client, path, batch, key="not-the-webhook-key")
    assert forged.status_code == 401 and "does not match" in forged.json["error"]
    # Signed for another address (the published vector): the URL is part of what is signed.
    assert mandrill_post(client, path, MANDRILL_VECTOR_EVENTS, key="abcdEFGH1234_webhookkey",
                         url=MANDRILL_VECTOR_URL).status_code == 401
    assert client.post(path, data={"mandrill_events": json.dumps(batch)}).status_code == 401  # unsigned
    assert client.post(path, data={"other": "1"}, headers={"X-Mandrill-Signature": "x"}).status_code == 400
    assert client.post(path, data=b"x" * (ONE_MIB + 1), content_type="application/x-www-form-urlencoded",
                       headers={"X-Mandrill-Signature": "x"}).status_code == 413
    assert mandrill_post(client, unknown_path(path), batch).status_code == 404
    # Mandrill signs no timestamp, so there is no staleness to judge; a replay is a duplicate (above).

    # Signed but not JSON: refused as unreadable before anything is stored.
    unreadable = mandrill_post(client, path, "[{not json")
    assert unreadable.status_code == 400 and unreadable.json["error"] == "mandrill_events is not JSON."
    assert stored(integration_id) == []
    run_jobs()
    assert kinds(shown(api, message_id)) == ["queued", "sending", "sent"]


# --- Amazon SES ---------------------------------------------------------------------------------------------

def make_ses(api, key_id, secret, **extra):
    return configured(api, "ses", region="us-east-1", access_key_id=key_id, secret_access_key=secret, **extra)


def test_ses_sends_through_moto(api, moto_endpoint, moto_keys, run_jobs):
    key_id, secret = moto_keys("ses:*")
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto_endpoint, aws_access_key_id=key_id,
                       aws_secret_access_key=secret)
    ses.verify_email_identity(EmailAddress="hello@example.com")
    before = ses.get_send_quota()["SentLast24Hours"]

    message_id = send(api, make_ses(api, key_id, secret), html="<p>It ships today.</p>")
    run_jobs()
    assert_sent(api, message_id)
    assert ses.get_send_quota()["SentLast24Hours"] == before + 1


def test_ses_unverified_sender_is_the_accounts_problem(api, moto_keys, run_jobs):
    """SES refuses a sender it has not verified with MessageRejected, as it does a bad recipient; a retry or
    another provider can help here, so it is not given up."""
    sender = f"{uuid.uuid4().hex[:10]}@unverified.example.net"
    message_id = send(api, make_ses(api, *moto_keys("ses:*"), from_email=sender))
    run_jobs()
    assert_retry_scheduled(api, message_id, f"Amazon SES refused the sender {sender}", "not verified")


SES_DOWN_TO, SES_UNVERIFIED_TO = "down@example.com", "unverified@example.com"


@pytest.fixture
def ses_api(app, monkeypatch, httpserver):
    """SES's v2 JSON API on loopback (SendEmail), answering as AWS does for a sandbox account."""
    def send_email(request):
        assert re.search(r"Credential=AKIAGOODKEY000000000/\d{8}/us-east-1/ses/aws4_request",
                         request.headers["Authorization"])
        to = request.get_json()["Destination"]["ToAddresses"][0]
        if to == SES_UNVERIFIED_TO:
            return Response(json.dumps({"message": "Email address is not verified. The following identities failed "
                                                   f"the check in region US-EAST-1: {to}"}),
                            status=400, content_type="application/json",
                            headers={"x-amzn-ErrorType": "MessageRejected:", "x-amzn-RequestId": str(uuid.uuid4())})
        if to == SES_DOWN_TO:
            return Response(json.dumps({"message": "Service unavailable"}), status=503,
                            content_type="application/json",
                            headers={"x-amzn-ErrorType": "ServiceUnavailable:", "x-amzn-RequestId": str(uuid.uuid4())})
        return json_response({"MessageId": f"0100018c-{uuid.uuid4()}-000000"})

    httpserver.expect_request("/v2/email/outbound-emails", method="POST").respond_with_handler(send_email)
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", httpserver.url_for("/").rstrip("/"))
    return httpserver


def make_fake_ses(api, **extra):
    return make_ses(api, "AKIAGOODKEY000000000", "secret", configuration_set="switchboard-events", **extra)


def test_ses_sends_the_exact_request(api, ses_api, run_jobs):
    message_id = send(api, make_fake_ses(api), html="<p>It ships today.</p>")
    run_jobs()
    (request, response), = ses_api.log
    assert request.get_json() == {
        "FromEmailAddress": "Acme Support <hello@example.com>", "Destination": {"ToAddresses": [TO]},
        "ReplyToAddresses": ["support@example.com"], "ConfigurationSetName": "switchboard-events",
        "Content": {"Simple": {"Subject": {"Data": "Your order", "Charset": "UTF-8"},
                               "Body": {"Text": {"Data": "It ships today.", "Charset": "UTF-8"},
                                        "Html": {"Data": "<p>It ships today.</p>", "Charset": "UTF-8"}}}},
        "EmailTags": [{"Name": "switchboard_message_id", "Value": message_id}]}
    assert_sent(api, message_id, json.loads(response.get_data())["MessageId"])


def test_ses_sandbox_and_failures(api, ses_api, run_jobs):
    integration_id = make_fake_ses(api)
    rejected, down = send(api, integration_id, to=SES_UNVERIFIED_TO), send(api, integration_id, to=SES_DOWN_TO)
    run_jobs()
    assert_failed_for_good(api, rejected, "Amazon SES rejected the message: Email address is not "
                                                    f"verified. The following identities failed the check in "
                                                    f"region US-EAST-1: {SES_UNVERIFIED_TO}")
    assert_retry_scheduled(api, down, "Amazon SES had a server error", "Service unavailable")
    calls = len(ses_api.log)

    sandbox(api, integration_id)
    message_id = send(api, integration_id)
    run_jobs()
    assert_sandboxed(api, message_id)
    assert len(ses_api.log) == calls


@pytest.fixture(scope="session")
def sns_server(tmp_path_factory):
    """An HTTPS server with a certificate for sns.us-east-1.amazonaws.com from a test CA."""
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("sns") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SNS_HOST).configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield server, str(ca_file), SnsSigner()
    server.stop()


@pytest.fixture
def sns(sns_server, monkeypatch):
    """Amazon SNS for this test: its host resolves to the loopback server, whose test CA the adapters' HTTP
    session trusts; it serves the signing certificate and confirms subscriptions."""
    server, ca_file, signer = sns_server
    server.clear()
    server.expect_request(re.compile(r"^/SimpleNotificationService-[0-9a-f]+\.pem$"), method="GET") \
        .respond_with_data(signer.pem, content_type="application/x-x509-ca-cert")

    def confirm(request):
        if request.args.get("Action") != "ConfirmSubscription" or not request.args.get("Token"):
            return Response("<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>", 400)
        return Response("<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>"
                        f"{request.args['TopicArn']}:1</SubscriptionArn></ConfirmSubscriptionResult>"
                        "</ConfirmSubscriptionResponse>", content_type="text/xml")

    server.expect_request("/", method="GET").respond_with_handler(confirm)
    # Trust the test CA in the keep-alive session that adapters' HTTP calls go through (one per thread; the
    # test, the Flask test client and the burst worker share this one). It ignores the environment, so
    # REQUESTS_CA_BUNDLE would not do.
    monkeypatch.setattr(net._session(), "verify", ca_file)
    resolve_to_loopback(monkeypatch, SNS_HOST, server.port)
    server.signer = signer
    return server


def sns_post(client, path, message):
    return client.post(path, data=json.dumps(message), content_type="text/plain; charset=UTF-8",
                       headers={"x-amz-sns-message-type": message.get("Type", ""),
                                "x-amz-sns-message-id": message.get("MessageId", ""),
                                "x-amz-sns-topic-arn": message.get("TopicArn", "")})


def ses_event(kind, message, details, *, tagged=True) -> dict:
    mail = {"timestamp": sns_timestamp(), "source": "hello@example.com", "messageId": message["provider_message_id"],
            "destination": [message["to"]], "headersTruncated": False}
    if tagged:
        mail["tags"] = {"ses:configuration-set": ["switchboard-events"], "switchboard_message_id": [message["id"]]}
        return {"eventType": kind, "mail": mail, kind[0].lower() + kind[1:]: details}
    return {"notificationType": kind, "mail": mail, kind[0].lower() + kind[1:]: details}


def test_sns_string_to_sign_vector():
    message = {"Type": "Notification", "MessageId": "19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
               "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
               "Subject": "Amazon SES Email Event Notification",
               "Message": '{"eventType":"Delivery","mail":{"messageId":"0100018c-aaaa"}}',
               "Timestamp": "2024-01-01T00:00:00.000Z", "SignatureVersion": "1", "Signature": "x",
               "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"}
    assert sns_notifications.string_to_sign(message) == (
        'Message\n{"eventType":"Delivery","mail":{"messageId":"0100018c-aaaa"}}\nMessageId\n'
        "19ba9823-d7f2-53c1-860e-cb10e0d13dfc\nSubject\nAmazon SES Email Event Notification\nTimestamp\n"
        "2024-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:123456789012:ses-events\nType\nNotification\n"
    ).encode()


@pytest.mark.parametrize("url, refused", [
    ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", False),
    ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", False),
    ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
    ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt", True),
    ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", True),
    ("https://evil-bucket.s3.amazonaws.com/x.pem", True),
    ("https://sns.us-east-1.amazonaws.com:8443/x.pem", True),
    ("https://user@sns.us-east-1.amazonaws.com/x.pem", True),
])
def test_sns_certificate_urls_must_be_aws_sns_hosts(url, refused):
    assert (sns_notifications.aws_url_problem(url, certificate=True) is not None) == refused


def test_ses_subscription_is_confirmed_and_events_move_messages(api, app, ses_api, sns, run_jobs):
    integration_id = make_fake_ses(api, sns_topic_arn=TOPIC_ARN)
    first, second = send(api, integration_id), send(api, integration_id, to="joe@example.com")
    run_jobs()
    first, second = shown(api, first), shown(api, second)
    path, client = webhook_path(api, integration_id), app.test_client()
    assert path.startswith("/api/webhooks/ses/")

    # 1. SNS asks to confirm the subscription: verified, stored, then the job GETs the SubscribeURL.
    confirmation = sns.signer.sign(subscription_confirmation("2336412f37fb687f5d51e6e2425"))
    r = sns_post(client, path, confirmation)
    assert r.status_code == 200 and r.json == {"status": "accepted"}
    run_jobs()
    confirmed = [request for request, _ in sns.log if request.args.get("Action") == "ConfirmSubscription"]
    assert len(confirmed) == 1 and confirmed[0].args["Token"] == "2336412f37fb687f5d51e6e2425"

    # 2. Events: publishing through the configuration set (tagged with our id, SignatureVersion 2) and
    #    the identity's own notifications (matched by SES's message id).
    cert_url = f"https://{SNS_HOST}/SimpleNotificationService-{uuid.uuid4().hex}.pem"
    delivery = sns.signer.sign(ses_notification(ses_event("Delivery", first, {
        "timestamp": sns_timestamp(), "recipients": [TO], "processingTimeMillis": 546,
        "smtpResponse": "250 ok: Message 64111812 accepted", "reportingMTA": "a8-70.smtp-out.amazonses.com"})),
        version="2", cert_url=cert_url)
    opened = sns.signer.sign(ses_notification(ses_event("Open", first, {
        "timestamp": sns_timestamp(), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"})), cert_url=cert_url)
    bounce = sns.signer.sign(ses_notification(ses_event("Bounce", second, {
        "bounceType": "Permanent", "bounceSubType": "General", "timestamp": sns_timestamp(),
        "bouncedRecipients": [{"emailAddress": "joe@example.com", "status": "5.1.1", "action": "failed",
                               "diagnosticCode": "smtp; 550 5.1.1 <joe@example.com>... User unknown"}]},
        tagged=False)), cert_url=cert_url)
    validated = sns.signer.sign(ses_notification({}, Message="Successfully validated SNS topic for Amazon SES "
                                                            "event publishing."), cert_url=cert_url)
    for message in (delivery, opened, bounce, validated):
        r = sns_post(client, path, message)
        assert r.status_code == 200 and r.json == {"status": "accepted"}, r.json
    again = sns_post(client, path, delivery)  # SNS retries a delivery with the same MessageId
    assert again.status_code == 200 and again.json == {"status": "duplicate"}
    run_jobs()

    first, second = shown(api, first["id"]), shown(api, second["id"])
    assert first["status"] == "opened"
    assert kinds(first) == ["queued", "sending", "sent", "delivered", "opened"]
    assert first["events"][3]["description"] == "Delivered: 250 ok: Message 64111812 accepted"
    assert second["status"] == "bounced"
    assert second["last_error"] == ("Bounced (Permanent, General): smtp; 550 5.1.1 <joe@example.com>... "
                                    "User unknown")
    assert [row.status for row in stored(integration_id)] == ["processed"] * 5
    assert [r.path for r, _ in sns.log].count(cert_url.removeprefix(f"https://{SNS_HOST}")) == 1  # cached


def test_ses_refused_notifications(api, app, ses_api, sns, run_jobs):
    integration_id = make_fake_ses(api, sns_topic_arn=TOPIC_ARN)
    message_id = send(api, integration_id)
    run_jobs()
    message = shown(api, message_id)
    path, client = webhook_path(api, integration_id), app.test_client()
    delivered = ses_notification(ses_event("Delivery", message, {"timestamp": sns_timestamp(), "recipients": [TO]}))
    cert_url = f"https://{SNS_HOST}/SimpleNotificationService-{uuid.uuid4().hex}.pem"

    def sign(body, **kw):
        return sns.signer.sign(body, cert_url=cert_url, **kw)

    def refused(body, status=401, words=""):
        r = sns_post(client, path, body) if isinstance(body, dict) else client.post(
            path, data=body, content_type="text/plain; charset=UTF-8")
        assert r.status_code == status, r.get_data(as_text=True)
        assert words in r.json["error"], r.json

    refused({**sign(delivered), "Message": json.dumps({"eventType": "Bounce"})}, words="does not match")
    refused(SnsSigner().sign(delivered, cert_url=cert_url), words="does not match")  # another key
    refused(sns.signer.sign(delivered, cert_url="https://evil.example.com/SimpleNotificationService-1.pem"),
            words="evil.example.com is not an Amazon SNS host")
    refused(sns.signer.sign(delivered, cert_url="https://sns.us-east-1.amazonaws.com.evil.example/x.pem"),
            words="is not an Amazon SNS host")
    old = {**delivered, "Timestamp": sns_timestamp(datetime.now(UTC) - timedelta(hours=1, minutes=6))}
    refused(sign(old), words="outside the tolerance")
    refused({**sign(delivered), "SignatureVersion": "3"}, words="SignatureVersion 1 or 2")
    other_topic = {**delivered, "TopicArn": "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"}
    refused(sign(other_topic), words="not from " + TOPIC_ARN)
    unsigned = {k: v for k, v in sign(delivered).items() if k != "Signature"}
    refused(unsigned, words="not signed")
    refused(b"{not json", 400, "not JSON")
    refused(json.dumps({"Type": "Surprise"}).encode(), 400, "no known Type")
    refused(b"x" * (ONE_MIB + 1), 413)
    assert sns_post(client, unknown_path(path), sign(delivered)).status_code == 404
    # One certificate fetched once, from the SNS host only: nothing was fetched from the refused hosts.
    assert [request.url for request, _ in sns.log] == [cert_url]

    assert stored(integration_id) == []
    run_jobs()
    assert shown(api, message_id)["status"] == "sent"


def test_ses_subscription_without_a_topic_set_is_not_confirmed(api, app, ses_api, sns, run_jobs):
    integration_id = make_fake_ses(api)  # no topic named: nobody's subscription is confirmed
    r = sns_post(app.test_client(), webhook_path(api, integration_id), sns.signer.sign(subscription_confirmation("t")))
    assert r.status_code == 200
    run_jobs()
    row, = stored(integration_id)
    assert row.status == "failed" and "set the SNS topic ARN" in row.error
    assert not [request for request, _ in sns.log if request.args.get("Action")]


def test_ses_subscription_url_elsewhere_is_not_fetched(api, app, ses_api, sns, run_jobs):
    integration_id = make_fake_ses(api, sns_topic_arn=TOPIC_ARN)
    confirmation = subscription_confirmation("tok")
    confirmation["SubscribeURL"] = "https://evil.example.com/?Action=ConfirmSubscription&Token=tok"
    r = sns_post(app.test_client(), webhook_path(api, integration_id), sns.signer.sign(confirmation))
    assert r.status_code == 200
    run_jobs()
    row, = stored(integration_id)
    assert row.status == "failed" and "evil.example.com is not an Amazon SNS host" in row.error
    assert not [request for request, _ in sns.log if request.args.get("Action")]


# --- SMTP ---------------------------------------------------------------------------------------------------

SMTP_USER, SMTP_PASSWORD = "mailer", "s3cret-pass"


@pytest.fixture(scope="session")
def smtp_ca():
    return trustme.CA()


@pytest.fixture
def mailbox(app, monkeypatch, smtp_ca, tmp_path):
    """aiosmtpd on loopback with STARTTLS (required) and AUTH, its certificate trusted through SSL_CERT_FILE."""
    ca_file = tmp_path / "ca.pem"
    smtp_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORK", True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    smtp_ca.issue_cert("127.0.0.1").configure_cert(context)
    controller, box = start_mailbox(context, SMTP_USER, SMTP_PASSWORD)
    box.controller = controller
    yield box
    controller.stop()


def make_smtp(api, port, password=SMTP_PASSWORD):
    return configured(api, "smtp", host="127.0.0.1", port=port, security="starttls", username=SMTP_USER,
                      password=password)


def test_smtp_sends_the_message_over_starttls_with_auth(api, mailbox, run_jobs):
    message_id = send(api, make_smtp(api, mailbox.controller.port), subject="Your order ✓",
                      html="<p>It ships <b>today</b>.</p>")
    run_jobs()
    message = assert_sent(api, message_id)
    assert mailbox.controller.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]

    (mail_from, rcpt_tos, content), = mailbox.received
    assert (mail_from, rcpt_tos) == ("hello@example.com", [TO])
    email = message_from_bytes(content, policy=policy.default)
    assert email["From"] == "Acme Support <hello@example.com>"
    assert email["To"] == TO and email["Reply-To"] == "support@example.com"
    assert email["Subject"] == "Your order ✓"
    assert email["Message-ID"] == f"<{message_id}@example.com>" == message["provider_message_id"]
    assert email["Date"]
    assert email.get_content_type() == "multipart/alternative"
    assert email.get_body(("plain",)).get_content() == "It ships today.\r\n"  # as it crossed the wire
    assert email.get_body(("html",)).get_content() == "<p>It ships <b>today</b>.</p>\r\n"


def test_smtp_sandbox_makes_no_connection(api, mailbox, run_jobs):
    integration_id = make_smtp(api, mailbox.controller.port)
    sandbox(api, integration_id)
    message_id = send(api, integration_id)
    run_jobs()
    assert_sandboxed(api, message_id)
    assert mailbox.controller.commands == [] and mailbox.received == []


def test_smtp_refused_recipient_fails_without_retry(api, mailbox, run_jobs):
    mailbox.refuse["gone@example.com"] = "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"
    message_id = send(api, make_smtp(api, mailbox.controller.port), to="gone@example.com")
    run_jobs()
    assert_failed_for_good(api, message_id,
                           f"127.0.0.1:{mailbox.controller.port} refused the recipient gone@example.com: 550 5.1.1 "
                           "<gone@example.com>: Recipient address rejected: User unknown")
    assert mailbox.received == []


def test_smtp_temporary_refusal_retries_later(api, mailbox, run_jobs):
    mailbox.refuse["full@example.com"] = "452 4.2.2 Mailbox full, try again later"
    message_id = send(api, make_smtp(api, mailbox.controller.port), to="full@example.com")
    run_jobs()
    assert_retry_scheduled(api, message_id,
                           "turned the recipient full@example.com away for now: 452 4.2.2 Mailbox full")
    assert mailbox.received == []


def test_smtp_bad_password_retries_later(api, mailbox, run_jobs):
    message_id = send(api, make_smtp(api, mailbox.controller.port, password="wrong"))
    run_jobs()
    message = assert_retry_scheduled(api, message_id, "refused the username or password (bad credentials)", "535")
    assert "wrong" not in message["last_error"]
    assert "MAIL" not in mailbox.controller.commands and mailbox.received == []


def test_smtp_timeout_retries_later(api, app, monkeypatch, run_jobs):
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORK", True)
    monkeypatch.setitem(app.config, "PROVIDER_TIMEOUT_SECONDS", 0.3)
    with socket.socket() as silent:  # accepts connections (the kernel does) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        message_id = send(api, make_smtp(api, silent.getsockname()[1]))
        run_jobs()
    assert_retry_scheduled(api, message_id, "did not answer within 0.3 seconds (timeout)")


def test_smtp_takes_no_webhooks(api, app):
    created = api.post("/api/integrations/", json={"integration_type": "email", "name": "Relay",
                                                   "provider": "smtp"}).json
    assert created.get("webhook_url") is None
    public_id = db.session.get(Integration, created["id"]).public_id
    r = app.test_client().post(f"/api/webhooks/smtp/{public_id}/", data=b"{}", content_type="application/json")
    assert r.status_code == 404
