"""Sync of Messenger and Instagram conversations (what webhooks missed, no duplicates, paging,
last_sync_at), the sync API, WhatsApp template sync with paging, and the cron entry points,
against a Graph API on loopback and a real RQ worker."""
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import Contact, Conversation, ConversationMessage, Integration, IntegrationLog, MessageTemplate, utcnow
from app.queue import task_queue
from app.services import inbox
from tests.graph_messaging_fake import (  # noqa: F401  (fixtures)
    EXPIRED_TOKEN,
    IG_ID,
    IGSID,
    PAGE_ID,
    PSID,
    WABA_ID,
    accounts,
    connect_accounts,
    graph,
    messenger_item,
    page_notification,
    post,
)

BOB = "5550001112223334"


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def thread(person: str, name: str, messages: list[tuple[str, str, str | None, datetime]], *, account=PAGE_ID,
           account_name="Acme Page", username=None) -> dict:
    """A conversation as GET /<page-id>/conversations returns it: messages newest first."""
    people = [{"id": person, "name": name, **({"username": username} if username else {})},
              {"id": account, "name": account_name}]
    items = []
    for mid, sender, text, moment in sorted(messages, key=lambda m: m[3], reverse=True):
        item = {"id": mid, "from": {"id": sender}, "created_time": graph_time(moment),
                "to": {"data": [p for p in people if p["id"] != sender]}}
        if text is not None:
            item["message"] = text
        items.append(item)
    return {"id": f"t_{person}", "updated_time": graph_time(max(m[3] for m in messages)),
            "participants": {"data": people}, "messages": {"data": items}}


def conversations_by_person():
    db.session.expire_all()
    return {c.external_user_id: c for c in db.session.scalars(select(Conversation))}


def mids(conversation):
    return [m.provider_message_id for m in db.session.scalars(
        select(ConversationMessage).where(ConversationMessage.conversation_id == conversation.id)
        .order_by(ConversationMessage.created_at, ConversationMessage.id))]


def test_sync_fills_what_webhooks_missed_without_duplicates(app, api, accounts, graph, run_jobs):
    now = datetime.now(UTC).replace(microsecond=0)
    hello_at = now - timedelta(minutes=3)
    post(app, accounts, page_notification(messenger_item("Hello", mid="m_1", timestamp_ms=int(hello_at.timestamp() * 1000))))
    run_jobs()
    picture = graph.cdn_url("menu.jpg", b"\xff\xd8 menu", "image/jpeg")
    graph.conversations["messenger"] = [
        thread(PSID, "Jane Doe", [("m_1", PSID, "Hello", hello_at),
                                  ("m_2", PSID, "Are you open today?", now - timedelta(minutes=2)),
                                  ("m_3", PAGE_ID, "Yes, until 6", now - timedelta(minutes=1))]),
        thread(BOB, "Bob Stone", [("m_b1", BOB, "Price list please", now - timedelta(hours=1))]),
        thread("7770001112223334", "Cy Old", [("m_c1", "7770001112223334", "hi", now - timedelta(days=3))]),
    ]
    graph.conversations["messenger"][1]["messages"]["data"][0]["attachments"] = {"data": [
        {"id": "att1", "mime_type": "image/jpeg", "name": "menu.jpg", "image_data": {"url": picture}}]}
    response = api.post(f"/api/platforms/{accounts.messenger_id}/sync")
    assert response.status_code == 202 and response.json["status"] == "queued" and response.json["job_id"]
    run_jobs()
    found = conversations_by_person()
    assert set(found) == {PSID, BOB, "7770001112223334"}
    jane, bob = found[PSID], found[BOB]
    assert mids(jane) == ["m_1", "m_2", "m_3"]  # m_1 came by webhook and is not stored twice
    assert jane.unread_count == 1  # the first sync brings history as read
    assert jane.last_message_preview == "You: Yes, until 6"
    assert bob.name == "Bob Stone" and db.session.get(Contact, bob.contact_id).fields["messenger_psid"] == BOB
    [bobs] = db.session.scalars(select(ConversationMessage).where(ConversationMessage.conversation_id == bob.id)).all()
    assert (bobs.kind, bobs.text, bobs.media["status"]) == ("image", "Price list please", "stored")
    calls = graph.sent(f"{PAGE_ID}/conversations", method="GET")
    assert len(calls) == 2 and calls[1].args["after"] == "cursor-2"  # paged through
    assert calls[0].args["platform"] == "messenger" and calls[0].args["access_token"] == "EAAGpage"
    assert calls[0].args["fields"] == ("participants,updated_time,messages.limit(25)"
                                       "{id,message,from,to,created_time,attachments}")
    integration = db.session.get(Integration, accounts.messenger_id)
    first_sync = integration.last_sync_at
    assert first_sync is not None and utcnow() - first_sync < timedelta(minutes=1)

    # Later syncs count what is new as unread, and stop at conversations not updated since the last one.
    graph.conversations["messenger"][0] = thread(PSID, "Jane Doe", [
        ("m_2", PSID, "Are you open today?", now - timedelta(minutes=2)),
        ("m_3", PAGE_ID, "Yes, until 6", now - timedelta(minutes=1)),
        ("m_4", PSID, "Great, coming over", now)])
    graph.conversations["messenger"][2]["messages"]["data"].append(
        {"id": "m_c0", "from": {"id": "7770001112223334"}, "message": "older", "created_time": graph_time(
            now - timedelta(days=4))})
    assert inbox.sync_integration(db.session.get(Integration, accounts.messenger_id)) == 1
    found = conversations_by_person()
    assert mids(found[PSID]) == ["m_1", "m_2", "m_3", "m_4"] and found[PSID].unread_count == 2
    assert mids(found["7770001112223334"]) == ["m_c1"]  # the stale conversation was not read again


def test_instagram_sync_reads_the_pages_instagram_conversations(app, accounts, graph, run_jobs):
    now = datetime.now(UTC)
    graph.conversations["instagram"] = [thread(IGSID, None, [("ig_1", IGSID, "Love this!", now)], account=IG_ID,
                                               account_name=None, username="ivy.grant")]
    assert inbox.sync_integration(db.session.get(Integration, accounts.instagram_id)) == 1
    call = graph.sent(f"{PAGE_ID}/conversations", method="GET")[0]
    assert call.args["platform"] == "instagram"
    conversation = conversations_by_person()[IGSID]
    assert (conversation.channel, conversation.name) == ("instagram", "@ivy.grant")
    run_jobs()  # the profile job gives the real name
    assert conversations_by_person()[IGSID].name == "@ivy.grant"  # an existing name is kept
    assert db.session.get(Contact, conversation.contact_id).name == "Ivy Grant"


def test_the_sync_api_refuses_other_accounts(app, api, other_api, accounts, graph, run_jobs):
    assert other_api.post(f"/api/platforms/{accounts.messenger_id}/sync").status_code == 404
    assert api.post("/api/platforms/99999999/sync").status_code == 404
    refused = api.post(f"/api/platforms/{accounts.whatsapp_id}/sync")
    assert refused.status_code == 400 and refused.json["errors"]["integration_id"] == [
        "Only Messenger and Instagram accounts are synced."]
    assert api.post(f"/api/platforms/{accounts.messenger_id}/sync").json["status"] == "queued"
    again = api.post(f"/api/platforms/{accounts.messenger_id}/sync")
    assert again.status_code == 202 and again.json == {"job_id": None, "status": "already syncing"}
    run_jobs()
    assert api.post(f"/api/platforms/{accounts.messenger_id}/sync").json["status"] == "queued"
    assert len(task_queue().get_job_ids()) == 1


def test_a_sync_that_meta_refuses_is_logged_and_changes_nothing(app, accounts, graph, run_jobs):
    from app.services import integrations as svc
    page = db.session.get(Integration, accounts.messenger_id)
    svc.store_secrets(page, {"page_access_token": EXPIRED_TOKEN})
    db.session.commit()
    assert inbox.sync_job(page.id) == "failed"
    log = db.session.scalars(select(IntegrationLog).where(IntegrationLog.integration_id == page.id)
                             .order_by(IntegrationLog.id.desc())).first()
    assert log.event == "sync_failed" and "reconnect needed" in log.message
    assert db.session.get(Integration, page.id).last_sync_at is None


def test_cron_queues_a_sync_per_connected_account(app, admin, accounts, graph, run_jobs):
    page = db.session.get(Integration, accounts.messenger_id)
    assert inbox.sync_all() == 2  # the Page and the Instagram account; WhatsApp has nothing to sync
    run_jobs()
    page.needs_reconnect = True
    db.session.commit()
    assert inbox.sync_all() == 1


# --- templates ---------------------------------------------------------------------------------------

def template(name, body, status="APPROVED", language="en_US"):
    return {"name": name, "language": language, "status": status, "category": "UTILITY", "id": name,
            "components": [{"type": "BODY", "text": body}, {"type": "FOOTER", "text": "Acme"}]}


def test_templates_are_synced_through_every_page_and_follow_deletions(app, api, other_api, accounts, graph, run_jobs):
    graph.templates = [template("welcome", "Welcome to Acme!"),
                       template("order_ready", "Hi {{1}}, order {{2}} is ready at {{3}}."),
                       template("order_ready", "Hola {{1}}, pedido {{2}} listo en {{3}}.", language="es"),
                       template("named", "Hi {{first_name}}, see you {{when}}; {{first_name}}!"),
                       template("promo", "Sale {{1}}", status="PENDING")]
    response = api.post(f"/api/platforms/{accounts.whatsapp_id}/templates/sync")
    assert response.status_code == 202
    run_jobs()
    stored = {(t.name, t.language): (t.status, t.parameter_count) for t in db.session.scalars(select(MessageTemplate))}
    assert stored == {("welcome", "en_US"): ("APPROVED", 0), ("order_ready", "en_US"): ("APPROVED", 3),
                      ("order_ready", "es"): ("APPROVED", 3), ("named", "en_US"): ("APPROVED", 2),
                      ("promo", "en_US"): ("PENDING", 1)}
    calls = graph.sent(f"{WABA_ID}/message_templates", method="GET")
    assert len(calls) == 3 and calls[0].args["fields"] == "name,status,category,language,components"
    assert calls[0].headers["Authorization"] == "Bearer EAAGwhatsapp"
    whatsapp = db.session.get(Integration, accounts.whatsapp_id)
    assert [t.name for t in inbox.approved_templates(whatsapp)] == ["named", "order_ready", "order_ready", "welcome"]

    graph.templates = graph.templates[:2]
    assert inbox.sync_templates(whatsapp) == 2
    assert db.session.query(MessageTemplate).count() == 2

    assert other_api.post(f"/api/platforms/{accounts.whatsapp_id}/templates/sync").status_code == 404
    assert api.post(f"/api/platforms/{accounts.messenger_id}/templates/sync").status_code == 400
    assert inbox.sync_all_templates() == 1


def test_a_template_sync_with_a_refused_token_is_logged(app, accounts, graph):
    from app.services import integrations as svc
    whatsapp = db.session.get(Integration, accounts.whatsapp_id)
    svc.store_secrets(whatsapp, {"access_token": EXPIRED_TOKEN})
    db.session.commit()
    assert inbox.sync_templates_job(whatsapp.id) == "failed"
    log = db.session.scalars(select(IntegrationLog).where(IntegrationLog.event == "templates_sync_failed")).one()
    assert "reconnect needed" in log.message


def test_a_second_organisation_connecting_the_same_page_syncs_its_own_conversations(app, other_admin, accounts,
                                                                                    graph, run_jobs):
    theirs = connect_accounts(other_admin.organization_id, app_secret="globex-secret")
    graph.conversations["messenger"] = [thread(PSID, "Jane Doe", [("m_1", PSID, "Hello", datetime.now(UTC))])]
    inbox.sync_integration(db.session.get(Integration, accounts.messenger_id))
    inbox.sync_integration(db.session.get(Integration, theirs.messenger_id))
    rows = db.session.scalars(select(Conversation).order_by(Conversation.id)).all()
    assert [r.organization_id for r in rows] == [accounts.organization_id, theirs.organization_id]
