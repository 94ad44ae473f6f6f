"""Replies from the inbox through the JSON API and a real RQ worker to a Graph API on loopback: the
24-hour window and the human-agent tag, WhatsApp templates, media by link and by upload, retries
with backoff, errors in plain words, echoes that race the send, and read marking at the provider."""
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from sqlalchemy import select

from app.extensions import db
from app.models import Conversation, ConversationMessage, Integration, MessageTemplate, WebhookEvent, utcnow
from app.queue import AppWorker, task_queue
from app.services import inbox, webhooks
from tests.graph_messaging_fake import (  # noqa: F401  (fixtures)
    BUSY,
    EXPIRED,
    IG_ID,
    IGSID,
    PAGE_ID,
    PHONE_ID,
    PSID,
    REENGAGEMENT,
    WA_ID,
    WABA_ID,
    accounts,
    graph,
    graph_error,
    messenger_item,
    page_notification,
    post,
    wa_message,
    whatsapp_notification,
)

APPOINTMENT = {"name": "appointment_reminder", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
               "id": "1", "components": [
                   {"type": "HEADER", "format": "TEXT", "text": "Reminder"},
                   {"type": "BODY", "text": "Hi {{1}}, your appointment is at {{2}}.",
                    "example": {"body_text": [["Jane", "10:00"]]}}]}


def conversation_on(app, accounts, run_jobs, channel: str, hours_ago: float = 0) -> Conversation:
    """A conversation started by the person's message, which they wrote `hours_ago`."""
    at = time.time()
    if channel == "whatsapp":
        body = whatsapp_notification(messages=[wa_message("text", {"body": "Hello"}, wamid="wamid.IN1",
                                                          timestamp=int(at))])
    elif channel == "messenger":
        body = page_notification(messenger_item("Hello", mid="m_in1", timestamp_ms=int(at * 1000)))
    else:
        body = page_notification(messenger_item("Hello", mid="ig_in1", sender=IGSID, recipient=IG_ID,
                                                timestamp_ms=int(at * 1000)), page_id=IG_ID, obj="instagram")
    assert post(app, accounts, body).status_code == 200
    run_jobs()
    conversation = db.session.scalars(select(Conversation).where(Conversation.channel == channel)).one()
    if hours_ago:  # the person wrote that long ago (Meta refuses notifications that old, so the row is aged)
        conversation.last_inbound_at = utcnow() - timedelta(hours=hours_ago)
        db.session.commit()
    return conversation


def reply(api, conversation, **body):
    return api.post(f"/api/conversations/{conversation.id}/messages/", json=body)


def stored(message_id) -> ConversationMessage:
    db.session.expire_all()
    return db.session.get(ConversationMessage, message_id)


def run_due_retries(app):
    """Make every retry RQ scheduled due now, and let a burst worker with its scheduler run them."""
    queue = task_queue()
    registry = ScheduledJobRegistry(queue=queue)
    for job_id in registry.get_job_ids():
        registry.schedule(queue.fetch_job(job_id), datetime.now(UTC) - timedelta(seconds=1))
    # An earlier burst worker of this test may still hold the scheduler lock for a while.
    queue.connection.delete(RQScheduler.get_locking_key(queue.name))
    AppWorker([queue], connection=queue.connection, app=app).work(burst=True, with_scheduler=True)
    db.session.expire_all()


# --- the 24-hour window -------------------------------------------------------------------------------

def test_a_messenger_reply_inside_24_hours_goes_as_a_response(app, api, admin, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger", hours_ago=2)
    response = reply(api, conversation, text="We open at 9")
    assert response.status_code == 202 and response.json["status"] == "queued"
    assert stored(response.json["id"]).status == "queued"  # stored before anything is sent
    run_jobs()
    [send] = [r for r in graph.sent() if "message" in (r.body or {})]
    assert send.body == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                         "message": {"text": "We open at 9", "metadata": f"inbox-{response.json['id']}"}}
    assert send.args["access_token"] == "EAAGpage"
    message = stored(response.json["id"])
    assert (message.status, message.provider_message_id, message.sent_by_id, message.direction) == (
        "sent", "m_sent1", admin.id, "out")
    detail = api.get(f"/api/conversations/{conversation.id}/").json
    assert detail["last_message_preview"] == "You: We open at 9"
    assert detail["window"]["state"] == "open" and detail["window"]["open"] is True


def test_after_24_hours_messenger_replies_carry_the_human_agent_tag_and_after_7_days_they_are_refused(
        app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger", hours_ago=30)
    window = inbox.window(conversation)
    assert window.state == "human_agent" and window.tag == "HUMAN_AGENT"
    assert window.closes_at == conversation.last_inbound_at + timedelta(days=7)
    assert reply(api, conversation, text="Sorry for the wait").status_code == 202
    run_jobs()
    [send] = [r for r in graph.sent() if "message" in (r.body or {})]
    assert send.body["messaging_type"] == "MESSAGE_TAG" and send.body["tag"] == "HUMAN_AGENT"

    conversation.last_inbound_at = utcnow() - timedelta(days=8)
    db.session.commit()
    refused = reply(api, conversation, text="Still there?")
    assert refused.status_code == 409
    assert "only within 7 days" in refused.json["error"] and refused.json["window"]["state"] == "closed"
    assert db.session.query(ConversationMessage).filter_by(direction="out").count() == 1
    run_jobs()
    assert len([r for r in graph.sent() if "message" in (r.body or {})]) == 1


def test_instagram_follows_the_same_window(app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "instagram", hours_ago=1)
    assert reply(api, conversation, text="Yes, size M").status_code == 202
    run_jobs()
    [send] = [r for r in graph.sent() if "message" in (r.body or {})]
    # Instagram gets no metadata field: it is documented for Messenger only.
    assert send.body == {"recipient": {"id": IGSID}, "messaging_type": "RESPONSE", "message": {"text": "Yes, size M"}}
    conversation.last_inbound_at = utcnow() - timedelta(days=7, minutes=1)
    db.session.commit()
    assert reply(api, conversation, text="late").status_code == 409


def test_whatsapp_free_text_after_24_hours_is_refused_with_the_template_hint_and_a_template_goes(
        app, api, accounts, graph, run_jobs):
    graph.templates = [APPOINTMENT]
    conversation = conversation_on(app, accounts, run_jobs, "whatsapp", hours_ago=25)
    for body in ({"text": "Hello again"}, {"media_url": "https://cdn.example.com/menu.jpg"}):
        refused = reply(api, conversation, **body)
        assert refused.status_code == 409
        assert "only allows an approved template message: choose a template" in refused.json["error"]
        assert refused.json["window"]["needs_template"] is True
    assert db.session.query(ConversationMessage).filter_by(direction="out").count() == 0
    assert not graph.sent(f"{PHONE_ID}/messages")

    assert inbox.sync_templates(db.session.get(Integration, accounts.whatsapp_id)) == 1
    response = reply(api, conversation, template={"name": "appointment_reminder", "language": "en_US",
                                                  "parameters": ["Jane", "10:00"]})
    assert response.status_code == 202, response.json
    run_jobs()
    [send] = graph.sent(f"{PHONE_ID}/messages")
    assert send.body["to"] == WA_ID and send.body["type"] == "template"
    assert send.body["template"] == {"name": "appointment_reminder", "language": {"code": "en_US"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Jane"}, {"type": "text", "text": "10:00"}]}]}
    assert send.body["biz_opaque_callback_data"] == f"inbox-{response.json['id']}"
    message = stored(response.json["id"])
    assert (message.kind, message.text, message.status) == ("template", "Hi Jane, your appointment is at 10:00.",
                                                            "sent")
    assert message.template == {"name": "appointment_reminder", "language": "en_US", "parameters": ["Jane", "10:00"]}


def test_template_requests_are_checked_against_the_synced_approved_templates(app, api, accounts, graph, run_jobs):
    graph.templates = [APPOINTMENT, {**APPOINTMENT, "name": "summer_sale", "status": "REJECTED", "id": "2"}]
    conversation = conversation_on(app, accounts, run_jobs, "whatsapp")
    assert inbox.sync_templates(db.session.get(Integration, accounts.whatsapp_id)) == 2
    cases = [
        ({"name": "appointment_reminder", "language": "en_US", "parameters": ["Jane"]},
         "takes 2 parameters; 1 given"),
        ({"name": "summer_sale", "language": "en_US", "parameters": ["Jane", "10:00"]}, "is rejected, not approved"),
        ({"name": "no_such", "language": "en_US", "parameters": []}, "is not among the synced templates"),
        ({"name": "appointment_reminder", "language": "en_US", "parameters": [{"x": 1}]}, "Parameters are a list"),
        ({"language": "en_US"}, "A template needs a name."),
        ("appointment_reminder", 'Give {"name", "language", "parameters"}.'),
    ]
    for template, words in cases:
        response = reply(api, conversation, template=template)
        assert response.status_code == 400, template
        assert any(words in error for error in response.json["errors"]["template"]), response.json
    messenger = conversation_on(app, accounts, run_jobs, "messenger")
    refused = reply(api, messenger, template={"name": "appointment_reminder", "language": "en_US",
                                              "parameters": ["a", "b"]})
    assert refused.status_code == 400 and refused.json["errors"]["template"] == [
        "Templates are for WhatsApp conversations only."]
    templates = api.get(f"/api/conversations/{conversation.id}/templates/").json
    assert [(t["name"], t["parameter_count"], t["body"]) for t in templates] == [
        ("appointment_reminder", 2, "Hi {{1}}, your appointment is at {{2}}.")]
    assert db.session.query(ConversationMessage).filter_by(direction="out").count() == 0


@pytest.mark.parametrize("body, field", [
    ({}, "text"), ({"text": "   "}, "text"), ({"text": 42}, "text"), ({"text": "x" * 2001}, "text"),
    ({"text": "hi", "subject": "no"}, "subject"), ({"media_url": "http://cdn.example.com/a.jpg"}, "media_url"),
    ({"media_url": "https:///nohost"}, "media_url"), ({"text": "Caption", "media_url": "https://cdn.example.com/a.jpg"},
                                                      "text"),
])
def test_bad_replies_get_errors_by_field_and_change_nothing(app, api, accounts, graph, run_jobs, body, field):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    response = reply(api, conversation, **body)
    assert response.status_code == 400 and field in response.json["errors"], response.json
    assert db.session.query(ConversationMessage).filter_by(direction="out").count() == 0


def test_a_reply_that_is_not_json_is_a_400(app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    response = api.post(f"/api/conversations/{conversation.id}/messages/", data="text=hi",
                        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "body" in response.json["errors"]


def test_another_organisations_conversation_is_404(app, api, other_api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    assert other_api.get(f"/api/conversations/{conversation.id}/").status_code == 404
    assert other_api.post(f"/api/conversations/{conversation.id}/messages/", json={"text": "hi"}).status_code == 404
    assert other_api.post(f"/api/conversations/{conversation.id}/read/").status_code == 404
    assert other_api.get(f"/api/conversations/{conversation.id}/templates/").status_code == 404
    assert other_api.get("/api/conversations/").json["total"] == 0
    assert api.get("/api/conversations/99999999999/").status_code == 404
    assert db.session.query(ConversationMessage).filter_by(direction="out").count() == 0


# --- media ------------------------------------------------------------------------------------------------

def test_media_by_link(app, api, accounts, graph, run_jobs):
    messenger = conversation_on(app, accounts, run_jobs, "messenger")
    whatsapp = conversation_on(app, accounts, run_jobs, "whatsapp")
    assert reply(api, messenger, media_url="https://cdn.example.com/menu.png").status_code == 202
    assert reply(api, whatsapp, media_url="https://cdn.example.com/price-list.pdf", text="Our prices").status_code == 202
    run_jobs()
    [to_messenger] = [r for r in graph.sent("me/messages") if "message" in (r.body or {})]
    assert to_messenger.body["message"]["attachment"] == {"type": "image", "payload": {
        "url": "https://cdn.example.com/menu.png", "is_reusable": True}}
    [to_whatsapp] = graph.sent(f"{PHONE_ID}/messages")
    assert to_whatsapp.body["type"] == "document"
    assert to_whatsapp.body["document"] == {"link": "https://cdn.example.com/price-list.pdf",
                                            "filename": "price-list.pdf", "caption": "Our prices"}
    sent = db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")
                              .order_by(ConversationMessage.id)).all()
    assert [(m.kind, m.text, m.status) for m in sent] == [("image", "Photo", "sent"), ("document", "Our prices", "sent")]


def test_an_upload_goes_to_whatsapp_by_media_upload_and_to_messenger_by_a_signed_link(app, admin, accounts, graph,
                                                                                      run_jobs):
    whatsapp = conversation_on(app, accounts, run_jobs, "whatsapp")
    photo = b"\xff\xd8\xff\xe0 a real enough jpeg"
    message, errors, refusal = inbox.send_reply(whatsapp, admin, {"text": "Here it is"},
                                                upload=inbox.Upload(photo, "../../etc/shop front.jpg", "image/jpeg"))
    assert not errors and not refusal
    assert message.media["filename"] == "shop front.jpg" and message.media["storage_key"].endswith(".jpg")
    run_jobs()
    [upload] = graph.sent(f"{PHONE_ID}/media")
    assert upload.files["file"] == ("shop front.jpg", photo, "image/jpeg")
    assert upload.headers["Authorization"] == "Bearer EAAGwhatsapp"
    [send] = graph.sent(f"{PHONE_ID}/messages")
    media_id = next(iter(graph.uploads))
    assert send.body["type"] == "image" and send.body["image"] == {"id": media_id, "caption": "Here it is"}
    assert stored(message.id).status == "sent"

    messenger = conversation_on(app, accounts, run_jobs, "messenger")
    leaflet = b"%PDF-1.7 opening hours"
    message, errors, _ = inbox.send_reply(messenger, admin, {}, upload=inbox.Upload(leaflet, "hours.pdf",
                                                                                    "application/pdf"))
    assert not errors
    run_jobs()
    [send] = [r for r in graph.sent("me/messages") if "message" in (r.body or {})]
    attachment = send.body["message"]["attachment"]
    assert attachment["type"] == "file"
    link = attachment["payload"]["url"]
    assert link.startswith("https://switchboard.example.com/media/shared/")
    fetched = app.test_client().get(link.removeprefix("https://switchboard.example.com"))  # as Meta fetches it
    assert fetched.status_code == 200 and fetched.data == leaflet
    assert fetched.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert app.test_client().get(link.removeprefix("https://switchboard.example.com") + "x").status_code == 404


def test_uploads_over_the_limit_are_refused(app, admin, accounts, graph, run_jobs, monkeypatch):
    monkeypatch.setitem(app.config, "MEDIA_MAX_BYTES", 10)
    conversation = conversation_on(app, accounts, run_jobs, "whatsapp")
    message, errors, _ = inbox.send_reply(conversation, admin, {}, upload=inbox.Upload(b"x" * 11, "a.pdf",
                                                                                       "application/pdf"))
    assert message is None and "larger than" in errors["upload"][0]
    _, errors, _ = inbox.send_reply(conversation, admin, {}, upload=inbox.Upload(b"", "a.pdf", "application/pdf"))
    assert errors == {"upload": ["The file is empty."]}


# --- failures, retries and echoes -------------------------------------------------------------------------

def test_a_rate_limited_send_is_retried_with_backoff_and_sent_once(app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    graph.fail(PSID, graph_error("(#613) Calls to this api have exceeded the rate limit.", 613))
    response = reply(api, conversation, text="Thanks!")
    run_jobs()
    message = stored(response.json["id"])
    assert message.status == "queued" and message.attempts == 1
    assert "rate limiting" in message.error and message.error.endswith("Will try again.")
    registry = ScheduledJobRegistry(queue=task_queue())
    assert registry.get_job_ids() == [f"inbox-reply-{message.id}"]  # RQ's Retry holds it, with backoff
    run_due_retries(app)
    message = stored(message.id)
    assert (message.status, message.attempts, message.error) == ("sent", 2, None)
    assert len([r for r in graph.sent("me/messages") if "message" in (r.body or {})]) == 2


def test_errors_that_a_retry_cannot_fix_fail_the_reply_in_plain_words(app, api, accounts, graph, run_jobs):
    whatsapp = conversation_on(app, accounts, run_jobs, "whatsapp")
    graph.fail(WA_ID, REENGAGEMENT)
    failed = reply(api, whatsapp, text="Hello")  # our window says open; WhatsApp disagrees
    run_jobs()
    message = stored(failed.json["id"])
    assert message.status == "failed" and message.error.startswith("More than 24 hours have passed")
    assert "(WhatsApp error 131047)" in message.error and message.attempts == 1

    messenger = conversation_on(app, accounts, run_jobs, "messenger")
    graph.fail(PSID, EXPIRED)
    failed = reply(api, messenger, text="Hello")
    run_jobs()
    message = stored(failed.json["id"])
    assert message.status == "failed"
    assert message.error.startswith("The access token has expired or is invalid: reconnect needed (the token has expired)")
    page = db.session.get(Integration, accounts.messenger_id)
    assert page.needs_reconnect is True
    refused = reply(api, messenger, text="again")
    assert refused.status_code == 409 and "needs to be reconnected" in refused.json["error"]


def test_a_reply_queued_while_redis_is_down_is_sent_by_the_sweep(app, api, accounts, graph, run_jobs, monkeypatch):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")
    app.extensions.pop("redis", None)
    response = reply(api, conversation, text="Hello")
    assert response.status_code == 202
    monkeypatch.setitem(app.config, "REDIS_URL", app.config["RATELIMIT_STORAGE_URI"])
    app.extensions.pop("redis", None)
    message = stored(response.json["id"])
    message.updated_at = utcnow() - timedelta(minutes=3)
    db.session.commit()
    assert inbox.sweep()["inbox_replies"] == 1
    run_jobs()
    assert stored(message.id).status == "sent"


def test_a_send_a_dead_worker_left_half_done_fails_without_a_second_send(app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    message = stored(reply(api, conversation, text="Hello").json["id"])
    message.status, message.updated_at = "sending", utcnow() - timedelta(minutes=11)
    db.session.commit()
    assert inbox.sweep()["inbox_interrupted"] == 1
    run_jobs()
    message = stored(message.id)
    assert message.status == "failed" and "not sent again" in message.error
    assert not [r for r in graph.sent("me/messages") if "message" in (r.body or {})]


def test_the_echo_of_our_own_reply_is_not_stored_twice(app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "messenger")
    response = reply(api, conversation, text="We open at 9")
    run_jobs()
    echo = messenger_item("We open at 9", mid="m_sent1", sender=PAGE_ID, recipient=PSID,
                          timestamp_ms=int(time.time() * 1000), is_echo=True, app_id="1234567890123",
                          metadata=f"inbox-{response.json['id']}")
    post(app, accounts, page_notification(echo))
    run_jobs()
    out = db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).all()
    assert [(m.id, m.provider_message_id) for m in out] == [(response.json["id"], "m_sent1")]


def test_an_instagram_echo_that_races_the_send_gives_way_to_the_reply(app, api, accounts, graph, run_jobs):
    conversation = conversation_on(app, accounts, run_jobs, "instagram")
    response = reply(api, conversation, text="Yes")
    # Meta's echo is processed before the send job records the mid (no metadata on Instagram).
    echo = messenger_item("Yes", mid="m_sent1", sender=IG_ID, recipient=IGSID, timestamp_ms=int(time.time() * 1000),
                          is_echo=True)
    post(app, accounts, page_notification(echo, page_id=IG_ID, obj="instagram"))
    row = db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id.desc())).first()
    assert webhooks.process(row.id) == "processed"
    assert db.session.query(ConversationMessage).filter_by(direction="out").count() == 2
    run_jobs()
    out = db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).all()
    assert [(m.id, m.provider_message_id, m.status) for m in out] == [(response.json["id"], "m_sent1", "sent")]


# --- read state -------------------------------------------------------------------------------------------

def test_opening_a_conversation_marks_it_read_at_the_provider(app, api, accounts, graph, run_jobs):
    whatsapp = conversation_on(app, accounts, run_jobs, "whatsapp")
    post(app, accounts, whatsapp_notification(messages=[wa_message("text", {"body": "Are you there?"},
                                                                   wamid="wamid.IN2", timestamp=int(time.time()))]))
    run_jobs()
    assert api.get(f"/api/conversations/{whatsapp.id}/").json["unread_count"] == 2
    response = api.post(f"/api/conversations/{whatsapp.id}/read/")
    assert response.status_code == 202 and response.json == {"unread_count": 0, "marking_read_at_provider": True}
    run_jobs()
    [read] = graph.sent(f"{PHONE_ID}/messages")
    assert read.body == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN2"}
    inbound = db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "in")).all()
    assert {m.status for m in inbound} == {"read"}
    assert api.get(f"/api/conversations/{whatsapp.id}/").json["unread_count"] == 0
    # Opened again with nothing new: no call to Meta.
    assert api.post(f"/api/conversations/{whatsapp.id}/read/").json["marking_read_at_provider"] is False

    messenger = conversation_on(app, accounts, run_jobs, "messenger")
    assert inbox.open_conversation(messenger) is True
    run_jobs()
    [seen] = [r for r in graph.sent("me/messages") if "sender_action" in (r.body or {})]
    assert seen.body == {"recipient": {"id": PSID}, "sender_action": "mark_seen"}
    assert seen.args["access_token"] == "EAAGpage"


def test_the_window_function_the_inbox_shows(app, accounts, graph, run_jobs):
    whatsapp = conversation_on(app, accounts, run_jobs, "whatsapp", hours_ago=3)
    open_window = inbox.window(whatsapp)
    assert (open_window.state, open_window.reason) == ("open", None)
    assert open_window.closes_at == whatsapp.last_inbound_at + timedelta(hours=24)
    later = inbox.window(whatsapp, now=whatsapp.last_inbound_at + timedelta(hours=24, seconds=1))
    assert later.state == "template_only" and later.needs_template and "Jane Doe" in later.reason
    assert inbox.serialize_window(later)["open"] is False

    messenger = conversation_on(app, accounts, run_jobs, "messenger")
    at = messenger.last_inbound_at
    assert inbox.window(messenger, now=at + timedelta(hours=23)).messaging_type == "RESPONSE"
    assert inbox.window(messenger, now=at + timedelta(days=6, hours=23)).state == "human_agent"
    assert inbox.window(messenger, now=at + timedelta(days=7)).state == "closed"
