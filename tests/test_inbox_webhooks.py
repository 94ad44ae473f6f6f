"""The organisation's Meta webhook address: Meta's handshake, signed notifications stored first and
processed by a real RQ worker into conversations; forged, replayed, stale, malformed, oversize and
misaddressed posts refused without storing anything. Graph (profiles, media) is a real HTTP server."""
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Contact, ContactEvent, Conversation, ConversationMessage, Message, WebhookEvent, utcnow
from app.services import webhooks
from tests.graph_messaging_fake import (  # noqa: F401  (fixtures)
    IG_ID,
    IGSID,
    PAGE_ID,
    PSID,
    WA_ID,
    accounts,
    connect_accounts,
    graph,
    messenger_item,
    page_notification,
    post,
    sign,
    wa_message,
    wa_status,
    whatsapp_notification,
)


def now_ms() -> int:
    return int(time.time() * 1000)


def text_from_jane(text="Hello there", mid="m_in1", at=None):
    return page_notification(messenger_item(text, mid=mid, timestamp_ms=at or now_ms()))


def messages(conversation_id=None):
    query = select(ConversationMessage).order_by(ConversationMessage.id)
    if conversation_id:
        query = query.where(ConversationMessage.conversation_id == conversation_id)
    db.session.expire_all()
    return db.session.scalars(query).all()


def only_conversation() -> Conversation:
    db.session.expire_all()
    return db.session.scalars(select(Conversation)).one()


# --- the handshake -----------------------------------------------------------------------------------

def test_meta_handshake_answers_the_challenge_with_the_apps_verify_token(app, accounts):
    client = app.test_client()
    good = {"hub.mode": "subscribe", "hub.verify_token": accounts.verify_token, "hub.challenge": "1158201444"}
    response = client.get(accounts.path, query_string=good)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "1158201444"
    assert client.get(accounts.path, query_string={**good, "hub.verify_token": "guess"}).status_code == 403
    assert client.get(accounts.path, query_string={**good, "hub.mode": "unsubscribe"}).status_code == 403
    assert client.get(accounts.path, query_string={**good, "hub.challenge": "<script>"}).status_code == 400
    assert client.get("/api/webhooks/meta/no-such-app/", query_string=good).status_code == 404
    assert client.get(accounts.path).status_code == 405
    assert db.session.query(WebhookEvent).count() == 0


# --- intake: store first, once -------------------------------------------------------------------------

def test_a_signed_messenger_message_is_stored_then_becomes_a_conversation_with_a_named_contact(
        app, accounts, graph, run_jobs):
    body = text_from_jane()
    response = post(app, accounts, body)
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    row = db.session.query(WebhookEvent).one()
    assert (row.status, row.meta_app_id, row.integration_id, row.body) == ("pending", accounts.meta_app_id, None, body)
    assert row.headers["x-hub-signature-256"].startswith("sha256=")
    assert db.session.query(Conversation).count() == 0  # nothing processed before the answer

    run_jobs()
    conversation = only_conversation()
    assert (conversation.channel, conversation.integration_id, conversation.external_user_id) == (
        "messenger", accounts.messenger_id, PSID)
    assert conversation.unread_count == 1 and conversation.last_message_preview == "Hello there"
    assert conversation.last_inbound_at is not None and conversation.last_message_at == conversation.last_inbound_at
    [message] = messages()
    assert (message.direction, message.kind, message.text, message.provider_message_id, message.status) == (
        "in", "text", "Hello there", "m_in1", "received")
    # The profile job named the conversation and its contact, found by the page-scoped id.
    assert conversation.name == "Jane Doe"
    profile_call = graph.sent(PSID, method="GET")[0]
    assert profile_call.args["fields"] == "first_name,last_name,name,profile_pic"
    assert profile_call.args["access_token"] == "EAAGpage"
    contact = db.session.get(Contact, conversation.contact_id)
    assert (contact.name, contact.first_name, contact.last_name, contact.source) == ("Jane Doe", "Jane", "Doe",
                                                                                    "messenger")
    assert contact.fields == {"messenger_psid": PSID, "facebook_page_id": PAGE_ID}
    kinds = [e.kind for e in db.session.scalars(select(ContactEvent).where(ContactEvent.contact_id == contact.id))]
    assert kinds == ["created", "conversation"]
    assert db.session.get(WebhookEvent, row.id).status == "processed"


def test_a_replayed_delivery_is_stored_once_and_a_message_in_another_delivery_counts_once(app, accounts, graph,
                                                                                          run_jobs):
    at = now_ms()
    body = text_from_jane(at=at)
    assert post(app, accounts, body).json == {"status": "accepted"}
    assert post(app, accounts, body).json == {"status": "duplicate"}
    assert db.session.query(WebhookEvent).count() == 1
    # The same mid inside a different notification (Meta batches differently on a retry).
    other = page_notification(messenger_item("Hello there", mid="m_in1", timestamp_ms=at),
                              messenger_item("Second", mid="m_in2", timestamp_ms=at + 1))
    assert post(app, accounts, other).json == {"status": "accepted"}
    run_jobs()
    assert [m.provider_message_id for m in messages()] == ["m_in1", "m_in2"]
    conversation = only_conversation()
    assert conversation.unread_count == 2 and conversation.last_message_preview == "Second"
    assert len(graph.sent(PSID, method="GET")) == 1  # the profile is fetched once, for the new conversation


@pytest.mark.parametrize("case", ["forged", "unsigned", "tampered", "sha1 only", "not json", "no entries",
                                  "not an object", "stale"])
def test_refused_posts_store_nothing(app, accounts, graph, run_jobs, case):
    body = text_from_jane()
    headers = sign(body)
    if case == "forged":
        headers = sign(body, "not-the-app-secret")
    elif case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "tampered":
        body = body.replace(b"Hello there", b"Pay me now!")
    elif case == "sha1 only":
        headers = {"Content-Type": "application/json", "X-Hub-Signature": "sha1=" + "0" * 40}
    elif case in ("not json", "no entries", "not an object"):
        body = {"not json": b"{not json", "no entries": b'{"object": "page"}', "not an object": b"[1, 2]"}[case]
        headers = sign(body)
    elif case == "stale":  # validly signed, but older than Meta ever retries: a replay
        body = text_from_jane(at=now_ms() - 8 * 24 * 3600 * 1000)
        headers = sign(body)
    response = post(app, accounts, body, headers)
    expected = 400 if case in ("not json", "no entries", "not an object") else 401
    assert response.status_code == expected and response.json["error"]
    assert db.session.query(WebhookEvent).count() == 0
    run_jobs()
    assert db.session.query(Conversation).count() == 0


def test_an_oversize_body_is_refused(app, accounts):
    body = page_notification(*[messenger_item("x" * 1000, mid=f"m_big{n}", timestamp_ms=now_ms()) for n in range(1100)])
    assert len(body) > 1024 * 1024
    assert post(app, accounts, body).status_code == 413
    assert db.session.query(WebhookEvent).count() == 0


def test_unknown_addresses_and_another_organisations_app(app, accounts, other_admin, graph, run_jobs):
    body = text_from_jane()
    client = app.test_client()
    assert client.post("/api/webhooks/meta/no-such-app/", data=body, headers=sign(body)).status_code == 404
    assert client.post("/api/webhooks/meta/" + "x" * 300 + "/", data=body, headers=sign(body)).status_code == 404
    # Globex connected the same Page with its own app: our signature does not open its address...
    theirs = connect_accounts(other_admin.organization_id, app_secret="globex-secret")
    assert client.post(theirs.path, data=body, headers=sign(body)).status_code == 401
    assert db.session.query(WebhookEvent).count() == 0
    # ...and what arrives at ours lands in our organisation only.
    post(app, accounts, body)
    run_jobs()
    assert only_conversation().organization_id == accounts.organization_id


def test_an_app_without_a_secret_refuses_everything(app, accounts):
    from app.models import MetaApp
    db.session.get(MetaApp, accounts.meta_app_id).secrets_ciphertext = None
    db.session.commit()
    response = post(app, accounts, text_from_jane())
    assert response.status_code == 401 and "no app secret" in response.json["error"]


def test_a_secret_that_cannot_be_decrypted_asks_meta_to_retry(app, accounts):
    from cryptography.fernet import Fernet

    from app.models import MetaApp
    db.session.get(MetaApp, accounts.meta_app_id).secrets_ciphertext = Fernet(Fernet.generate_key()).encrypt(
        b'{"app_secret": "x"}').decode()  # encrypted with a key ENCRYPTION_KEYS no longer holds
    db.session.commit()
    response = post(app, accounts, text_from_jane())
    assert response.status_code == 503 and db.session.query(WebhookEvent).count() == 0


def test_notifications_are_kept_while_redis_is_down_and_processed_by_the_sweep(app, accounts, graph, run_jobs,
                                                                             monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")
    app.extensions.pop("redis", None)
    assert post(app, accounts, text_from_jane()).json == {"status": "accepted"}
    assert db.session.query(WebhookEvent).filter_by(status="pending").count() == 1
    monkeypatch.setitem(app.config, "REDIS_URL", app.config["RATELIMIT_STORAGE_URI"])
    app.extensions.pop("redis", None)
    assert webhooks.sweep() == 1
    run_jobs()  # the profile job queued by processing
    assert only_conversation().name == "Jane Doe"
    assert db.session.query(WebhookEvent).one().status == "processed"


# --- Messenger -----------------------------------------------------------------------------------------

def test_messenger_attachments_quick_replies_and_postbacks(app, accounts, graph, run_jobs):
    photo = graph.cdn_url("photo.jpg", b"\xff\xd8jpeg-bytes", "image/jpeg")
    leaflet = graph.cdn_url("leaflet.pdf", b"%PDF-1.7 leaflet", "application/pdf")
    at = now_ms()
    body = page_notification(
        messenger_item(None, mid="m_att", timestamp_ms=at, attachments=[
            {"type": "image", "payload": {"url": photo}}, {"type": "file", "payload": {"url": leaflet}}]),
        messenger_item("Book a table", mid="m_qr", timestamp_ms=at + 1, quick_reply={"payload": "BOOK"}),
        {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": at + 2,
         "postback": {"title": "Opening hours", "payload": "HOURS", "mid": "m_pb"}},
        {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": at + 3,
         "postback": {"title": "Get started", "payload": "START"}})
    post(app, accounts, body)
    run_jobs()
    found = [(m.provider_message_id, m.kind, m.text) for m in messages()]
    assert found == [("m_att", "image", "Photo, File"), ("m_att#2", "file", "File"),
                     ("m_qr", "text", "Book a table"), ("m_pb", "postback", "Tapped “Opening hours”"),
                     (f"postback:{PSID}:{at + 3}", "postback", "Tapped “Get started”")]
    image, document = messages()[:2]
    assert image.media["status"] == "stored" and image.media["mime_type"] == "image/jpeg"
    assert document.media["status"] == "stored" and document.media["size"] == len(b"%PDF-1.7 leaflet")
    assert only_conversation().unread_count == 5
    # A retry of the postback without a mid adds nothing.
    post(app, accounts, page_notification({"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": at + 3,
                                           "postback": {"title": "Get started", "payload": "START"}}, time_ms=at + 9))
    run_jobs()
    assert len(messages()) == 5


def test_echoes_from_metas_inbox_are_stored_once_as_outbound_and_deliveries_and_reads_tick(app, accounts, graph,
                                                                                           run_jobs):
    at = now_ms()
    post(app, accounts, text_from_jane(at=at))
    echo = messenger_item("We open at 9", mid="m_echo1", sender=PAGE_ID, recipient=PSID, timestamp_ms=at + 1000,
                          is_echo=True, app_id="263902037430900")
    post(app, accounts, page_notification(echo))
    post(app, accounts, page_notification(echo, time_ms=at + 5000))  # the echo again, in another delivery
    run_jobs()
    out = [m for m in messages() if m.direction == "out"]
    assert [(m.text, m.status, m.sent_by_id) for m in out] == [("We open at 9", "sent", None)]
    conversation = only_conversation()
    assert conversation.unread_count == 1 and conversation.last_message_preview == "You: We open at 9"

    delivery = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": at + 2000,
                "delivery": {"mids": ["m_echo1"], "watermark": at + 1500}}
    post(app, accounts, page_notification(delivery))
    run_jobs()
    assert messages()[-1].status == "delivered"
    read = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": at + 3000, "read": {"watermark": at + 3000}}
    post(app, accounts, page_notification(read))
    run_jobs()
    assert messages()[-1].status == "read"
    # A late delivery never undoes the read.
    post(app, accounts, page_notification({**delivery, "timestamp": at + 4000}))
    run_jobs()
    assert messages()[-1].status == "read"


# --- Instagram -------------------------------------------------------------------------------------------

def instagram(*items):
    return page_notification(*items, page_id=IG_ID, obj="instagram")


def test_instagram_messages_echoes_deletions_and_reads(app, accounts, graph, run_jobs):
    at = now_ms()
    reel = graph.cdn_url("reel.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    post(app, accounts, instagram(
        messenger_item("Is this in stock?", mid="ig_1", sender=IGSID, recipient=IG_ID, timestamp_ms=at),
        messenger_item(None, mid="ig_2", sender=IGSID, recipient=IG_ID, timestamp_ms=at + 1,
                       attachments=[{"type": "share", "payload": {"url": reel}}]),
        messenger_item(None, mid="ig_3", sender=IGSID, recipient=IG_ID, timestamp_ms=at + 2, is_unsupported=True),
        messenger_item("Yes, in blue", mid="ig_4", sender=IG_ID, recipient=IGSID, timestamp_ms=at + 3, is_echo=True)))
    run_jobs()
    conversation = only_conversation()
    assert (conversation.channel, conversation.integration_id, conversation.name) == (
        "instagram", accounts.instagram_id, "Ivy Grant")
    assert graph.sent(IGSID, method="GET")[0].args["fields"] == "name,username"
    contact = db.session.get(Contact, conversation.contact_id)
    assert contact.fields == {"instagram_id": IGSID, "instagram_username": "ivy.grant"}
    found = [(m.provider_message_id, m.direction, m.kind, m.text) for m in messages()]
    assert found == [("ig_1", "in", "text", "Is this in stock?"), ("ig_2", "in", "share", "Shared post"),
                     ("ig_3", "in", "unsupported", "A message type Meta does not pass on"),
                     ("ig_4", "out", "text", "Yes, in blue")]
    assert messages()[1].media["status"] == "stored"
    key = messages()[1].media["storage_key"]

    post(app, accounts, instagram(
        messenger_item(None, mid="ig_2", sender=IGSID, recipient=IG_ID, timestamp_ms=at + 10, is_deleted=True),
        {"sender": {"id": IGSID}, "recipient": {"id": IG_ID}, "timestamp": at + 11, "read": {"mid": "ig_4"}}))
    run_jobs()
    deleted = messages()[1]
    assert (deleted.kind, deleted.text, deleted.media) == ("deleted", "(deleted by the sender)", None)
    from app.storage import NotStored, storage
    with pytest.raises(NotStored):
        storage().get(key)
    assert messages()[3].status == "read"


# --- WhatsApp -----------------------------------------------------------------------------------------------

def test_every_whatsapp_message_type_is_stored_with_a_readable_text(app, accounts, graph, run_jobs):
    graph.media["img1"] = (b"\x89PNG image", "image/png")
    graph.media["voice1"] = (b"OggS voice", "audio/ogg")
    graph.media["vid1"] = (b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    at = int(time.time())
    kinds = [
        wa_message("text", {"body": "Hi, is the shop open?"}, wamid="wamid.t", timestamp=at),
        wa_message("image", {"id": "img1", "mime_type": "image/png", "sha256": "x", "caption": "This one"},
                   wamid="wamid.i", timestamp=at),
        wa_message("audio", {"id": "voice1", "mime_type": "audio/ogg; codecs=opus", "voice": True},
                   wamid="wamid.a", timestamp=at),
        wa_message("video", {"id": "vid1", "mime_type": "video/mp4"}, wamid="wamid.v", timestamp=at),
        wa_message("interactive", {"type": "list_reply", "list_reply": {"id": "r2", "title": "Tuesday 10:00",
                                                                        "description": "Morning slot"}},
                   wamid="wamid.lr", timestamp=at),
        wa_message("location", {"latitude": -33.8568, "longitude": 151.2153, "name": "Opera House",
                                "address": "Bennelong Point"}, wamid="wamid.l", timestamp=at),
        wa_message("contacts", None, wamid="wamid.c", timestamp=at, contacts=[
            {"name": {"formatted_name": "Tom Baker"}, "phones": [{"phone": "+1 650 555 0199"}]}]),
        wa_message("interactive", {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes please"}},
                   wamid="wamid.ir", timestamp=at),
        wa_message("button", {"payload": "STOP", "text": "Stop promotions"}, wamid="wamid.b", timestamp=at),
        wa_message("reaction", {"message_id": "wamid.t", "emoji": "👍"}, wamid="wamid.r", timestamp=at),
        wa_message("sticker", {"id": "stk1", "mime_type": "image/webp", "animated": False}, wamid="wamid.s",
                   timestamp=at),
        wa_message("unsupported", None, wamid="wamid.u", timestamp=at,
                   errors=[{"code": 131051, "title": "Message type unknown"}]),
    ]
    post(app, accounts, whatsapp_notification(messages=kinds, name="Jane Doe"))
    run_jobs()
    found = {m.provider_message_id: (m.kind, m.text) for m in messages()}
    assert found == {
        "wamid.t": ("text", "Hi, is the shop open?"),
        "wamid.i": ("image", "Photo: This one"),
        "wamid.a": ("audio", "Voice message"),
        "wamid.v": ("video", "Video"),
        "wamid.lr": ("interactive", "Chose “Tuesday 10:00”"),
        "wamid.l": ("location", "Location: Opera House, Bennelong Point (-33.8568, 151.2153)"),
        "wamid.c": ("contacts", "Shared contact: Tom Baker +1 650 555 0199"),
        "wamid.ir": ("interactive", "Chose “Yes please”"),
        "wamid.b": ("button", "Tapped “Stop promotions”"),
        "wamid.r": ("reaction", "Reacted 👍 to a message"),
        "wamid.s": ("sticker", "Sticker"),
        "wamid.u": ("unsupported", "A message type Meta does not pass on (Message type unknown)"),
    }
    conversation = only_conversation()
    assert (conversation.channel, conversation.external_user_id, conversation.name, conversation.unread_count) == (
        "whatsapp", WA_ID, "Jane Doe", 12)
    contact = db.session.get(Contact, conversation.contact_id)
    assert (contact.phone, contact.name, contact.source) == ("+16505551234", "Jane Doe", "whatsapp")
    by_id = {m.provider_message_id: m for m in messages()}
    assert by_id["wamid.v"].media["status"] == by_id["wamid.a"].media["status"] == "stored"
    image = by_id["wamid.i"].media
    assert (image["status"], image["mime_type"], image["caption"]) == ("stored", "image/png", "This one")
    from app.storage import storage
    assert storage().get(image["storage_key"]).data == b"\x89PNG image"
    media_call = graph.sent("img1", method="GET")[0]
    download = graph.sent("wa-files/img1", method="GET")[0]
    assert media_call.headers["Authorization"] == download.headers["Authorization"] == "Bearer EAAGwhatsapp"
    # The sticker's media id is unknown to Graph: recorded as failed, in words, without retrying a 4xx.
    sticker = by_id["wamid.s"].media
    assert sticker["status"] == "failed" and "does not exist" in sticker["error"]
    assert not graph.sent("wa-files/stk1", method="GET")
    # No profile lookups on WhatsApp: the name came with the message.
    assert not [r for r in graph.requests if r.args.get("fields", "").startswith("first_name")]


def test_a_whatsapp_conversation_links_to_the_existing_contact_with_that_phone(app, accounts, graph, run_jobs, api):
    created = api.post("/api/contacts/", json={"phone": "+1 650 555 1234", "name": "Jane Customer",
                                               "email": "jane@example.com"})
    assert created.status_code == 201
    post(app, accounts, whatsapp_notification(messages=[wa_message("text", {"body": "hi"}, wamid="wamid.1",
                                                                   timestamp=int(time.time()))], name="JD"))
    run_jobs()
    conversation = only_conversation()
    assert conversation.contact_id == created.json["id"] and conversation.name == "JD"
    assert db.session.get(Contact, conversation.contact_id).name == "Jane Customer"  # kept, not overwritten
    timeline = api.get(f"/api/contacts/{created.json['id']}/").json["timeline"]
    assert timeline[-1]["kind"] == "conversation" and "WhatsApp" in timeline[-1]["description"]


def send_through_pipeline(api, accounts, run_jobs, body="Your order shipped"):
    """A WhatsApp message of issue 3's outbound pipeline (API sends, campaigns)."""
    response = api.post("/api/messages/", json={"integration_id": accounts.whatsapp_id, "to": "+16505551234",
                                                "body": body})
    assert response.status_code == 202, response.json
    run_jobs()
    return db.session.get(Message, response.json["id"])


def test_whatsapp_statuses_move_inbox_replies_and_outbound_messages_forward_only(app, accounts, graph, run_jobs, api):
    at = int(time.time())
    post(app, accounts, whatsapp_notification(messages=[wa_message("text", {"body": "hi"}, wamid="wamid.in",
                                                                   timestamp=at)]))
    run_jobs()
    conversation = only_conversation()
    reply = api.post(f"/api/conversations/{conversation.id}/messages/", json={"text": "Hello Jane"})
    assert reply.status_code == 202
    run_jobs()
    ours = db.session.get(ConversationMessage, reply.json["id"])
    pipeline = send_through_pipeline(api, accounts, run_jobs)
    assert ours.status == pipeline.status == "sent"
    # read arrives before delivered: the furthest state stays.
    post(app, accounts, whatsapp_notification(statuses=[
        wa_status(ours.provider_message_id, "read", timestamp=at + 5),
        wa_status(pipeline.provider_message_id, "delivered", timestamp=at + 5)]))
    post(app, accounts, whatsapp_notification(statuses=[
        wa_status(ours.provider_message_id, "delivered", timestamp=at + 4),
        wa_status(pipeline.provider_message_id, "read", timestamp=at + 6)]))
    run_jobs()
    db.session.expire_all()
    assert db.session.get(ConversationMessage, ours.id).status == "read"
    pipeline = db.session.get(Message, pipeline.id)
    assert pipeline.status == "read"
    assert [e.kind for e in pipeline.events][-2:] == ["delivered", "read"]


def test_a_failed_whatsapp_status_says_why_in_plain_words(app, accounts, graph, run_jobs, api):
    pipeline = send_through_pipeline(api, accounts, run_jobs)
    error = {"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
             "error_data": {"details": "Message failed to send because more than 24 hours have passed since the "
                                       "customer last replied to this number."}}
    post(app, accounts, whatsapp_notification(statuses=[
        wa_status(pipeline.provider_message_id, "failed", timestamp=int(time.time()), errors=[error])]))
    run_jobs()
    db.session.expire_all()
    pipeline = db.session.get(Message, pipeline.id)
    assert pipeline.status == "failed"
    assert pipeline.last_error.startswith("Failed: More than 24 hours have passed since this customer last wrote")
    assert "(WhatsApp error 131047)" in pipeline.last_error


def test_a_status_for_an_unknown_message_waits_then_is_recorded_as_unmatched(app, accounts, graph, run_jobs):
    post(app, accounts, whatsapp_notification(statuses=[wa_status("wamid.NOTOURS", "delivered",
                                                                  timestamp=int(time.time()))]))
    run_jobs()
    row = db.session.query(WebhookEvent).one()
    assert row.status == "pending" and "wamid.NOTOURS" in row.error and "will try again" in row.error
    for _ in range(webhooks.MAX_PROCESSING_ATTEMPTS):
        webhooks.process(row.id)
        db.session.expire_all()
        row = db.session.get(WebhookEvent, row.id)
    assert row.status == "processed" and row.error == "No message matches wamid.NOTOURS."


# --- accounts that are not connected, and what the inbox leaves alone -------------------------------------

def test_entries_for_accounts_not_connected_are_ignored_and_leadgen_goes_to_lead_ads(app, accounts, graph, run_jobs):
    at = now_ms()
    body = json.dumps({"object": "page", "entry": [
        {"id": "999999999", "time": at, "messaging": [messenger_item("hi", mid="m_x", recipient="999999999",
                                                                     timestamp_ms=at)]},
        {"id": PAGE_ID, "time": at, "changes": [{"field": "leadgen", "value": {
            "leadgen_id": "444", "page_id": PAGE_ID, "form_id": "555", "created_time": at // 1000}}]},
        {"id": PAGE_ID, "time": at, "changes": [{"field": "feed", "value": {"item": "comment"}}]},
    ]}).encode()
    assert post(app, accounts, body).status_code == 200
    body = json.dumps({"object": "user", "entry": [{"id": "1", "time": at, "changed_fields": ["email"]}]}).encode()
    assert post(app, accounts, body).status_code == 200
    run_jobs()
    rows = db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
    assert [r.status for r in rows] == ["processed", "processed"]
    assert "Ignored: Messenger account 999999999 is not connected." in rows[0].error
    assert "Skipped a feed change." in rows[0].error
    assert "Lead Ads is switched off for this integration" in rows[0].error  # the Page takes no leads
    assert rows[1].error == "Skipped a notification of object 'user'."
    assert db.session.query(Conversation).count() == 0


def test_nul_characters_anywhere_in_a_notification_do_not_stop_processing(app, accounts, graph, run_jobs):
    post(app, accounts, text_from_jane("evil\u0000text"))
    post(app, accounts, whatsapp_notification(name="Ja\u0000ne", messages=[
        wa_message("te\u0000xt", {"body": "hi\u0000"}, wamid="wamid.\u0000n", timestamp=int(time.time()))]))
    run_jobs()
    assert [(m.kind, m.text, m.provider_message_id) for m in messages()] == [
        ("text", "eviltext", "m_in1"), ("text", "hi", "wamid.n")]
    assert db.session.query(WebhookEvent).filter_by(status="processed").count() == 2
    assert {c.name for c in db.session.scalars(select(Conversation))} == {"Jane Doe", "Jane"}


def test_a_person_writing_again_later_keeps_one_conversation_and_moves_the_window(app, accounts, graph, run_jobs):
    earlier = now_ms() - 30 * 3600 * 1000
    post(app, accounts, text_from_jane("first", mid="m_a", at=earlier))
    run_jobs()
    first_inbound = only_conversation().last_inbound_at
    post(app, accounts, text_from_jane("again", mid="m_b"))
    run_jobs()
    conversation = only_conversation()
    assert conversation.last_inbound_at > first_inbound + timedelta(hours=29)
    assert conversation.last_inbound_at <= utcnow()
    assert db.session.query(Contact).count() == 1


def test_a_profile_that_cannot_be_read_leaves_the_name_empty(app, accounts, graph, run_jobs):
    post(app, accounts, page_notification(messenger_item("hi", mid="m_anon", sender="1111222233334444",
                                                         timestamp_ms=now_ms())))
    run_jobs()
    conversation = only_conversation()
    assert conversation.name is None and conversation.contact_id is not None
    assert db.session.get(Contact, conversation.contact_id).fields["messenger_psid"] == "1111222233334444"
    assert [m.text for m in messages()] == ["hi"]
