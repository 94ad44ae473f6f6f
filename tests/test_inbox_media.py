"""Inbound media: fetched by a job from Meta (WhatsApp's media URL with the Bearer token, Messenger's
attachment address), kept through the storage interface (a folder, and S3 through moto), retried
while Meta fails, refused over the size limit, and served only to the organisation's people."""
import time
from datetime import timedelta

import boto3
import pytest
from sqlalchemy import select
from werkzeug import Response

from app.extensions import db
from app.models import ConversationMessage, utcnow
from app.services import inbox
from app.storage import storage
from tests.conftest import Browser
from tests.graph_messaging_fake import (  # noqa: F401  (fixtures)
    accounts,
    graph,
    messenger_item,
    page_notification,
    post,
    wa_message,
    whatsapp_notification,
)
from tests.test_inbox_replies import run_due_retries

PNG = b"\x89PNG\r\n\x1a\n a small picture"


def whatsapp_image(app, accounts, run_jobs, media_id="img1", wamid="wamid.IMG", kind="image", mime="image/png",
                   **content):
    post(app, accounts, whatsapp_notification(messages=[
        wa_message(kind, {"id": media_id, "mime_type": mime, **content}, wamid=wamid, timestamp=int(time.time()))]))
    run_jobs()
    db.session.expire_all()
    return db.session.scalars(select(ConversationMessage).where(ConversationMessage.provider_message_id == wamid)).one()


def test_whatsapp_media_is_stored_and_served_to_the_organisation_only(app, api, other_api, browser, other_admin,
                                                                      accounts, graph, run_jobs):
    graph.media["img1"] = (PNG, "image/png")
    message = whatsapp_image(app, accounts, run_jobs)
    assert message.media["status"] == "stored" and message.media["size"] == len(PNG)
    assert message.media["storage_key"].startswith(f"media/{accounts.organization_id}/{message.conversation_id}/")
    assert "url" not in message.media  # Meta's address expires: the stored copy is what counts

    page = browser.get(f"/inbox/media/{message.id}")
    assert page.status_code == 200 and page.data == PNG and page.mimetype == "image/png"
    assert page.headers["Content-Disposition"] == "inline"
    assert page.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    stranger = Browser(app.test_client()).login(other_admin.email)
    assert stranger.get(f"/inbox/media/{message.id}").status_code == 404
    assert app.test_client().get(f"/inbox/media/{message.id}").status_code == 302  # to the sign-in page

    detail = api.get(f"/api/conversations/{message.conversation_id}/").json
    media = detail["messages"][0]["media"]
    assert media["stored"] is True and media["mime_type"] == "image/png" and "storage_key" not in media
    fetched = api.get(media["url"])
    assert fetched.status_code == 200 and fetched.data == PNG
    assert other_api.get(media["url"]).status_code == 404
    assert api.get(f"/api/conversations/{message.conversation_id}/messages/{message.id + 999}/media").status_code == 404


def test_files_that_could_run_in_our_origin_are_only_offered_as_downloads(app, browser, accounts, graph, run_jobs):
    graph.media["doc1"] = (b"<script>alert(1)</script>", "text/html")
    message = whatsapp_image(app, accounts, run_jobs, media_id="doc1", kind="document", mime="text/html",
                             filename='invoice".html\r\nX-Evil: 1')
    page = browser.get(f"/inbox/media/{message.id}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Disposition"] == 'attachment; filename="invoice_.html__X-Evil_ 1"'
    assert "X-Evil" not in page.headers


def test_a_failing_download_is_retried_then_kept(app, accounts, graph, run_jobs):
    graph.media["img1"] = (PNG, "image/png")
    graph.fail("img1", Response("upstream error", status=502))
    message = whatsapp_image(app, accounts, run_jobs)
    assert message.media["status"] == "pending" and message.media["attempts"] == 1
    assert "server error (HTTP 502)" in message.media["error"] and message.media["error"].endswith("Will try again.")
    run_due_retries(app)
    message = db.session.get(ConversationMessage, message.id)
    assert message.media["status"] == "stored" and "error" not in message.media and message.media["attempts"] == 2
    # Each attempt asked Graph for a fresh address: it is valid for five minutes only.
    assert len([r for r in graph.sent("img1", method="GET") if r.path == "img1"]) == 2


def test_a_download_that_keeps_failing_ends_with_the_reason(app, accounts, graph, run_jobs):
    graph.media["img1"] = (PNG, "image/png")
    graph.fail("img1", *[Response("busy", status=503)] * inbox.MAX_MEDIA_ATTEMPTS)
    message = whatsapp_image(app, accounts, run_jobs)
    for _ in range(inbox.MAX_MEDIA_ATTEMPTS - 1):
        run_due_retries(app)
    message = db.session.get(ConversationMessage, message.id)
    assert message.media["status"] == "failed"
    assert message.media["error"].startswith(f"Gave up after {inbox.MAX_MEDIA_ATTEMPTS} attempts")


def test_files_over_the_size_limit_are_not_kept(app, accounts, graph, run_jobs, monkeypatch):
    monkeypatch.setitem(app.config, "MEDIA_MAX_BYTES", 8)
    graph.media["img1"] = (PNG, "image/png")
    message = whatsapp_image(app, accounts, run_jobs)
    assert message.media["status"] == "failed" and message.media["attempts"] == 1
    assert message.media["error"] == "The file is larger than the 8 bytes limit for media kept in Switchboard."
    assert not graph.sent("wa-files/img1", method="GET")  # refused on the size Graph announced
    # A Messenger file has no announced size: the download stops past the limit.
    big = graph.cdn_url("big.jpg", b"x" * 100, "image/jpeg")
    post(app, accounts, page_notification(messenger_item(None, mid="m_big", timestamp_ms=int(time.time() * 1000),
                                                         attachments=[{"type": "image", "payload": {"url": big}}])))
    run_jobs()
    db.session.expire_all()
    found = db.session.scalars(select(ConversationMessage).where(ConversationMessage.provider_message_id == "m_big")).one()
    assert found.media["status"] == "failed" and "larger than the" in found.media["error"]


def test_an_expired_messenger_address_fails_in_words(app, accounts, graph, run_jobs):
    gone = f"{graph.base_url}/cdn/expired.jpg?oh=old"
    post(app, accounts, page_notification(messenger_item(None, mid="m_old", timestamp_ms=int(time.time() * 1000),
                                                         attachments=[{"type": "image", "payload": {"url": gone}}])))
    run_jobs()
    db.session.expire_all()
    message = db.session.scalars(select(ConversationMessage)).one()
    assert message.media["status"] == "failed" and "HTTP 404" in message.media["error"]


def test_a_download_whose_job_was_lost_is_queued_again_by_the_sweep(app, accounts, graph, run_jobs, monkeypatch):
    graph.media["img1"] = (PNG, "image/png")
    with monkeypatch.context() as lost:
        lost.setattr(inbox, "queue_followups", lambda followups: None)  # as if Redis lost the job
        message = whatsapp_image(app, accounts, run_jobs)
    assert message.media["status"] == "pending"
    message.updated_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    assert inbox.sweep()["inbox_media"] == 1
    run_jobs()
    db.session.expire_all()
    assert db.session.get(ConversationMessage, message.id).media["status"] == "stored"


@pytest.fixture
def s3_media(app, monkeypatch, moto_endpoint):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret")
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", moto_endpoint)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket="inbox-media")
    monkeypatch.setitem(app.config, "MEDIA_STORAGE_URL", "s3://inbox-media/switchboard")
    app.extensions.pop("media_storage", None)
    yield client
    app.extensions.pop("media_storage", None)


def test_media_kept_in_s3(app, browser, admin, accounts, graph, run_jobs, s3_media):
    picture = graph.cdn_url("photo.jpg", b"\xff\xd8 jpeg in s3", "image/jpeg")
    post(app, accounts, page_notification(messenger_item(None, mid="m_s3", timestamp_ms=int(time.time() * 1000),
                                                         attachments=[{"type": "image", "payload": {"url": picture}}])))
    run_jobs()
    db.session.expire_all()
    message = db.session.scalars(select(ConversationMessage)).one()
    key = message.media["storage_key"]
    assert message.media["status"] == "stored" and key.endswith(".jpg")
    kept = s3_media.get_object(Bucket="inbox-media", Key=f"switchboard/{key}")
    assert kept["Body"].read() == b"\xff\xd8 jpeg in s3" and kept["ContentType"] == "image/jpeg"
    page = browser.get(f"/inbox/media/{message.id}")
    assert page.status_code == 200 and page.data == b"\xff\xd8 jpeg in s3"
    # An upload sent by link gets a presigned address of the store.
    conversation = db.session.get(ConversationMessage, message.id).conversation_id
    from app.models import Conversation
    sent, errors, _ = inbox.send_reply(db.session.get(Conversation, conversation), admin, {},
                                       upload=inbox.Upload(b"%PDF menu", "menu.pdf", "application/pdf"))
    assert not errors
    run_jobs()
    [send] = [r for r in graph.sent("me/messages") if "message" in (r.body or {})]
    link = send.body["message"]["attachment"]["payload"]["url"]
    assert "X-Amz-Signature=" in link and "/inbox-media/switchboard/media/" in link
    import requests
    assert requests.get(link, timeout=5).content == b"%PDF menu"
    assert storage().get(sent.media["storage_key"]).content_type == "application/pdf"
