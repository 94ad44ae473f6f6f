"""The inbox's JSON contract (list and detail), the change signals live pages poll, and the daily
figures rolled up by the hourly job."""
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from app.extensions import db
from app.models import ConversationMessage, PlatformDailyStat, utcnow
from app.queue import task_queue
from app.services import inbox
from tests.graph_messaging_fake import (  # noqa: F401  (fixtures)
    EXPIRED,
    IG_ID,
    IGSID,
    PSID,
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


def now_ms():
    return int(time.time() * 1000)


def three_conversations(app, accounts, run_jobs):
    """WhatsApp first, then Instagram, then Messenger (the newest)."""
    post(app, accounts, whatsapp_notification(messages=[wa_message("text", {"body": "WA hello"}, wamid="wamid.1",
                                                                   timestamp=int(time.time()) - 30)]))
    post(app, accounts, page_notification(messenger_item("IG hello", mid="ig_1", sender=IGSID, recipient=IG_ID,
                                                         timestamp_ms=now_ms() - 20_000), page_id=IG_ID,
                                          obj="instagram"))
    post(app, accounts, page_notification(messenger_item("FB hello", mid="m_1", timestamp_ms=now_ms() - 10_000),
                                          messenger_item("FB again", mid="m_2", timestamp_ms=now_ms() - 9_000)))
    run_jobs()


def test_the_conversation_list_newest_first_with_unread_counts_contacts_and_previews(app, api, accounts, graph,
                                                                                     run_jobs):
    three_conversations(app, accounts, run_jobs)
    listing = api.get("/api/conversations/")
    assert listing.status_code == 200
    body = listing.json
    assert (body["total"], body["page"], body["pages"]) == (3, 1, 1)
    assert [c["channel"] for c in body["items"]] == ["messenger", "instagram", "whatsapp"]
    messenger = body["items"][0]
    assert messenger["unread_count"] == 2 and messenger["last_message_preview"] == "FB again"
    assert messenger["name"] == "Jane Doe" and messenger["external_user_id"] == PSID
    assert messenger["contact"]["name"] == "Jane Doe" and messenger["contact"]["id"]
    assert messenger["account"] == {"id": accounts.messenger_id, "name": "Acme Page", "external_id": "101112131415161"}
    assert messenger["window"]["state"] == "open" and messenger["window"]["closes_at"].endswith("Z")
    whatsapp = body["items"][2]
    assert whatsapp["contact"]["phone"] == "+16505551234" and whatsapp["external_user_id"] == WA_ID

    assert [c["channel"] for c in api.get("/api/conversations/?channel=instagram").json["items"]] == ["instagram"]
    assert api.get(f"/api/conversations/?integration_id={accounts.whatsapp_id}").json["total"] == 1
    assert [c["name"] for c in api.get("/api/conversations/?q=ivy").json["items"]] == ["Ivy Grant"]
    paged = api.get("/api/conversations/?per_page=2&page=2").json
    assert (paged["pages"], [c["channel"] for c in paged["items"]]) == (2, ["whatsapp"])
    for bad in ("channel=sms", "integration_id=abc", "integration_id=99999999999"):
        response = api.get(f"/api/conversations/?{bad}")
        assert response.status_code == 400 and response.json["errors"]


def test_a_conversation_with_its_messages(app, api, accounts, graph, run_jobs):
    three_conversations(app, accounts, run_jobs)
    conversation_id = api.get("/api/conversations/?channel=messenger").json["items"][0]["id"]
    reply = api.post(f"/api/conversations/{conversation_id}/messages/", json={"text": "Hi Jane"})
    run_jobs()
    detail = api.get(f"/api/conversations/{conversation_id}/").json
    assert detail["id"] == conversation_id and detail["channel"] == "messenger"
    assert [(m["direction"], m["status"], m["text"], m["provider_message_id"]) for m in detail["messages"]] == [
        ("in", "received", "FB hello", "m_1"), ("in", "received", "FB again", "m_2"),
        ("out", "sent", "Hi Jane", "m_sent1")]
    last = detail["messages"][-1]
    assert last["id"] == reply.json["id"] and last["kind"] == "text" and last["media"] is None
    assert last["created_at"].endswith("Z") and last["sent_by_id"] is not None
    older = api.get(f"/api/conversations/{conversation_id}/?before={reply.json['id']}&per_page=1").json["messages"]
    assert [m["provider_message_id"] for m in older] == ["m_2"]


# --- change signals -------------------------------------------------------------------------------------

@pytest.fixture
def count_queries(app):
    statements = []

    def record(*args):
        statements.append(args[2])

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
    yield statements
    with app.app_context():
        event.remove(db.engine, "before_cursor_execute", record)


def test_change_signals_move_with_every_visible_change_and_cost_one_query(app, api, accounts, graph, run_jobs,
                                                                         count_queries):
    three_conversations(app, accounts, run_jobs)
    org = accounts.organization_id
    whatsapp = db.session.scalars(select(ConversationMessage).where(ConversationMessage.provider_message_id
                                                                    == "wamid.1")).one().conversation_id

    def versions():
        db.session.expire_all()
        count_queries.clear()
        signals = (inbox.inbox_version(org), inbox.inbox_version(org, channel="whatsapp"),
                   inbox.conversation_version(org, whatsapp))
        assert len(count_queries) == 3  # one query each
        return signals

    first = versions()
    assert versions() == first  # nothing changed: the same strings
    reply = api.post(f"/api/conversations/{whatsapp}/messages/", json={"text": "Hello"})
    after_reply = versions()
    assert all(a != b for a, b in zip(first, after_reply))
    run_jobs()  # sent: the tick changes
    after_send = versions()
    assert after_send[2] != after_reply[2]
    wamid = db.session.get(ConversationMessage, reply.json["id"]).provider_message_id
    post(app, accounts, whatsapp_notification(statuses=[wa_status(wamid, "delivered", timestamp=int(time.time()))]))
    run_jobs()
    delivered = versions()
    assert delivered[2] != after_send[2] and delivered[1] != after_send[1]
    api.post(f"/api/conversations/{whatsapp}/read/")
    run_jobs()  # marked read at WhatsApp too
    opened = versions()
    assert opened[2] != delivered[2] and opened[0] != delivered[0]
    # A change elsewhere leaves this conversation's signal alone.
    post(app, accounts, page_notification(messenger_item("more", mid="m_3", timestamp_ms=now_ms())))
    run_jobs()
    elsewhere = versions()
    assert elsewhere[2] == opened[2] and elsewhere[1] == opened[1] and elsewhere[0] != opened[0]
    assert inbox.conversation_version(org + 1000, whatsapp) is None


# --- analytics ------------------------------------------------------------------------------------------

def test_daily_figures_per_platform_are_rolled_up_idempotently(app, api, accounts, other_admin, graph, run_jobs):
    three_conversations(app, accounts, run_jobs)
    messenger_id = api.get("/api/conversations/?channel=messenger").json["items"][0]["id"]
    api.post(f"/api/conversations/{messenger_id}/messages/", json={"text": "sent today"})
    graph.fail(PSID, EXPIRED)
    api.post(f"/api/conversations/{messenger_id}/messages/", json={"text": "fails: not counted"})
    run_jobs()
    yesterday_message = db.session.scalars(select(ConversationMessage).where(
        ConversationMessage.provider_message_id == "m_1")).one()
    yesterday_message.created_at = utcnow() - timedelta(days=1)
    db.session.commit()
    theirs = connect_accounts(other_admin.organization_id, app_secret="globex")
    post(app, theirs, page_notification(messenger_item("theirs", mid="m_x", timestamp_ms=now_ms())),
         secret="globex")
    run_jobs()

    task_queue().enqueue("app.jobs.inbox.roll_up_daily_stats")  # the hourly cron job, through the worker
    run_jobs()
    today = utcnow().date()
    ours = inbox.daily_stats(accounts.organization_id, days=3, today=today)
    assert [p["day"] for p in ours] == [(today - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert ours[0]["total"] == {"messages_in": 0, "messages_out": 0, "conversations": 0}
    assert ours[1]["messenger"] == {"messages_in": 1, "messages_out": 0, "conversations": 1}
    assert ours[2]["messenger"] == {"messages_in": 1, "messages_out": 1, "conversations": 1}
    assert ours[2]["instagram"] == {"messages_in": 1, "messages_out": 0, "conversations": 1}
    assert ours[2]["whatsapp"] == {"messages_in": 1, "messages_out": 0, "conversations": 1}
    assert ours[2]["total"] == {"messages_in": 3, "messages_out": 1, "conversations": 3}
    assert inbox.daily_stats(other_admin.organization_id, days=1)[0]["messenger"]["messages_in"] == 1
    rows = db.session.query(PlatformDailyStat).count()
    assert inbox.roll_up_daily_stats() == rows  # again: the same rows, updated in place
    assert db.session.query(PlatformDailyStat).count() == rows
    assert inbox.daily_stats(accounts.organization_id, days=3, today=today) == ours
    # A message moved out of a day leaves that day's row at zero rather than stale.
    yesterday_message.created_at = utcnow() - timedelta(days=5)
    db.session.commit()
    inbox.roll_up_daily_stats()
    assert inbox.daily_stats(accounts.organization_id, days=2, today=today)[0]["messenger"]["messages_in"] == 0
    chart = api.get("/api/inbox/stats/?days=2")
    assert chart.status_code == 200 and len(chart.json) == 2 and chart.json[-1]["total"]["messages_out"] == 1
