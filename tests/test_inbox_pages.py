"""The inbox pages as a signed-in person sees them (server side): the list with its filters and
unread counts, a conversation with its history, media and ticks, the window in words, replies by
text, file, link and template with errors by field, polls that answer 204 until something
changes, read state, sync buttons with their progress, the daily figures, and 404 for another
organisation's conversations and accounts on every route.

Real parts: Meta's notifications are signed and posted to the real intake, jobs run in a real RQ
worker (burst mode), and Graph is a loopback server (tests/graph_messaging_fake.py)."""
from __future__ import annotations

import io
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select

from app.extensions import db
from app.models import Conversation, ConversationMessage, Integration, PlatformDailyStat, utcnow
from app.services import inbox
from app.services import integrations as svc
from app.services import inbox_pages as pages
from tests.conftest import csrf_token_from
from tests.graph_messaging_fake import (  # noqa: F401  (fixtures)
    EXPIRED_TOKEN,
    IG_ID,
    IGSID,
    WA_ID,
    accounts,
    connect_accounts,
    graph,
    messenger_item,
    page_notification,
    post,
    wa_message,
    wa_status,
    whatsapp_notification,
)
from tests.test_inbox_replies import APPOINTMENT

HTMX = {"HX-Request": "true"}
PNG = b"\x89PNG\r\n\x1a\n a small picture"


def now_ms() -> int:
    return int(time.time() * 1000)


def from_whatsapp(app, accounts, text, wamid, *, wa_id=WA_ID, name="Jane Doe", seconds_ago=0):
    assert post(app, accounts, whatsapp_notification(
        messages=[wa_message("text", {"body": text}, wamid=wamid, timestamp=int(time.time()) - seconds_ago,
                             sender=wa_id)], wa_id=wa_id, name=name)).status_code == 200


def from_messenger(app, accounts, text, mid, seconds_ago=0):
    assert post(app, accounts, page_notification(
        messenger_item(text, mid=mid, timestamp_ms=now_ms() - seconds_ago * 1000))).status_code == 200


def from_instagram(app, accounts, text, mid, seconds_ago=0):
    assert post(app, accounts, page_notification(
        messenger_item(text, mid=mid, sender=IGSID, recipient=IG_ID, timestamp_ms=now_ms() - seconds_ago * 1000),
        page_id=IG_ID, obj="instagram")).status_code == 200


def conversation_of(channel: str) -> Conversation:
    db.session.expire_all()
    return db.session.scalars(select(Conversation).where(Conversation.channel == channel)).one()


def message_id(provider_message_id: str) -> int:
    return db.session.scalar(select(ConversationMessage.id).where(
        ConversationMessage.provider_message_id == provider_message_id))


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li id="conversation-(\d+)"', html)]


def attribute(html: str, element_id: str, name: str) -> str:
    tag = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', html, re.S).group(0)
    return re.search(rf'\b{name}="([^"]*)"', tag).group(1).replace("&amp;", "&")


def aged(conversation: Conversation, hours: float) -> None:
    """The person last wrote `hours` ago (Meta refuses notifications that old, so the row is aged)."""
    conversation.last_inbound_at = utcnow() - timedelta(hours=hours)
    db.session.commit()


class Statements:
    """Counts the SQL statements a request runs."""

    def __init__(self):
        self.count = 0

    def __call__(self, *args):
        self.count += 1

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self)


# --- the list -----------------------------------------------------------------------------------------------

def test_without_connected_accounts_the_inbox_says_to_connect_one(browser):
    page = browser.get("/inbox")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="no-channels"' in html and 'href="/platforms"' in html
    assert 'id="no-conversations"' in html and "Sync now" in html
    assert re.search(r'<a href="/inbox" class="current">Inbox<span class="nav-count" id="nav-unread"></span></a>', html)


def test_the_list_is_newest_first_with_unread_counts_filters_and_search(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Is the cake ready?", "wamid.1", seconds_ago=30)
    from_instagram(app, accounts, "Do you ship to Lyon?", "ig_1", seconds_ago=20)
    from_messenger(app, accounts, "Opening hours?", "m_1", seconds_ago=10)
    from_messenger(app, accounts, "And on Sunday?", "m_2", seconds_ago=5)
    run_jobs()
    whatsapp, instagram, messenger = (conversation_of(c) for c in ("whatsapp", "instagram", "messenger"))

    html = browser.get("/inbox").get_data(as_text=True)
    assert listed(html) == [messenger.id, instagram.id, whatsapp.id]
    assert re.search(rf'<li id="conversation-{messenger.id}" class=" unread".*?<span class="unread-count">2<', html,
                     re.S)
    assert "And on Sunday?" in html and "Ivy Grant" in html and "Acme WhatsApp" in html
    assert re.search(r'id="nav-unread">4<span class="visually-hidden"> unread', html)  # the navigation's total

    assert listed(browser.get("/inbox?channel=instagram").get_data(as_text=True)) == [instagram.id]
    assert listed(browser.get(f"/inbox?account={accounts.whatsapp_id}").get_data(as_text=True)) == [whatsapp.id]
    assert listed(browser.get("/inbox?q=ivy").get_data(as_text=True)) == [instagram.id]  # by name
    assert listed(browser.get("/inbox?q=cake").get_data(as_text=True)) == [whatsapp.id]  # by the last message
    assert listed(browser.get(f"/inbox?q={WA_ID[-6:]}").get_data(as_text=True)) == [whatsapp.id]  # by number
    nothing = browser.get("/inbox?q=nobody&channel=whatsapp").get_data(as_text=True)
    assert listed(nothing) == [] and 'id="no-match"' in nothing
    # Links keep the filters, so the list beside an open conversation is the same list.
    kept = browser.get("/inbox?channel=instagram").get_data(as_text=True)
    assert f'href="/inbox/{instagram.id}?channel=instagram"' in kept
    for odd in ("channel=sms", "account=abc", "account=99999999999", "page=-4", "page=zz", "q=" + "x" * 500):
        assert browser.get(f"/inbox?{odd}").status_code == 200, odd


def test_the_list_pages_without_counting_every_conversation(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "first", "wamid.first")
    run_jobs()
    first = conversation_of("whatsapp")
    rows = [{"organization_id": accounts.organization_id, "integration_id": accounts.whatsapp_id,
             "channel": "whatsapp", "external_user_id": f"1555000{i:04d}", "name": f"Person {i}",
             "last_message_at": utcnow() + timedelta(seconds=i + 1), "last_message_preview": f"hello {i}",
             "unread_count": 0, "created_at": utcnow(), "updated_at": utcnow()} for i in range(pages.PER_PAGE)]
    db.session.execute(insert(Conversation.__table__), rows)
    db.session.commit()
    html = browser.get("/inbox").get_data(as_text=True)
    assert len(listed(html)) == pages.PER_PAGE and first.id not in listed(html) and 'href="/inbox?page=2">Older' in html
    second = browser.get("/inbox?page=2").get_data(as_text=True)
    assert listed(second) == [first.id] and 'href="/inbox">Newer' in second and ">Older<" not in second


# --- a conversation -------------------------------------------------------------------------------------------

def test_a_conversation_shows_its_history_media_and_the_ticks_of_replies(app, browser, api, accounts, graph,
                                                                         run_jobs):
    graph.media["img1"] = (PNG, "image/png")
    graph.media["doc1"] = (b"%PDF-1.4 menu", "application/pdf")
    graph.media["zip1"] = (b"PK\x03\x04 archive", "application/zip")
    post(app, accounts, whatsapp_notification(messages=[
        wa_message("text", {"body": "Here is my order"}, wamid="wamid.A", timestamp=int(time.time()) - 9),
        wa_message("image", {"id": "img1", "mime_type": "image/png", "caption": "The cake"}, wamid="wamid.B",
                   timestamp=int(time.time()) - 8),
        wa_message("document", {"id": "zip1", "mime_type": "application/zip", "filename": "order.zip"},
                   wamid="wamid.C", timestamp=int(time.time()) - 7)]))
    run_jobs()
    conversation = conversation_of("whatsapp")
    replies = [api.post(f"/api/conversations/{conversation.id}/messages/", json={"text": text}).json["id"]
               for text in ("Thanks!", "Ready at 5", "See you", "Wrong number?")]
    run_jobs()
    sent = {m.id: m.provider_message_id for m in db.session.scalars(select(ConversationMessage).where(
        ConversationMessage.id.in_(replies)))}
    moment = int(time.time())
    post(app, accounts, whatsapp_notification(statuses=[
        wa_status(sent[replies[1]], "delivered", timestamp=moment),
        wa_status(sent[replies[2]], "read", timestamp=moment),
        wa_status(sent[replies[3]], "failed", timestamp=moment, errors=[
            {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
             "error_data": {"details": "The number is not on WhatsApp."}}])]))
    run_jobs()
    queued = api.post(f"/api/conversations/{conversation.id}/messages/", json={"text": "Still queued"}).json["id"]
    # No worker runs after the last reply: it stays queued.
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert "Here is my order" in html
    image_id, zip_id = (message_id(wamid) for wamid in ("wamid.B", "wamid.C"))
    assert f'<img src="/inbox/media/{image_id}" alt="The cake"' in html  # images inline, from our storage
    assert re.search(rf'<a class="file" href="/inbox/media/{zip_id}" download>order.zip', html)  # others: downloads
    assert re.search(r'<article class="message in kind-text" id="message-\d+" data-status="received">', html)

    def ticks(message_id):
        return re.search(rf'id="message-{message_id}".*?<span class="ticks (\w+)" title="([^"]+)">'
                         r'<span aria-hidden="true">([^<]*)</span>', html, re.S).groups()
    assert ticks(replies[0]) == ("sent", "Sent", "✓")
    assert ticks(replies[1]) == ("delivered", "Delivered", "✓✓")
    assert ticks(replies[2]) == ("read", "Read", "✓✓")
    assert ticks(replies[3])[0] == "failed"
    assert re.search(rf'id="message-{replies[3]}".*?Not delivered: [^<]*not on WhatsApp', html, re.S)
    assert ticks(queued) == ("queued", "Queued", "◷")
    assert re.search(r'class="window-notice open" id="window-notice"><strong>You can reply freely until tomorrow '
                     r'\d\d:\d\d UTC\.</strong>', html)


def test_media_still_being_fetched_and_media_that_failed_say_so(app, browser, accounts, graph, run_jobs):
    post(app, accounts, whatsapp_notification(messages=[
        wa_message("image", {"id": "gone1", "mime_type": "image/jpeg"}, wamid="wamid.P", timestamp=int(time.time()))]))
    run_jobs()  # Graph does not know gone1: the download fails for good
    conversation = conversation_of("whatsapp")
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert "The file could not be kept:" in html and "<img" not in html
    message = db.session.scalars(select(ConversationMessage)).one()
    message.media = {**message.media, "status": "pending"}
    db.session.commit()
    assert "Fetching the file from Meta…" in browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)


def test_older_messages_page_back_in_batches(app, browser, accounts, graph, run_jobs):
    from_messenger(app, accounts, "message 0", "m_0", seconds_ago=3600)
    run_jobs()
    conversation = conversation_of("messenger")
    start = utcnow() - timedelta(minutes=50)
    db.session.execute(insert(ConversationMessage.__table__), [
        {"organization_id": accounts.organization_id, "conversation_id": conversation.id,
         "integration_id": accounts.messenger_id, "direction": "in", "kind": "text", "text": f"message {i}",
         "provider_message_id": f"m_{i}", "status": "received", "attempts": 0,
         "created_at": start + timedelta(seconds=i), "updated_at": utcnow()} for i in range(1, 120)])
    db.session.commit()
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    shown = re.findall(r'<p class="text">message (\d+)</p>', html)
    assert shown == [str(i) for i in range(70, 120)]
    older_url = re.search(r'hx-get="(/inbox/\d+/older\?before=\d+)"', html).group(1)
    batch = browser.get(older_url, headers=HTMX).get_data(as_text=True)
    assert re.findall(r'<p class="text">message (\d+)</p>', batch) == [str(i) for i in range(20, 70)]
    last = browser.get(re.search(r'hx-get="(/inbox/\d+/older\?before=\d+)"', batch).group(1), headers=HTMX)
    assert re.findall(r'<p class="text">message (\d+)</p>', last.get_data(as_text=True)) == [str(i) for i in range(20)]
    assert "older?before" not in last.get_data(as_text=True)  # nothing older: no button
    assert browser.get(f"/inbox/{conversation.id}/older").status_code == 400
    assert browser.get(f"/inbox/{conversation.id}/older?before=x").status_code == 400
    assert browser.get(f"/inbox/{conversation.id}/older?before=999999").status_code == 404  # not one of its messages


def test_showing_a_conversation_changes_nothing_and_reading_it_marks_it_read_at_meta(app, browser, accounts, graph,
                                                                                     run_jobs):
    from_whatsapp(app, accounts, "Hello", "wamid.R1")
    from_whatsapp(app, accounts, "Anyone?", "wamid.R2")
    run_jobs()
    conversation = conversation_of("whatsapp")
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert conversation_of("whatsapp").unread_count == 2  # a GET is safe: prefetching marks nothing read
    read_url = re.search(r'<div class="mark-read" hx-post="([^"]+)" hx-trigger="load"', html).group(1)
    assert read_url == f"/inbox/{conversation.id}/read"
    token = re.search(r'hx-vals=\'\{"csrf_token": "([^"]+)"\}\'', html).group(1)
    assert browser.client.post(read_url, headers=HTMX).status_code == 400  # no CSRF token: refused
    response = browser.client.post(read_url, data={"csrf_token": token}, headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Trigger"] == "conversation-read"
    assert conversation_of("whatsapp").unread_count == 0
    run_jobs()
    [marked] = [r for r in graph.sent() if (r.body or {}).get("status") == "read"]
    assert marked.body["message_id"] == "wamid.R2"
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert 'class="mark-read"' not in html and 'id="nav-unread"></span>' in html


def test_without_javascript_a_button_marks_the_conversation_read(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Hello", "wamid.N1")
    run_jobs()
    conversation = conversation_of("whatsapp")
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    form = re.search(r'<noscript><form method="post" action="([^"]+)" class="mark-read-form">\s*'
                     r'<input type="hidden" name="csrf_token" value="([^"]+)">', html)
    assert form and form.group(1) == f"/inbox/{conversation.id}/read"
    response = browser.client.post(form.group(1), data={"csrf_token": form.group(2)})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/inbox/{conversation.id}")
    assert conversation_of("whatsapp").unread_count == 0
    assert "mark-read-form" not in browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)


# --- polls ---------------------------------------------------------------------------------------------------

def test_the_list_poll_answers_204_with_one_query_until_the_list_changes(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Hello", "wamid.L1")
    run_jobs()
    html = browser.get("/inbox?channel=whatsapp").get_data(as_text=True)
    poll = attribute(html, "conversation-list", "hx-get")
    assert attribute(html, "conversation-list", "hx-trigger").startswith("every 3s")
    assert poll.startswith("/inbox/list?") and "channel=whatsapp" in poll
    version = attribute(html, "conversation-list", "data-version")
    assert version == inbox.inbox_version(accounts.organization_id, channel="whatsapp")  # computed without a query
    with Statements() as statements:
        unchanged = browser.get(poll, headers=HTMX)
    assert unchanged.status_code == 204 and unchanged.data == b""
    assert statements.count == 2  # the signed-in user, and the version

    from_whatsapp(app, accounts, "Are you there?", "wamid.L2", wa_id="16505550000", name="Sam Lee")
    run_jobs()
    changed = browser.get(poll, headers=HTMX)
    fragment = changed.get_data(as_text=True)
    assert changed.status_code == 200
    assert fragment.lstrip().startswith('<div id="conversation-list"') and "Sam Lee" in fragment
    assert "Are you there?" in fragment
    new_poll = attribute(fragment, "conversation-list", "hx-get")
    assert new_poll != poll and browser.get(new_poll, headers=HTMX).status_code == 204
    # The navigation's count comes along, out of band.
    assert re.search(r'<span class="nav-count" id="nav-unread" hx-swap-oob="true">2<', fragment)
    assert browser.get("/inbox/list?v=" + version + "&channel=messenger", headers=HTMX).status_code == 200


def test_the_thread_poll_answers_204_until_a_message_or_a_status_changes(app, browser, api, accounts, graph,
                                                                         run_jobs):
    from_whatsapp(app, accounts, "Hello", "wamid.T1")
    run_jobs()
    conversation = conversation_of("whatsapp")
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    poll = attribute(html, "thread-live", "hx-get")
    assert attribute(html, "thread-live", "data-version") == inbox.conversation_version(accounts.organization_id,
                                                                                        conversation.id)
    with Statements() as statements:
        assert browser.get(poll, headers=HTMX).status_code == 204
    assert statements.count == 2

    reply = api.post(f"/api/conversations/{conversation.id}/messages/", json={"text": "Hi!"}).json["id"]
    fragment = browser.get(poll, headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="thread-live"') and f'id="message-{reply}"' in fragment
    assert 'data-status="queued"' in fragment and "Hello" in fragment  # grows from the same first message
    assert 'id="composer-box"' not in fragment  # the reply box stays as it is: still free text
    poll = attribute(fragment, "thread-live", "hx-get")
    assert browser.get(poll, headers=HTMX).status_code == 204
    run_jobs()
    wamid = db.session.get(ConversationMessage, reply).provider_message_id
    post(app, accounts, whatsapp_notification(statuses=[wa_status(wamid, "delivered", timestamp=int(time.time()))]))
    run_jobs()
    fragment = browser.get(poll, headers=HTMX).get_data(as_text=True)
    assert re.search(rf'id="message-{reply}" data-status="delivered"', fragment)
    assert '<span class="ticks delivered" title="Delivered">' in fragment


def test_the_thread_poll_redraws_the_reply_box_when_the_window_changes_and_when_time_closes_it(
        app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Hello", "wamid.W1")
    run_jobs()
    conversation = conversation_of("whatsapp")
    aged(conversation, 30)
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert 'data-mode="template"' in html and "Only an approved template can be sent now." in html
    poll = attribute(html, "thread-live", "hx-get")
    assert "until=" not in poll  # a template-only window does not change by itself
    from_whatsapp(app, accounts, "I'm back", "wamid.W2")
    run_jobs()
    fragment = browser.get(poll, headers=HTMX).get_data(as_text=True)
    assert "You can reply freely until" in fragment
    assert re.search(r'<div id="composer-box" hx-swap-oob="innerHTML">\s*.*data-mode="free"', fragment, re.S)

    # Time alone closes the window: the poll carries the moment and draws it again then, unchanged or not.
    poll = attribute(fragment, "thread-live", "hx-get")
    until = int(re.search(r"until=(\d+)", poll).group(1))
    assert abs(until - (time.time() + 24 * 3600)) < 60
    assert browser.get(poll, headers=HTMX).status_code == 204
    aged(conversation_of("whatsapp"), 25)
    late = re.sub(r"until=\d+", f"until={int(time.time()) - 1}", poll)
    version = inbox.conversation_version(accounts.organization_id, conversation.id)
    late = re.sub(r"v=\w+", f"v={version}", late)
    fragment = browser.get(late, headers=HTMX).get_data(as_text=True)
    assert "Only an approved template can be sent now." in fragment and 'data-mode="template"' in fragment


def test_a_thread_flooded_while_open_is_drawn_again_whole(app, browser, accounts, graph, run_jobs):
    from_messenger(app, accounts, "first", "m_first")
    run_jobs()
    conversation = conversation_of("messenger")
    poll = attribute(browser.get(f"/inbox/{conversation.id}").get_data(as_text=True), "thread-live", "hx-get")
    db.session.execute(insert(ConversationMessage.__table__), [
        {"organization_id": accounts.organization_id, "conversation_id": conversation.id,
         "integration_id": accounts.messenger_id, "direction": "in", "kind": "text", "text": f"flood {i}",
         "provider_message_id": f"m_flood{i}", "status": "received", "attempts": 0,
         "created_at": utcnow() + timedelta(seconds=i), "updated_at": utcnow()} for i in range(pages.LIVE_MAX + 5)])
    inbox.touch(conversation.id)
    db.session.commit()
    response = browser.get(poll, headers=HTMX)
    assert response.headers["HX-Retarget"] == "#thread" and response.headers["HX-Reswap"] == "innerHTML"
    html = response.get_data(as_text=True)
    assert len(re.findall(r'<article class="message', html)) == pages.THREAD_PAGE and "Older messages" in html


# --- replies ---------------------------------------------------------------------------------------------------

def reply_form(browser, conversation_id, **fields):
    page = browser.get(f"/inbox/{conversation_id}").get_data(as_text=True)
    return {"csrf_token": csrf_token_from(page), **fields}


def test_a_text_reply_from_the_page_goes_out(app, browser, admin, accounts, graph, run_jobs):
    from_messenger(app, accounts, "Do you deliver?", "m_q")
    run_jobs()
    conversation = conversation_of("messenger")
    response = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX,
                                   data=reply_form(browser, conversation.id, text="Yes, within 5 km"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "reply-sent"
    assert 'id="reply-queued"' in html and "Yes, within 5 km" not in html  # a fresh box
    message = db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).one()
    assert (message.text, message.status, message.sent_by_id) == ("Yes, within 5 km", "queued", admin.id)
    run_jobs()
    [send] = [r for r in graph.sent() if "message" in (r.body or {})]
    assert send.body["message"]["text"] == "Yes, within 5 km" and send.body["messaging_type"] == "RESPONSE"

    # Without htmx: back to the conversation, which shows the reply.
    plain = browser.client.post(f"/inbox/{conversation.id}/reply",
                                data=reply_form(browser, conversation.id, text="Anything else?"))
    assert plain.status_code == 302 and plain.headers["Location"] == f"/inbox/{conversation.id}#composer"
    assert "Anything else?" in browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert browser.client.post(f"/inbox/{conversation.id}/reply", data={"text": "no token"}).status_code == 400


def test_reply_errors_show_by_field_and_send_nothing(app, browser, accounts, graph, run_jobs):
    from_messenger(app, accounts, "Hi", "m_hi")
    run_jobs()
    conversation = conversation_of("messenger")
    cases = [({"text": "   "}, "text", "Give text, a template or media."),
             ({"media_url": "http://example.com/a.jpg"}, "media_url", "Give a public https:// link to the media."),
             ({"text": "x" * 2001}, "text", "Messenger takes at most 2,000 characters of text."),
             ({"text": "caption", "upload": (io.BytesIO(PNG), "cake.png", "image/png")}, "text",
              "Messenger media carries no caption: send the text on its own.")]
    for fields, name, words in cases:
        response = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX,
                                       content_type="multipart/form-data",
                                       data=reply_form(browser, conversation.id, **fields))
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "HX-Trigger" not in response.headers
        assert re.search(rf'<div class="error" id="{name}-error">{re.escape(words)}</div>', html), (fields, html)
        assert 'aria-invalid="true"' in html
    plain = browser.client.post(f"/inbox/{conversation.id}/reply", data=reply_form(browser, conversation.id, text=""))
    assert plain.status_code == 400 and 'id="text-error"' in plain.get_data(as_text=True)
    assert db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).all() == []


def test_a_file_larger_than_the_apps_1_mb_limit_is_uploaded_to_whatsapp(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Send me the menu", "wamid.U1")
    run_jobs()
    conversation = conversation_of("whatsapp")
    big = b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024)
    assert len(big) > app.config["MAX_CONTENT_LENGTH"]
    response = browser.client.post(
        f"/inbox/{conversation.id}/reply", headers=HTMX, content_type="multipart/form-data",
        data=reply_form(browser, conversation.id, text="Our menu",
                        upload=(io.BytesIO(big), "menu.pdf", "application/pdf")))
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "reply-sent"
    run_jobs()
    [(data, mime, kind)] = graph.uploads.values()
    assert data == big and mime == "application/pdf"
    [send] = [r for r in graph.sent() if (r.body or {}).get("type") == "document"]
    assert send.body["document"]["caption"] == "Our menu" and send.body["document"]["filename"] == "menu.pdf"
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert re.search(r'<a class="file" href="/inbox/media/\d+" download>menu.pdf <span class="meta">\(3.1 MB\)', html)
    # Other addresses keep the 1 MB limit.
    token = csrf_token_from(html)
    padded = {"csrf_token": token, "pad": "x" * (2 * 1024 * 1024)}
    assert browser.client.post(f"/inbox/{conversation.id}/read", data=padded).status_code == 413


def test_a_file_over_the_media_limit_is_refused_on_the_field_or_by_its_size(app, browser, accounts, graph, run_jobs,
                                                                           monkeypatch):
    from_whatsapp(app, accounts, "Send me the video", "wamid.U2")
    run_jobs()
    conversation = conversation_of("whatsapp")
    monkeypatch.setitem(app.config, "MEDIA_MAX_BYTES", 100_000)
    just_over = browser.client.post(
        f"/inbox/{conversation.id}/reply", headers=HTMX, content_type="multipart/form-data",
        data=reply_form(browser, conversation.id, upload=(io.BytesIO(b"v" * 100_001), "clip.mp4", "video/mp4")))
    assert just_over.status_code == 200
    assert re.search(r'id="upload-error">The file is larger than the [^<]+ limit', just_over.get_data(as_text=True))
    # Far over, the body is refused unread: the reply box says so (htmx), the page answers 413.
    far_over = reply_form(browser, conversation.id, upload=(io.BytesIO(b"v" * 400_000), "clip.mp4", "video/mp4"))
    boxed = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX, content_type="multipart/form-data",
                                data=far_over)
    assert boxed.status_code == 200
    assert re.search(r'id="upload-error">The file is larger than the 100 KB limit: send a smaller one',
                     boxed.get_data(as_text=True))
    far_over["upload"] = (io.BytesIO(b"v" * 400_000), "clip.mp4", "video/mp4")
    assert browser.client.post(f"/inbox/{conversation.id}/reply", content_type="multipart/form-data",
                               data=far_over).status_code == 413
    assert db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).all() == []


def test_media_by_link_goes_out_by_link(app, browser, accounts, graph, run_jobs):
    from_instagram(app, accounts, "Photo of the dress?", "ig_q")
    run_jobs()
    conversation = conversation_of("instagram")
    response = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX, data=reply_form(
        browser, conversation.id, media_url="https://cdn.example.com/dress.jpg"))
    assert response.headers["HX-Trigger"] == "reply-sent"
    run_jobs()
    [send] = [r for r in graph.sent() if "message" in (r.body or {})]
    assert send.body["message"]["attachment"]["payload"]["url"] == "https://cdn.example.com/dress.jpg"
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert 'href="https://cdn.example.com/dress.jpg" rel="noopener noreferrer"' in html


# --- the window ---------------------------------------------------------------------------------------------------

def test_the_window_in_words_and_what_the_reply_box_offers(app, browser, accounts, graph, run_jobs):
    from_messenger(app, accounts, "Hi", "m_w")
    from_whatsapp(app, accounts, "Hi", "wamid.w")
    run_jobs()
    messenger, whatsapp = conversation_of("messenger"), conversation_of("whatsapp")

    html = browser.get(f"/inbox/{messenger.id}").get_data(as_text=True)
    assert "You can reply freely until" in html and "(the human agent tag)" in html and 'data-mode="free"' in html
    aged(messenger, 30)
    html = browser.get(f"/inbox/{messenger.id}").get_data(as_text=True)
    assert re.search(r'class="window-notice human_agent" id="window-notice"><strong>Human agent reply only, until '
                     r'\w{3} \d+ \w{3}, \d\d:\d\d UTC\.</strong>', html)
    assert 'data-mode="free"' in html
    aged(conversation_of("messenger"), 24 * 8)
    html = browser.get(f"/inbox/{messenger.id}").get_data(as_text=True)
    assert 'data-mode="closed"' in html and "only within 7 days" in html and "<textarea" not in html

    aged(whatsapp, 30)
    html = browser.get(f"/inbox/{whatsapp.id}").get_data(as_text=True)
    assert "Only an approved template can be sent now." in html and "More than 24 hours have passed" in html
    assert 'data-mode="template"' in html and 'id="no-templates"' in html and "<textarea" not in html


def test_free_text_refused_by_the_window_shows_the_sentence(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Hi", "wamid.x")
    run_jobs()
    conversation = conversation_of("whatsapp")
    form = reply_form(browser, conversation.id, text="Are you still there?")
    aged(conversation, 30)  # the window closed while the page was open
    response = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX, data=form)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r'<div class="flash error" role="alert" id="reply-refused">More than 24 hours have passed since '
                     r'Jane Doe last wrote, so WhatsApp only allows an approved template message', html)
    assert 'data-mode="template"' in html  # and the box now offers what can be sent
    plain = browser.client.post(f"/inbox/{conversation.id}/reply", data=form)
    assert plain.status_code == 409 and 'id="reply-refused"' in plain.get_data(as_text=True)
    assert db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).all() == []


def test_an_account_that_needs_reconnecting_cannot_reply(app, browser, accounts, graph, run_jobs):
    from_messenger(app, accounts, "Hi", "m_rc")
    run_jobs()
    conversation = conversation_of("messenger")
    conversation.integration.needs_reconnect = True
    db.session.commit()
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    assert 'data-mode="blocked"' in html and "needs to be reconnected" in html and "<textarea" not in html


def test_templates_sync_from_the_inbox_then_one_goes_out_with_its_parameters(app, browser, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "Hi", "wamid.tp")
    run_jobs()
    conversation = conversation_of("whatsapp")
    aged(conversation, 48)
    graph.templates = [APPOINTMENT, {**APPOINTMENT, "name": "welcome", "components": [
        {"type": "BODY", "text": "Welcome, {{name}}!"}]}, {**APPOINTMENT, "name": "pending_one", "status": "PENDING"}]
    html = browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)
    sync = re.search(r'hx-post="(/inbox/accounts/\d+/templates/sync)"', html).group(1)
    started = browser.client.post(sync, headers=HTMX, data={"csrf_token": csrf_token_from(html)})
    status = started.get_data(as_text=True)
    assert started.status_code == 200 and "Queued, waiting for a worker…" in status and 'class="spinner"' in status
    progress = re.search(r'hx-get="([^"]+)"', status).group(1)
    assert re.fullmatch(rf"/inbox/accounts/{accounts.whatsapp_id}/jobs/inbox-templates-{accounts.whatsapp_id}-\w+",
                        progress)
    run_jobs()
    done = browser.get(progress, headers=HTMX)
    assert "Synced 3 templates from WhatsApp." in done.get_data(as_text=True)
    assert 'hx-get' not in done.get_data(as_text=True) and done.headers["HX-Trigger"] == "templates-synced"

    box = browser.get(f"/inbox/{conversation.id}/composer", headers=HTMX).get_data(as_text=True)
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', box)
    assert [name for _, name in options] == ["appointment_reminder (en_US)", "welcome (en_US)"]  # approved only
    assert "Hi {{1}}, your appointment is at {{2}}." in box.replace("&#123;", "{")
    assert re.findall(r'<label for="parameter-\d">Parameter ([^<]+)</label>', box) == ["{{1}}", "{{2}}"]
    welcome = options[1][0]
    fields = browser.get(f"/inbox/{conversation.id}/template-fields?template={welcome}",
                         headers=HTMX).get_data(as_text=True)
    assert re.findall(r'<label for="parameter-\d">Parameter ([^<]+)</label>', fields) == ["{{name}}"]

    token = csrf_token_from(box)
    short = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX, data={
        "csrf_token": token, "template": options[0][0], "parameter": ["Jane"]})
    assert re.search(r'id="template-error">The template appointment_reminder takes 2 parameters; 1 given.',
                     short.get_data(as_text=True))
    assert 'value="Jane"' in short.get_data(as_text=True)  # what was typed stays
    other = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX, data={
        "csrf_token": token, "template": "999999", "parameter": []})
    assert "Choose one of the approved templates." in other.get_data(as_text=True)
    sent = browser.client.post(f"/inbox/{conversation.id}/reply", headers=HTMX, data={
        "csrf_token": token, "template": options[0][0], "parameter": ["Jane", "10:00"]})
    assert sent.headers["HX-Trigger"] == "reply-sent"
    run_jobs()
    [send] = [r for r in graph.sent() if (r.body or {}).get("type") == "template"]
    assert send.body["template"]["name"] == "appointment_reminder"
    assert [p["text"] for p in send.body["template"]["components"][0]["parameters"]] == ["Jane", "10:00"]
    assert "Hi Jane, your appointment is at 10:00." in browser.get(f"/inbox/{conversation.id}").get_data(as_text=True)


# --- syncs on the Channels panel ----------------------------------------------------------------------------------

def test_the_channels_panel_syncs_accounts_and_shows_how_it_went(app, browser, accounts, graph, run_jobs):
    panel = browser.get("/platforms").get_data(as_text=True)
    assert f'hx-post="/inbox/accounts/{accounts.messenger_id}/sync"' in panel
    assert f'hx-post="/inbox/accounts/{accounts.instagram_id}/sync"' in panel
    assert f'hx-post="/inbox/accounts/{accounts.whatsapp_id}/templates/sync"' in panel
    assert f'id="sync-status-{accounts.messenger_id}" hx-preserve="true"' in panel  # kept across the panel's refresh
    token = csrf_token_from(panel)

    graph.conversations["messenger"] = []
    started = browser.client.post(f"/inbox/accounts/{accounts.messenger_id}/sync", headers=HTMX,
                                  data={"csrf_token": token}).get_data(as_text=True)
    assert "Queued, waiting for a worker…" in started
    again = browser.client.post(f"/inbox/accounts/{accounts.messenger_id}/sync", headers=HTMX,
                                data={"csrf_token": token}).get_data(as_text=True)
    assert "A sync of this account is already running." in again and "hx-get" not in again
    run_jobs()
    progress = re.search(r'hx-get="([^"]+)"', started).group(1)
    done = browser.get(progress, headers=HTMX).get_data(as_text=True)
    assert "Synced: 0 new messages." in done and "sync-status done ok" in done

    # Meta refuses the Instagram account's token: the sync ends in words, from the account's log.
    svc.store_secrets(db.session.get(Integration, accounts.instagram_id), {"page_access_token": EXPIRED_TOKEN})
    db.session.commit()
    refused = browser.client.post(f"/inbox/accounts/{accounts.instagram_id}/sync", headers=HTMX,
                                  data={"csrf_token": token}).get_data(as_text=True)
    run_jobs()
    failed = browser.get(re.search(r'hx-get="([^"]+)"', refused).group(1), headers=HTMX).get_data(as_text=True)
    assert "sync-status done failed" in failed and "Conversations could not be synced" in failed

    # WhatsApp numbers have templates, not conversations to sync; and without htmx the panel says how it went.
    assert browser.client.post(f"/inbox/accounts/{accounts.whatsapp_id}/sync",
                               data={"csrf_token": token}).status_code == 404
    assert browser.client.post(f"/inbox/accounts/{accounts.messenger_id}/templates/sync",
                               data={"csrf_token": token}).status_code == 404
    plain = browser.client.post(f"/inbox/accounts/{accounts.whatsapp_id}/templates/sync", data={"csrf_token": token})
    assert plain.status_code == 302 and plain.headers["Location"] == "/platforms"
    assert "Acme WhatsApp: Queued, waiting for a worker…" in browser.get("/platforms").get_data(as_text=True)
    assert browser.client.post(f"/inbox/accounts/{accounts.messenger_id}/sync").status_code == 400  # no CSRF token
    for wrong in (f"inbox-templates-{accounts.messenger_id}-abc", "inbox-reply-1", "../../x"):
        assert browser.get(f"/inbox/accounts/{accounts.whatsapp_id}/jobs/{wrong}").status_code == 404
    gone = browser.get(f"/inbox/accounts/{accounts.whatsapp_id}/jobs/inbox-templates-{accounts.whatsapp_id}-000000")
    assert "no longer tracked" in gone.get_data(as_text=True)


# --- the daily figures ---------------------------------------------------------------------------------------------

def test_the_stats_page_charts_messages_and_conversations_per_day_per_platform(app, browser, accounts):
    today = utcnow().date()
    for offset, platform, figures in ((0, "whatsapp", (5, 3, 4)), (0, "messenger", (2, 1, 1)),
                                      (3, "instagram", (4, 0, 3)), (40, "whatsapp", (100, 100, 50))):
        db.session.add(PlatformDailyStat(organization_id=accounts.organization_id, day=today - timedelta(days=offset),
                                         platform=platform, messages_in=figures[0], messages_out=figures[1],
                                         conversations=figures[2]))
    db.session.commit()
    html = browser.get("/inbox/stats").get_data(as_text=True)
    assert '<a href="/inbox/stats?days=30" class="current"' in html
    assert re.search(r'id="total-in">11<', html) and re.search(r'id="total-out">4<', html)  # day 40 is out of range
    assert re.search(r'id="totals-whatsapp">.*?<td class="num">5</td><td class="num">3</td>', html, re.S)
    assert re.search(rf'id="totals-total"[^>]*>.*?{today.isoformat()} \(5\)', html, re.S)  # the busiest day
    messages_chart = html[html.index('id="messages-chart"'):html.index("</svg>", html.index('id="messages-chart"'))]
    bars = re.findall(r'<rect class="(\w+) (\w+)"[^>]*><title>([^<]+)</title>', messages_chart)
    assert sorted(bars) == sorted([
        ("whatsapp", "messages_in", f"{today}: 5 in on WhatsApp"),
        ("whatsapp", "messages_out", f"{today}: 3 out on WhatsApp"),
        ("messenger", "messages_in", f"{today}: 2 in on Messenger"),
        ("messenger", "messages_out", f"{today}: 1 out on Messenger"),
        ("instagram", "messages_in", f"{today - timedelta(days=3)}: 4 in on Instagram")])
    heights = {title: float(h) for h, title in re.findall(r'height="([\d.]+)"><title>([^<]+)<', messages_chart)}
    assert heights[f"{today}: 5 in on WhatsApp"] == pytest.approx(heights[f"{today}: 1 out on Messenger"] * 5, rel=0.05)
    assert "100 in" in browser.get("/inbox/stats?days=90").get_data(as_text=True)
    assert browser.get("/inbox/stats?days=12345").status_code == 200  # an odd period falls back to 30 days


def test_the_stats_page_without_figures_says_when_they_appear(browser):
    html = browser.get("/inbox/stats").get_data(as_text=True)
    assert 'id="no-figures"' in html and "<svg" not in html


# --- other organisations ----------------------------------------------------------------------------------------------

def test_every_inbox_route_gives_404_for_another_organisations_conversation_account_and_media(
        app, browser, other_admin, graph, run_jobs):
    theirs = connect_accounts(other_admin.organization_id)
    post(app, theirs, whatsapp_notification(messages=[wa_message("text", {"body": "Their secret"}, wamid="wamid.S",
                                                                 timestamp=int(time.time()))]))
    graph.media["their_img"] = (PNG, "image/png")
    post(app, theirs, whatsapp_notification(messages=[wa_message("image", {"id": "their_img", "mime_type": "image/png"},
                                                                 wamid="wamid.SI", timestamp=int(time.time()))]))
    run_jobs()
    conversation = conversation_of("whatsapp")
    image = message_id("wamid.SI")
    graph.templates = [APPOINTMENT]
    inbox.sync_templates(db.session.get(Integration, theirs.whatsapp_id))
    template_id = inbox.approved_templates(conversation.integration)[0].id
    job = f"inbox-templates-{theirs.whatsapp_id}-abcdef"

    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(("inbox.", "media."))
             and {"conversation_id", "integration_id", "message_id"} & r.arguments]
    assert len(rules) >= 11
    token = csrf_token_from(browser.get("/account/password").get_data(as_text=True))
    for rule in rules:
        account = theirs.whatsapp_id if "templates" in rule.rule else theirs.messenger_id
        url = (rule.rule.replace("<int:conversation_id>", str(conversation.id))
               .replace("<int:integration_id>", str(account))
               .replace("<int:message_id>", str(image)).replace("<job_id>", job))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token, "text": "stolen", "template": str(template_id), "parameter": ["a", "b"]} \
                if method == "POST" else None
            query = {"v": "x", "first": "1", "before": str(image), "template": str(template_id)}
            response = browser.client.open(url, method=method, data=data, headers=HTMX,
                                           query_string=query if method == "GET" else None)
            assert response.status_code == 404, (method, url, response.status_code)
            assert "Their secret" not in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalars(select(ConversationMessage).where(ConversationMessage.direction == "out")).all() == []
    assert conversation_of("whatsapp").unread_count == 2
    html = browser.get("/inbox").get_data(as_text=True)
    assert "Their secret" not in html and listed(html) == []
    assert browser.get(f"/inbox?account={theirs.whatsapp_id}").get_data(as_text=True).count("<li id=") == 0


# --- the change signals, computed from loaded rows -----------------------------------------------------------

def test_pages_compute_the_same_versions_as_the_polls(app, accounts, graph, run_jobs):
    from_whatsapp(app, accounts, "one", "wamid.v1")
    from_messenger(app, accounts, "two", "m_v2")
    run_jobs()
    org = accounts.organization_id
    for channel in (None, "whatsapp"):
        listing = pages.list_page(org, channel=channel, integration_id=None, search=None, page=1)
        assert listing.version == inbox.inbox_version(org, channel=channel)
    conversation = pages.conversation_with_details(org, conversation_of("messenger").id)
    assert pages.conversation_version(conversation) == inbox.conversation_version(org, conversation.id)
    assert pages.unread_total(org) == 2
