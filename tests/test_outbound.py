"""The outbound pipeline end to end with SendGrid on loopback: validation, idempotency, claiming,
sandbox, retries with backoff, Retry-After, failover, pacing, scheduling, bulk, and the sweep."""
import gc
import threading
import time
from datetime import timedelta

import pytest
from rq import Retry

from app.extensions import db
from app.models import Message, utcnow
from app.queue import task_queue
from app.services import delivery
from app.services.pacing import Pacer, departure_limit, interval_us
from tests.conftest import point_at
from tests.sendgrid_fake import GOOD_KEY, FakeSendGrid


@pytest.fixture
def sendgrid(app, monkeypatch, httpserver):
    fake = FakeSendGrid(httpserver)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", fake.url)
    return fake


@pytest.fixture
def fast_retries(monkeypatch):
    """RQ retries at once, so a burst worker runs every attempt."""
    monkeypatch.setattr("app.jobs.messages.DELIVERY_RETRY", Retry(max=delivery.MAX_ATTEMPTS - 1, interval=0))


def make_email(api, name="Mail", key=GOOD_KEY, priority=None, **settings):
    data = api.post("/api/integrations/", json={"integration_type": "email", "name": name, "provider": "sendgrid"}).json
    r = api.post(f"/api/integrations/{data['id']}/configure/email/", json={"from_email": "hi@example.com", "api_key": key})
    assert r.status_code == 200, r.json
    if priority is not None or settings:
        body = {**settings, **({"priority": priority} if priority is not None else {})}
        assert api.put(f"/api/integrations/{data['id']}/", json=body).status_code == 200
    return data["id"]


def email(to="jane@example.com", **extra):
    return {"channel": "email", "to": to, "subject": "Hello", "body": "Hi there", **extra}


def send(api, body):
    r = api.post("/api/messages/", json=body)
    assert r.status_code == 202, r.json
    return r.json["id"]


def message(api, message_id):
    return api.get(f"/api/messages/{message_id}/").json


@pytest.mark.parametrize("body, field", [
    ({"channel": "email", "to": "not-an-email", "subject": "s", "body": "b"}, "to"),
    ({"channel": "email", "to": "a@example.com", "body": "b"}, "subject"),
    ({"channel": "email", "to": "a@example.com", "subject": "s"}, "body"),
    ({"channel": "sms", "to": "+14155552671", "body": "b"}, "channel"),  # no SMS integration
    ({"channel": "fax", "to": "x"}, "channel"),
    ({"integration_id": 999999, "to": "a@example.com"}, "integration_id"),
    ({"integration_id": "1", "to": "a@example.com"}, "integration_id"),
    ({"channel": "email", "to": "a@example.com", "subject": "s", "body": "b", "send_at": "tomorrow"}, "send_at"),
    ({"channel": "email", "to": "a@example.com", "subject": "s", "body": "b", "send_at": "2026-12-01T09:00:00"},
     "send_at"),
    ({"channel": "email", "to": "a@example.com", "subject": "s", "body": "b", "template": {"name": "x"}}, "template"),
    ({"channel": "email", "to": "a@example.com", "subject": "s", "body": "b", "colour": "red"}, "colour"),
])
def test_bad_requests_get_errors_by_field_and_store_nothing(api, body, field):
    make_email(api)
    response = api.post("/api/messages/", json=body)
    assert response.status_code == 400 and field in response.json["errors"], response.json
    assert db.session.query(Message).count() == 0


def test_sms_and_whatsapp_recipients_must_be_e164(api):
    for kind, provider, slug, fields in (
            ("sms", "twilio", "sms", {"from_phone_number": "+14155552671", "account_sid": "AC" + "a" * 32,
                                      "auth_token": "t"}),
            ("whatsapp", "cloud_api", "whatsapp", {"phone_number_id": "123456", "business_account_id": "654321",
                                                   "access_token": "t"})):
        data = api.post("/api/integrations/", json={"integration_type": kind, "name": kind, "provider": provider}).json
        api.post(f"/api/integrations/{data['id']}/configure/{slug}/", json=fields)
        bad = api.post("/api/messages/", json={"channel": kind, "to": "0412 345 678", "body": "x"})
        assert bad.status_code == 400 and "E.164" in bad.json["errors"]["to"][0]
    no_name = api.post("/api/messages/", json={"channel": "whatsapp", "to": "+14155552671",
                                               "template": {"language": "en_US"}})
    assert no_name.status_code == 400 and "A template needs a name." in no_name.json["errors"]["template"]


def test_another_organisations_integration_cannot_send(api, other_api):
    theirs = make_email(other_api)
    response = api.post("/api/messages/", json={**email(), "channel": None, "integration_id": theirs})
    assert response.status_code == 400 and "integration_id" in response.json["errors"]
    mine = send(other_api, email())
    assert api.get(f"/api/messages/{mine}/").status_code == 404
    assert api.get("/api/messages/").json["total"] == 0


def test_send_through_the_lowest_priority_active_integration(api, sendgrid, run_jobs):
    make_email(api, "Backup", priority=50)
    first = make_email(api, "Main", priority=10)
    message_id = send(api, email(html="<p>Hi there</p>"))
    assert message(api, message_id)["status"] == "queued"
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "sent" and data["integration_id"] == first and data["attempts"] == 1
    assert data["provider_message_id"] == "sgmsg1"
    assert [e["kind"] for e in data["events"]] == ["queued", "sending", "sent"]
    body = sendgrid.sent[0]
    assert body["personalizations"][0]["custom_args"] == {"switchboard_message_id": message_id}
    assert body["content"] == [{"type": "text/plain", "value": "Hi there"}, {"type": "text/html", "value": "<p>Hi there</p>"}]
    assert body["from"] == {"email": "hi@example.com"} and "mail_settings" not in body


def test_idempotency_key_returns_the_first_message(api, sendgrid, run_jobs):
    make_email(api)
    first = send(api, email(idempotency_key="order-42"))
    again = send(api, email(idempotency_key="order-42", to="other@example.com"))
    assert first == again
    run_jobs()
    assert sendgrid.recipients() == ["jane@example.com"]


def test_a_duplicated_job_sends_once(api, sendgrid, run_jobs):
    make_email(api)
    message_id = send(api, email())
    from app.jobs.messages import deliver_message
    task_queue().enqueue(deliver_message, message_id)  # a second job for the same message
    task_queue().enqueue(deliver_message, message_id)
    run_jobs()
    assert len(sendgrid.sent) == 1 and message(api, message_id)["status"] == "sent"


def test_sandbox_uses_sendgrids_test_mode(api, sendgrid, run_jobs):
    make_email(api, sandbox=True)
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "sandboxed" and "not delivered" in data["events"][-1]["description"]
    assert sendgrid.sent[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_server_errors_retry_with_backoff_then_send(api, sendgrid, run_jobs, fast_retries):
    make_email(api)
    sendgrid.fail_next(503, "try later", times=2)
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "sent" and data["attempts"] == 3 and data["last_error"] is None
    assert [e["kind"] for e in data["events"]].count("retry") == 2


def test_retries_run_out_with_the_reason_in_words(api, sendgrid, run_jobs, fast_retries):
    make_email(api)
    sendgrid.fail_next(500, "internal trouble", times=delivery.MAX_ATTEMPTS)
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "failed" and data["attempts"] == delivery.MAX_ATTEMPTS
    assert data["last_error"].startswith("Gave up after 5 attempts") and "internal trouble" in data["last_error"]
    assert sendgrid.sent == []


def test_retry_waits_while_the_first_backoff_is_pending(api, sendgrid, run_jobs):
    make_email(api)
    sendgrid.fail_next(503)
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "queued" and data["attempts"] == 1 and "server error" in data["last_error"]
    assert "Will try again in 10 s." in [e["description"] for e in data["events"]]
    assert task_queue().scheduled_job_registry.count == 1  # RQ's Retry holds the next attempt


def test_retry_after_is_honoured(api, sendgrid, run_jobs):
    make_email(api)
    sendgrid.fail_next(429, "slow down", headers={"Retry-After": "120"})
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "queued" and "in 120 s, as the provider asked" in data["events"][-1]["description"]
    registry = task_queue().scheduled_job_registry
    assert registry.get_job_ids() == [f"{message_id}-1"]
    due = registry.get_scheduled_time(f"{message_id}-1")
    assert 100 < (due.replace(tzinfo=None) - utcnow()).total_seconds() <= 121


def test_bad_recipient_fails_without_retry_or_failover(api, sendgrid, run_jobs, fast_retries):
    make_email(api, "Main", priority=1)
    make_email(api, "Backup", priority=2)
    sendgrid.fail_next(400, "Does not contain a valid address.")
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "failed" and data["attempts"] == 1
    assert "valid address" in data["last_error"] and "failover" not in [e["kind"] for e in data["events"]]
    assert sendgrid.sent == []


def test_failover_moves_to_the_next_integration_at_once(api, app, sendgrid, run_jobs):
    broken = make_email(api, "Main", key="SG.revoked", priority=1)
    backup = make_email(api, "Backup", priority=2)
    message_id = send(api, email())
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "sent" and data["integration_id"] == backup and data["attempts"] == 1
    failover = next(e for e in data["events"] if e["kind"] == "failover")
    assert failover["integration_id"] == broken and "Moving to Backup" in failover["description"]
    assert "bad credentials" in failover["description"]


def test_an_integration_that_keeps_failing_is_marked_and_admins_are_told(api, sendgrid, run_jobs, admin):
    broken = make_email(api, "Main", key="SG.revoked", priority=1)
    make_email(api, "Backup", priority=2)
    for n in range(delivery.FAILURES_BEFORE_ERROR):
        send(api, email(to=f"customer{n}@example.com"))
    run_jobs()
    data = api.get(f"/api/integrations/{broken}/").json
    assert data["status"] == "error" and "bad credentials" in data["last_error"]
    alerts = [b for b in sendgrid.sent if b["subject"] == "Switchboard: Main is failing"]
    assert [a["personalizations"][0]["to"][0]["email"] for a in alerts] == [admin.email]
    assert len(sendgrid.sent) == delivery.FAILURES_BEFORE_ERROR + 1  # every message went out through Backup


def test_no_active_integration_left_fails_the_message(api, sendgrid, run_jobs):
    integration_id = make_email(api)
    message_id = send(api, email())
    api.put(f"/api/integrations/{integration_id}/", json={"is_active": False})
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "failed" and "no active email integration" in data["last_error"]


def test_scheduled_messages_wait_for_send_at(api, sendgrid, run_jobs):
    make_email(api)
    later = (utcnow() + timedelta(hours=2)).isoformat() + "Z"
    message_id = send(api, email(send_at=later))
    data = message(api, message_id)
    assert data["status"] == "scheduled" and data["send_at"].startswith(later[:16])
    run_jobs()
    assert message(api, message_id)["status"] == "scheduled" and sendgrid.sent == []
    due = task_queue().scheduled_job_registry.get_scheduled_time(message_id).replace(tzinfo=None)
    assert abs((due - (utcnow() + timedelta(hours=2))).total_seconds()) < 5
    past = send(api, email(send_at="2020-01-01T00:00:00Z"))
    run_jobs()
    assert message(api, past)["status"] == "sent"


def test_bulk_validates_everything_then_sends_all_with_progress(api, sendgrid, run_jobs):
    make_email(api)
    bad = api.post("/api/messages/bulk/", json={"channel": "email", "messages": [
        {"to": "a@example.com", "subject": "s", "body": "b"}, {"to": "nope", "subject": "s", "body": "b"}]})
    assert bad.status_code == 400 and list(bad.json["errors"]) == ["messages[1].to"]
    assert db.session.query(Message).count() == 0
    good = api.post("/api/messages/bulk/", json={"channel": "email", "messages": [
        {"to": f"c{n}@example.com", "subject": "s", "body": "b"} for n in range(5)]})
    assert good.status_code == 202 and len(good.json["ids"]) == 5
    progress = api.get(f"/api/messages/bulk/{good.json['bulk_id']}/").json
    assert progress["total"] == 5 and progress["done"] == 0
    run_jobs()
    progress = api.get(f"/api/messages/bulk/{good.json['bulk_id']}/").json
    assert progress["done"] == 5 and progress["by_status"] == {"sent": 5}
    assert api.get("/api/messages/bulk/nope/").status_code == 404
    assert api.post("/api/messages/bulk/", json={"channel": "email", "messages": []}).status_code == 400


def test_list_filters(api, sendgrid, run_jobs):
    first = make_email(api, "A")
    send(api, email())
    run_jobs()
    send(api, email())
    assert api.get("/api/messages/").json["total"] == 2
    assert api.get("/api/messages/?status=sent").json["total"] == 1
    assert api.get(f"/api/messages/?integration_id={first}&status=queued").json["total"] == 1
    assert api.get("/api/messages/?channel=sms").json["total"] == 0
    for bad in ("status=lost", "channel=fax", "integration_id=abc"):
        assert api.get(f"/api/messages/?{bad}").status_code == 400


def test_put_sending_settings(api):
    integration_id = make_email(api)
    url = f"/api/integrations/{integration_id}/"
    data = api.put(url, json={"priority": 5, "rate_limit": 2.5, "sandbox": True}).json
    assert data["priority"] == 5 and data["rate_limit"] == 2.5 and data["sandbox"] is True
    assert api.put(url, json={"rate_limit": None}).json["rate_limit"] == 100.0  # the provider's default
    for bad in ({"priority": -1}, {"priority": "1"}, {"rate_limit": 0}, {"rate_limit": "fast"}, {"sandbox": "yes"}):
        assert api.put(url, json=bad).status_code == 400, bad
    signup = api.post("/api/integrations/", json={"integration_type": "signup_page", "name": "s"}).json
    assert api.put(f"/api/integrations/{signup['id']}/", json={"priority": 1}).status_code == 400


def busiest_second(times: list[float], width: float = 1.0) -> int:
    """The most moments in any window [t, t + width)."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + width) for i, start in enumerate(times))


def test_pacer_holds_the_limit_across_threads(app, redis_conn):
    pacer = Pacer(redis_conn, prefix="test:pace")
    departed: list[float] = []

    def worker():
        for _ in range(5):
            departed.append(pacer.acquire("shared", 20))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(departed) == 60 and busiest_second(departed) <= 20
    capacity, window_us = departure_limit(20)
    assert busiest_second(departed, window_us / 1_000_000) <= capacity == 20
    span = max(departed) - min(departed)
    assert 59 * interval_us(20) / 1_000_000 * 0.95 < span < 59 * interval_us(20) / 1_000_000 * 1.5  # evenly paced
    gaps = [b - a for a, b in zip(sorted(departed), sorted(departed)[1:])]
    assert min(gaps) >= interval_us(20) // 2 / 1_000_000  # no bursts
    assert interval_us(80) == round(1_000_000 / 80 * 1.03) and interval_us(0.5) == 2_060_000
    assert departure_limit(80) == (80, 1_030_000) and departure_limit(0.5) == (1, 2_060_000)


def test_departures_never_crowd_a_window_however_senders_arrive(app, redis_conn):
    """Senders that skip the schedule and ask to leave whenever they are ready (as a late one does)
    are held by the departure log: no window of 1.03 s holds more than the rate, no two leave within
    half an interval, and none is turned away for good."""
    pacer, rate = Pacer(redis_conn, prefix="test:depart"), 10
    departed: list[float] = []

    def impatient_sender():
        for _ in range(4):
            while True:
                wait_us, now_us = pacer.depart("shared", rate)
                if not wait_us:
                    departed.append(now_us / 1_000_000)
                    break
                time.sleep(wait_us / 1_000_000)

    threads = [threading.Thread(target=impatient_sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    capacity, window_us = departure_limit(rate)
    assert len(departed) == 32
    assert busiest_second(departed) <= rate and busiest_second(departed, window_us / 1_000_000) <= capacity
    gaps = [b - a for a, b in zip(sorted(departed), sorted(departed)[1:])]
    assert min(gaps) >= interval_us(rate) // 2 / 1_000_000
    # Full windows, not an even trickle: the log lets a backlog go as fast as the limit allows.
    assert busiest_second(departed, window_us / 1_000_000) == capacity


def test_rate_limit_paces_sends(api, sendgrid, run_jobs):
    make_email(api, rate_limit=4)
    for n in range(8):
        send(api, email(to=f"p{n}@example.com"))
    run_jobs()
    times = [body["_at"] for body in sendgrid.sent]
    assert len(times) == 8 and busiest_second(times) <= 4
    assert max(times) - min(times) >= 1.0


def test_no_garbage_collection_pauses_a_send_between_its_departure_and_the_provider(api, sendgrid, run_jobs):
    """A collection in that span would delay the request past the pacer's margin (bench/README.md)."""
    make_email(api, rate_limit=50)
    for n in range(3):
        send(api, email(to=f"p{n}@example.com"))
    assert gc.isenabled()
    run_jobs()
    assert sendgrid.collector_on_arrival == [False, False, False]
    assert gc.isenabled()  # and on again once the provider has answered


def test_sweep_queues_messages_whose_job_was_lost_and_ends_interrupted_sends(api, app, sendgrid, run_jobs, monkeypatch):
    make_email(api)
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")  # Redis is down while the request comes
    app.extensions.pop("redis", None)
    lost = send(api, email())
    monkeypatch.setitem(app.config, "REDIS_URL", app.config["RATELIMIT_STORAGE_URI"])
    app.extensions.pop("redis", None)
    interrupted = send(api, email(to="second@example.com"))
    db.session.get(Message, interrupted).status = "sending"  # a worker died mid-send
    db.session.get(Message, interrupted).sending_started_at = utcnow() - timedelta(minutes=11)
    db.session.get(Message, lost).updated_at = utcnow() - timedelta(minutes=3)
    db.session.commit()
    from app.jobs.maintenance import sweep
    assert sweep() == {"webhooks": 0, "messages": 1, "interrupted": 1, "campaign_steps": 0,
                       "signup_submissions": 0, "contact_imports": 0}  # nothing pending to drain
    run_jobs()
    assert message(api, lost)["status"] == "sent"
    data = message(api, interrupted)
    assert data["status"] == "failed" and "not sent again" in data["last_error"]
    assert sendgrid.recipients() == ["jane@example.com"]


def test_whatsapp_content_rules(api):
    data = api.post("/api/integrations/", json={"integration_type": "whatsapp", "name": "WA"}).json
    api.post(f"/api/integrations/{data['id']}/configure/whatsapp/",
             json={"phone_number_id": "123456", "business_account_id": "654321", "access_token": "t"})
    base = {"channel": "whatsapp", "to": "+14155552671"}
    both = api.post("/api/messages/", json={**base, "body": "hi", "template": {"name": "welcome"}})
    assert both.status_code == 400 and "template carries its own text" in both.json["errors"]["body"][0]
    long_caption = api.post("/api/messages/", json={**base, "body": "x" * 1025, "media_url": "https://e.com/a.jpg"})
    assert long_caption.status_code == 400 and "caption" in long_caption.json["errors"]["body"][0]
    plain_media = api.post("/api/messages/", json={**base, "media_url": "http://e.com/a.jpg"})
    assert plain_media.status_code == 400 and "https" in plain_media.json["errors"]["media_url"][0]
    assert api.post("/api/messages/", json={**base, "template": {"name": "welcome", "parameters": ["Ann"]}}).status_code == 202


def test_a_full_pace_requeues_without_counting_an_attempt_or_failing_over(api, app, sendgrid, run_jobs, monkeypatch,
                                                                          redis_conn):
    make_email(api, "Main", priority=1, rate_limit=1)
    make_email(api, "Backup", priority=2)
    monkeypatch.setattr(delivery, "MAX_PACING_WAIT", 0.0)
    first, second = send(api, email(to="one@example.com")), send(api, email(to="two@example.com"))
    run_jobs()
    assert message(api, first)["status"] == "sent"
    data = message(api, second)
    assert data["status"] == "queued" and data["attempts"] == 0 and "failover" not in [e["kind"] for e in data["events"]]
    assert sendgrid.recipients() == ["one@example.com"]  # the backup was not used to get around the pace
    # Its next turn is scheduled a second later; on a slow machine the burst worker's scheduler may
    # already have moved it to the queue.
    waiting = task_queue().scheduled_job_registry.get_job_ids() + task_queue().job_ids
    assert any(j.startswith(f"{second}-paced-") for j in waiting)
    main = next(i for i in api.get("/api/integrations/").json if i["name"] == "Main")
    assert main["status"] != "error"
