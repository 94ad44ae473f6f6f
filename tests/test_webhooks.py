"""Webhook intake with SendGrid's signed Event Webhook: verify, store first, process once;
refuse forged, stale, malformed, oversize and misaddressed requests without processing them."""
import threading
import time

import pytest

from app.extensions import db
from app.models import Integration, Message, MessageEvent, WebhookEvent
from app.providers.base import InboundWebhook, ProviderSettings, WebhookRejected
from app.providers.email.sendgrid import SendGrid
from app import queue
from app.queue import task_queue
from app.services import webhooks
from tests.conftest import point_at
from tests.providers.test_send_whatsapp import configure, notification, post_webhook, sign, status
from tests.sendgrid_fake import EventWebhookSigner, FakeSendGrid, events_body
from tests.test_outbound import email, make_email, message, send

VECTOR = {  # SendGrid SDK fixture, from ../shared/reference/providers.md
    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvF"
                  "YPAZFceEu/1FwCM/QmGUhA==",
    "timestamp": "1588788367",
    "body": b'{"category":"example_payload","event":"test_event","message_id":"message_id"}',
    "signature": "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=",
}


def vector_request(timestamp=VECTOR["timestamp"], received_at=1588788367 + 5):
    return InboundWebhook(method="POST", url="https://x/", body=VECTOR["body"], received_at=received_at, headers={
        "x-twilio-email-event-webhook-signature": VECTOR["signature"],
        "x-twilio-email-event-webhook-timestamp": timestamp})


def test_sendgrid_vector():
    adapter = SendGrid(ProviderSettings())
    config = {"webhook_verification_key": VECTOR["public_key"]}
    adapter.verify_webhook(config, {}, vector_request())
    with pytest.raises(WebhookRejected, match="does not match"):
        adapter.verify_webhook(config, {}, vector_request(timestamp="1588788368"))
    with pytest.raises(WebhookRejected, match="tolerance"):
        adapter.verify_webhook(config, {}, vector_request(received_at=1588788367 + 3600))


@pytest.fixture
def signer():
    return EventWebhookSigner()


@pytest.fixture
def sent(api, app, monkeypatch, httpserver, run_jobs, signer):
    """A message sent through a SendGrid integration that has the signer's verification key."""
    fake = FakeSendGrid(httpserver)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", fake.url)
    integration_id = make_email(api)
    api.post(f"/api/integrations/{integration_id}/configure/email/",
             json={"webhook_verification_key": signer.public_key})
    message_id = send(api, email())
    run_jobs()
    path = api.get(f"/api/integrations/{integration_id}/").json["webhook_url"].replace(
        "https://switchboard.example.com", "")
    return {"integration_id": integration_id, "message_id": message_id, "path": path}


def event(sent, kind, event_id, **extra):
    return {"email": "jane@example.com", "timestamp": int(time.time()), "event": kind, "sg_event_id": event_id,
            "sg_message_id": "sgmsg1.filterdrecv-1", "switchboard_message_id": sent["message_id"], **extra}


def post(app, sent, body, headers):
    return app.test_client().post(sent["path"], data=body, headers=headers)


def test_signed_events_are_stored_then_processed_once(app, api, sent, signer, run_jobs):
    body = events_body(event(sent, "processed", "e1"), event(sent, "delivered", "e2", response="250 OK"),
                       event(sent, "open", "e3"))
    response = post(app, sent, body, signer.headers(body))
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    row = db.session.query(WebhookEvent).one()
    assert row.status == "pending" and row.body == body  # stored raw, before processing
    assert "x-twilio-email-event-webhook-signature" in row.headers
    assert message(api, sent["message_id"])["status"] == "sent"
    run_jobs()
    data = message(api, sent["message_id"])
    assert data["status"] == "opened"
    assert [e["description"] for e in data["events"][-3:]] == ["Accepted by SendGrid", "Delivered: 250 OK", "Opened"]
    db.session.expire_all()
    assert db.session.get(WebhookEvent, row.id).status == "processed"

    # The same delivery again: recognised, not processed twice.
    again = post(app, sent, body, signer.headers(body))
    assert again.status_code == 200 and again.json == {"status": "duplicate"}
    # The same events in a new delivery: stored, but each event counts once.
    resent = events_body(event(sent, "delivered", "e2", response="250 OK"), event(sent, "click", "e4", url="https://x"))
    post(app, sent, resent, signer.headers(resent))
    run_jobs()
    data = message(api, sent["message_id"])
    assert data["status"] == "clicked"
    assert [e["kind"] for e in data["events"]].count("delivered") == 1


def test_a_late_delivered_does_not_undo_opened_and_bounce_ends_delivery(app, api, sent, signer, run_jobs):
    for events in ([event(sent, "open", "o1")], [event(sent, "delivered", "d1")]):
        body = events_body(*events)
        post(app, sent, body, signer.headers(body))
        run_jobs()
    assert message(api, sent["message_id"])["status"] == "opened"


def test_bounce_marks_the_message_bounced_with_the_reason(app, api, sent, signer, run_jobs):
    body = events_body(event(sent, "bounce", "b1", reason="550 5.1.1 mailbox does not exist", type="bounce"))
    post(app, sent, body, signer.headers(body))
    run_jobs()
    data = message(api, sent["message_id"])
    assert data["status"] == "bounced" and data["last_error"] == "Bounced: 550 5.1.1 mailbox does not exist"


@pytest.mark.parametrize("case", ["forged", "unsigned", "stale", "future", "wrong key", "tampered", "bad base64"])
def test_refused_requests_change_nothing(app, api, sent, signer, run_jobs, case):
    body = events_body(event(sent, "delivered", "x1"))
    headers = signer.headers(body)
    if case == "forged":
        headers = EventWebhookSigner().headers(body)
    elif case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "stale":
        headers = signer.headers(body, timestamp=int(time.time()) - 600)
    elif case == "future":
        headers = signer.headers(body, timestamp=int(time.time()) + 600)
    elif case == "wrong key":
        api.post(f"/api/integrations/{sent['integration_id']}/configure/email/",
                 json={"webhook_verification_key": EventWebhookSigner().public_key})
    elif case == "tampered":
        body = body.replace(b"delivered", b"bounce\x20\x20\x20")
    elif case == "bad base64":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "!!notbase64!!"
    response = post(app, sent, body, headers)
    assert response.status_code == 401 and "error" in response.json
    assert db.session.query(WebhookEvent).count() == 0
    run_jobs()
    assert message(api, sent["message_id"])["status"] == "sent"


def test_no_verification_key_refuses_everything(app, api, sent, signer):
    row = db.session.get(Integration, sent["integration_id"])
    row.config = {**row.config, "webhook_verification_key": None}
    db.session.commit()
    body = events_body(event(sent, "delivered", "k1"))
    response = post(app, sent, body, signer.headers(body))
    assert response.status_code == 401 and "No Event Webhook verification key" in response.json["error"]


@pytest.mark.parametrize("body", [b"{not json", b'{"event": "delivered"}', b""])
def test_malformed_bodies_are_refused(app, sent, signer, body):
    response = post(app, sent, body, signer.headers(body))
    assert response.status_code == 400
    assert db.session.query(WebhookEvent).count() == 0


def test_oversize_bodies_are_refused(app, sent, signer):
    body = events_body(*[event(sent, "processed", f"big{n}", pad="x" * 1000) for n in range(1100)])
    assert len(body) > 1024 * 1024
    response = post(app, sent, body, signer.headers(body))
    assert response.status_code == 413
    assert db.session.query(WebhookEvent).count() == 0


def test_unknown_addresses_and_the_wrong_organisation(app, api, other_api, sent, signer):
    body = events_body(event(sent, "delivered", "w1"))
    client = app.test_client()
    assert client.post("/api/webhooks/sendgrid/not-a-real-id/", data=body, headers=signer.headers(body)).status_code == 404
    wrong_provider = sent["path"].replace("/sendgrid/", "/mailgun/")
    assert client.post(wrong_provider, data=body, headers=signer.headers(body)).status_code == 404
    # Another organisation's SendGrid integration, with its own key: our signed events are refused there.
    theirs = make_email(other_api)
    other_api.post(f"/api/integrations/{theirs}/configure/email/",
                   json={"webhook_verification_key": EventWebhookSigner().public_key})
    their_path = other_api.get(f"/api/integrations/{theirs}/").json["webhook_url"].replace(
        "https://switchboard.example.com", "")
    assert client.post(their_path, data=body, headers=signer.headers(body)).status_code == 401
    # Even with a valid signature there, events only touch that organisation's messages.
    other_api.post(f"/api/integrations/{theirs}/configure/email/", json={"webhook_verification_key": signer.public_key})
    assert client.post(their_path, data=body, headers=signer.headers(body)).status_code == 200
    row = db.session.query(WebhookEvent).one()
    assert webhooks.process(row.id) == "pending"  # no message of theirs matches: kept for a later try
    assert message(api, sent["message_id"])["status"] == "sent"
    assert client.get(sent["path"]).status_code == 405


def test_webhooks_are_kept_while_redis_is_down_and_processed_after(app, api, sent, signer, run_jobs, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")
    app.extensions.pop("redis", None)
    for n in range(3):
        body = events_body(event(sent, ["delivered", "open", "click"][n], f"r{n}"))
        assert post(app, sent, body, signer.headers(body)).status_code == 200
    assert db.session.query(WebhookEvent).filter_by(status="pending").count() == 3
    monkeypatch.setitem(app.config, "REDIS_URL", app.config["RATELIMIT_STORAGE_URI"])
    app.extensions.pop("redis", None)
    from datetime import timedelta

    from app.models import utcnow
    db.session.query(WebhookEvent).update({"received_at": utcnow() - timedelta(minutes=1)})
    db.session.commit()
    assert webhooks.sweep() == 3
    run_jobs()
    assert db.session.query(WebhookEvent).filter_by(status="processed").count() == 3
    assert message(api, sent["message_id"])["status"] == "clicked"


def test_an_interrupted_send_is_corrected_by_its_status_webhook(app, api, sent, signer, run_jobs):
    row = db.session.get(Message, sent["message_id"])
    row.status, row.provider_message_id = "failed", None  # as the sweep leaves an interrupted send
    db.session.commit()
    body = events_body(event(sent, "delivered", "late1"))
    post(app, sent, body, signer.headers(body))
    run_jobs()
    data = message(api, sent["message_id"])
    assert data["status"] == "delivered" and data["provider_message_id"] == "sgmsg1"


def test_replay_reprocesses_without_duplicating(app, api, sent, signer, run_jobs):
    body = events_body(event(sent, "delivered", "rp1"))
    post(app, sent, body, signer.headers(body))
    run_jobs()
    row = db.session.query(WebhookEvent).one()
    webhooks.replay(row)
    run_jobs()
    assert db.session.query(MessageEvent).filter_by(kind="delivered").count() == 1
    assert "[redacted]" not in webhooks.redacted_payload(row) and b"rp1" in row.body



# --- the intake's per-process copy of each integration, and the drain signal ---------------------

def wa_status(n: int) -> bytes:
    return notification(status(f"wamid.intake{n}", "delivered"))


def test_a_changed_app_secret_takes_effect_at_once(app, api):
    bodies = {n: wa_status(n) for n in range(1, 5)}  # built once: each carries the second it was made

    def post(n, secret):
        return post_webhook(app, wa, bodies[n], signature=sign(bodies[n], secret))

    def new_secret(secret):
        api.post(f"/api/integrations/{wa['id']}/configure/whatsapp/", json={"app_secret": secret})

    wa = configure(api, app_secret="first-secret")
    assert post(1, "first-secret").json == {"status": "accepted"}  # this process now holds the first secret
    new_secret("second-secret")
    assert post(2, "first-secret").status_code == 401  # it verifies with the old one, but may not store with it
    new_secret("third-secret")
    assert post(3, "third-secret").json == {"status": "accepted"}  # refused with the old one, read again, accepted
    assert post(4, "second-secret").status_code == 401
    assert sorted(row.body for row in db.session.query(WebhookEvent)) == sorted([bodies[1], bodies[3]])


def test_any_change_to_the_integration_is_seen_before_storing(app, api):
    wa = configure(api)
    assert post_webhook(app, wa, wa_status(1)).json == {"status": "accepted"}
    assert api.put(f"/api/integrations/{wa['id']}/", json={"name": "Renamed"}).status_code == 200
    # The copy read before the rename no longer matches the row: read again, then stored.
    assert post_webhook(app, wa, wa_status(2)).json == {"status": "accepted"}
    assert db.session.query(WebhookEvent).count() == 2
    assert api.delete(f"/api/integrations/{wa['id']}/").status_code in (200, 204)
    assert post_webhook(app, wa, wa_status(3)).status_code == 404


def test_events_stored_on_the_strength_of_a_seen_flag_are_drained(app, api, monkeypatch, redis_conn):
    """A process that saw the drain flag a moment ago stores without a SET of its own; the drain that
    takes the flag down waits long enough to find that event too."""
    monkeypatch.setattr(queue, "SIGNAL_HOLDS_FOR", 0.5)  # wide, so the steps below fit in it on any machine
    # As in a fresh process: the flag an earlier test saw went away with that test's Redis database.
    monkeypatch.delitem(app.extensions, "drain_signals", raising=False)
    wa = configure(api)
    assert post_webhook(app, wa, wa_status(1)).json == {"status": "accepted"}
    assert len(task_queue()) == 1

    def drain():
        with app.app_context():
            webhooks.drain()

    draining = threading.Thread(target=drain)
    draining.start()
    deadline = time.monotonic() + 5
    while redis_conn.exists(webhooks.DRAIN_QUEUED_FLAG) and time.monotonic() < deadline:
        time.sleep(0.005)  # the drain has taken the flag down and waits before it reads
    assert post_webhook(app, wa, wa_status(2)).json == {"status": "accepted"}
    assert len(task_queue()) == 1  # no SET, no new job: the flag was seen less than SIGNAL_HOLDS_FOR ago
    draining.join()
    db.session.expire_all()
    assert [row.attempts for row in db.session.query(WebhookEvent).order_by(WebhookEvent.id)] == [1, 1]


def test_a_burst_of_webhooks_queues_one_drain(app, api, run_jobs):
    wa = configure(api)
    for n in range(20):
        assert post_webhook(app, wa, wa_status(n)).json == {"status": "accepted"}
    assert len(task_queue()) == 1
    run_jobs()
    assert {row.attempts for row in db.session.query(WebhookEvent)} == {1}
