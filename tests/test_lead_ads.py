"""Facebook Lead Ads with real parts: a Graph API on loopback (tests/graph_fake.py), leadgen webhooks
signed with X-Hub-Signature-256 posted to the integration's public address, the JSON API, and a real
RQ worker. A lead is stored first, fetched from Graph, and made into one tagged, enrolled contact."""
import hashlib
import hmac
import json
import re
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, Integration, IntegrationLog, Lead, WebhookEvent
from app.services import integrations as integrations_svc
from app.services import leads as leads_svc
from app.services import webhooks
from tests.conftest import point_at
from tests.graph_fake import BUSY_TOKEN, EXPIRED_TOKEN, FORM_ID, OTHER_FORM_ID, PAGE_ID, PAGE_TOKEN, USER_BUSY_TOKEN, \
    GraphFake

APP_ID, APP_SECRET = "1234567890123", "facebook-app-secret-0123456789"
PUBLIC_BASE = "https://switchboard.example.com"
LEAD_ID, SECOND_LEAD_ID = "900000000000001", "900000000000002"


@pytest.fixture
def graph(app, monkeypatch, httpserver):
    version = app.config["META_API_VERSION"]
    fake = GraphFake(version, httpserver.url_for("/").rstrip("/"))
    httpserver.expect_request(re.compile(f"/{version}/.*"), method="GET").respond_with_handler(fake.handle)
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", httpserver.url_for("/"))
    fake.add_lead(LEAD_ID, email="Jane.Doe@Example.com", full_name="Jane Doe", phone_number="(415) 555-2671",
                  company_name="Acme Dental", budget="5000")
    yield fake
    httpserver.check_assertions()  # nothing asked Graph anything else


def graph_requests(httpserver):
    return [(r.path, r.args.to_dict()) for r, _ in httpserver.log]


def configure(api, **fields):
    created = api.post("/api/integrations/", json={"integration_type": "facebook", "name": "Facebook page",
                                                   "provider": "graph_api"})
    assert created.status_code == 201, created.json
    values = {"app_id": APP_ID, "app_secret": APP_SECRET, "page_id": PAGE_ID, "page_access_token": PAGE_TOKEN,
              "enable_lead_ads": True, "lead_form_id": FORM_ID, "apply_tag": "Facebook lead",
              "trigger_campaign_on_lead": "Welcome", "lead_field_mapping": {"company_name": "fields.company"},
              **fields}
    r = api.post(f"/api/integrations/{created.json['id']}/configure/facebook/", json=values)
    assert r.status_code == 200, r.json
    return api.get(f"/api/integrations/{created.json['id']}/").json


def set_token(api, integration, token):
    r = api.post(f"/api/integrations/{integration['id']}/configure/facebook/", json={"page_access_token": token})
    assert r.status_code == 200, r.json


def welcome_campaign(api):
    r = api.post("/api/campaigns/", json={"name": "Welcome", "steps": [
        {"channel": "email", "delay_minutes": 60, "subject": "Welcome {{first_name}}", "body": "Thanks for asking."}]})
    assert r.status_code == 201, r.json
    return r.json


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def path_of(integration) -> str:
    assert integration["webhook_url"].startswith(PUBLIC_BASE)
    return integration["webhook_url"].removeprefix(PUBLIC_BASE)


def post_webhook(app, integration, body: bytes, signature: str | None = "sign"):
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "sign" else signature
    return app.test_client().post(path_of(integration), data=body, headers=headers)


def leadgen(*leadgen_ids, form_id=FORM_ID, page_id=PAGE_ID, indent=None, ad_id="444444444",
            sent_at=1767605401) -> bytes:
    changes = [{"field": "leadgen", "value": {"ad_id": ad_id, "form_id": form_id, "leadgen_id": leadgen_id,
                                              "created_time": 1767605400, "page_id": page_id,
                                              "adgroup_id": "44444444444"}} for leadgen_id in leadgen_ids]
    document = {"object": "page", "entry": [{"id": page_id, "time": sent_at, "changes": changes}]}
    return json.dumps(document, indent=indent, separators=None if indent else (",", ":")).encode()


def stored_events():
    db.session.expire_all()
    return db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()


def all_leads():
    db.session.expire_all()
    return db.session.scalars(select(Lead).order_by(Lead.id)).all()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def lead_fetches(httpserver, leadgen_id=LEAD_ID) -> int:
    return sum(path.endswith(f"/{leadgen_id}") for path, _ in graph_requests(httpserver))


# --- verification ---------------------------------------------------------------------------------

def test_verification_get_echoes_the_challenge_only_for_the_right_token(app, api):
    fb = configure(api)
    client, path, token = app.test_client(), path_of(fb), fb["config"]["verify_token"]
    assert token and fb["webhook_url"] == f"{PUBLIC_BASE}/api/webhooks/graph_api/{path.split('/')[-2]}/"
    ok = client.get(path, query_string={"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": token})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444" and ok.mimetype == "text/plain"
    wrong = client.get(path, query_string={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                           "hub.verify_token": token[:-1]})
    assert wrong.status_code == 403 and "verify token does not match" in wrong.json["error"]
    assert "1158201444" not in wrong.get_data(as_text=True)
    assert client.get(path, query_string={"hub.mode": "unsubscribe", "hub.challenge": "1",
                                          "hub.verify_token": token}).status_code == 403
    assert client.get(path, query_string={"hub.mode": "subscribe", "hub.challenge": "<b>x</b>",
                                          "hub.verify_token": token}).status_code == 400
    assert client.get(path).status_code == 405
    assert stored_events() == []


# --- a lead from a signed webhook -------------------------------------------------------------------

def test_signed_leadgen_becomes_a_tagged_enrolled_contact(app, api, graph, httpserver, run_jobs):
    campaign = welcome_campaign(api)
    fb = configure(api)
    body = leadgen(LEAD_ID)
    response = post_webhook(app, fb, body)
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    [row] = stored_events()
    assert row.status == "pending" and row.body == body and row.dedup_key == f"leadgen:{LEAD_ID}"
    assert row.headers["x-hub-signature-256"] == sign(body)
    assert graph_requests(httpserver) == []  # answered before Meta is asked anything

    run_jobs()
    assert graph_requests(httpserver) == [(f"/v25.0/{LEAD_ID}", {"access_token": PAGE_TOKEN})]
    [lead] = all_leads()
    assert (lead.status, lead.source, lead.form_id, lead.page_id, lead.ad_id) == \
        ("processed", "webhook", FORM_ID, PAGE_ID, "444444444")
    assert lead.created_time.isoformat() == "2026-01-05T09:30:00" and lead.attempts == 1 and lead.error is None
    assert {"name": "budget", "values": ["5000"]} in lead.field_data
    contact = api.get(f"/api/contacts/{lead.contact_id}/").json
    assert (contact["email"], contact["phone"], contact["name"], contact["first_name"], contact["last_name"]) == \
        ("jane.doe@example.com", "+14155552671", "Jane Doe", "Jane", "Doe")
    assert contact["fields"] == {"company": "Acme Dental", "budget": "5000"}  # mapped, and unmapped under its key
    assert contact["tags"] == ["Facebook lead"] and contact["source"] == "Facebook Lead Ads"
    timeline = [(e["kind"], e["description"]) for e in contact["timeline"]]
    assert ("lead", f"Lead from Facebook Lead Ads form {FORM_ID}.") in timeline
    lead_event = next(e for e in contact["timeline"] if e["kind"] == "lead")
    assert lead_event["data"]["leadgen_id"] == LEAD_ID and lead_event["data"]["answers"]["company_name"] == "Acme Dental"
    [enrollment] = api.get(f"/api/campaigns/{campaign['id']}/enrollments/").json["items"]
    assert enrollment["contact_id"] == contact["id"] and enrollment["status"] == "active"
    assert enrollment["source"] == "Facebook Lead Ads"
    assert stored_events()[0].status == "processed" and stored_events()[0].error is None


def test_the_same_leadgen_twice_makes_one_lead_and_one_contact(app, api, graph, httpserver, run_jobs):
    campaign = welcome_campaign(api)
    fb = configure(api)
    body = leadgen(LEAD_ID)
    assert post_webhook(app, fb, body).json == {"status": "accepted"}
    assert post_webhook(app, fb, body).json == {"status": "duplicate"}  # Meta's retry of the same delivery
    # Another body announcing the same lead (serialised otherwise, another ad): the same delivery.
    other = leadgen(LEAD_ID, indent=2, ad_id="444444445")
    assert other != body and post_webhook(app, fb, other).json == {"status": "duplicate"}
    run_jobs()
    # A notification of two leads, one of them known: stored, and only the new one is made.
    graph.add_lead(SECOND_LEAD_ID, email="sam@example.com", full_name="Sam Lee")
    both = leadgen(SECOND_LEAD_ID, LEAD_ID)
    assert post_webhook(app, fb, both).json == {"status": "accepted"}
    assert post_webhook(app, fb, leadgen(LEAD_ID, SECOND_LEAD_ID, indent=1)).json == {"status": "duplicate"}
    run_jobs()
    assert len(stored_events()) == 2 and all(row.status == "processed" for row in stored_events())
    assert [(lead.leadgen_id, lead.status) for lead in all_leads()] == [(LEAD_ID, "processed"),
                                                                        (SECOND_LEAD_ID, "processed")]
    assert lead_fetches(httpserver) == 1 and count(Contact) == 2
    # A replay of the first event changes nothing.
    webhooks.replay(stored_events()[0])
    run_jobs()
    assert lead_fetches(httpserver) == 1 and count(Contact) == 2 and count(Lead) == 2
    assert api.get(f"/api/campaigns/{campaign['id']}/enrollments/").json["total"] == 2


def test_a_lead_updates_the_contact_it_matches(app, api, graph, run_jobs):
    existing = api.post("/api/contacts/", json={"email": "jane.doe@example.com", "name": "Jane D.", "tags": ["vip"]})
    assert existing.status_code == 201
    fb = configure(api, trigger_campaign_on_lead="")
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()
    [lead] = all_leads()
    assert lead.contact_id == existing.json["id"] and count(Contact) == 1
    contact = api.get(f"/api/contacts/{lead.contact_id}/").json
    assert contact["name"] == "Jane D." and contact["phone"] == "+14155552671"  # filled in, not overwritten
    assert sorted(contact["tags"]) == ["Facebook lead", "vip"]


def test_a_lead_without_email_or_phone_is_kept_as_failed_with_the_reason(app, api, graph, run_jobs):
    graph.add_lead(SECOND_LEAD_ID, full_name="No Contact Details", budget="100")
    fb = configure(api)
    post_webhook(app, fb, leadgen(SECOND_LEAD_ID))
    run_jobs()
    [lead] = all_leads()
    assert lead.status == "failed" and lead.contact_id is None
    assert lead.error.startswith("The lead has neither an email address nor a phone number")
    assert {"name": "full_name", "values": ["No Contact Details"]} in lead.field_data  # the answers are kept
    assert count(Contact) == 0
    assert stored_events()[0].status == "processed"  # the webhook itself was handled


def test_an_invalid_phone_number_is_kept_as_a_custom_field(app, api, graph, run_jobs):
    graph.add_lead(SECOND_LEAD_ID, email="kim@example.com", phone_number="12", work_email="kim@work.example.com")
    fb = configure(api, lead_field_mapping={"work_email": "email"})
    post_webhook(app, fb, leadgen(SECOND_LEAD_ID))
    run_jobs()
    [lead] = all_leads()
    assert lead.status == "processed" and "“phone_number” is not a valid phone number" in lead.error
    contact = api.get(f"/api/contacts/{lead.contact_id}/").json
    assert contact["email"] == "kim@example.com" and contact["phone"] is None
    # The first email wins; the second mapped one is kept under its own key.
    assert contact["fields"] == {"phone_number": "12", "work_email": "kim@work.example.com"}


def test_contacts_are_not_made_when_switched_off(app, api, graph, run_jobs):
    fb = configure(api, auto_create_contacts=False)
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()
    [lead] = all_leads()
    assert lead.status == "processed" and lead.contact_id is None and lead.field_data
    assert count(Contact) == 0


def test_messenger_and_other_page_fields_parse_into_nothing(app, api, graph, httpserver, run_jobs):
    fb = configure(api)
    messaging = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": 1767605401, "messaging": [
        {"sender": {"id": "6543210987654321"}, "recipient": {"id": PAGE_ID}, "timestamp": 1767605400000,
         "message": {"mid": "m_abc", "text": "Hello"}}]}]}).encode()
    feed = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": 1767605401, "changes": [
        {"field": "feed", "value": {"item": "like", "verb": "add"}}]}]}).encode()
    assert post_webhook(app, fb, messaging).json == {"status": "accepted"}
    assert post_webhook(app, fb, feed).json == {"status": "accepted"}
    run_jobs()
    assert [(row.status, row.error) for row in stored_events()] == [("processed", None), ("processed", None)]
    assert all_leads() == [] and graph_requests(httpserver) == []


@pytest.mark.parametrize("case", ["lead ads off", "other form", "other page", "deactivated"])
def test_leads_the_integration_does_not_take_are_noted_and_kept_for_a_replay(app, api, graph, run_jobs, case):
    fields = {"lead ads off": {"enable_lead_ads": False}}.get(case, {})
    fb = configure(api, **fields)
    body = {"other form": leadgen(LEAD_ID, form_id=OTHER_FORM_ID),
            "other page": leadgen(LEAD_ID, page_id="999999999999999")}.get(case, leadgen(LEAD_ID))
    if case == "deactivated":
        assert api.put(f"/api/integrations/{fb['id']}/", json={"is_active": False}).status_code == 200
    assert post_webhook(app, fb, body).json == {"status": "accepted"}
    run_jobs()
    [row] = stored_events()
    assert row.status == "processed" and row.error.startswith(f"Lead {LEAD_ID} was not taken:")
    assert all_leads() == []
    if case == "lead ads off":  # switched on, a replay takes it
        api.post(f"/api/integrations/{fb['id']}/configure/facebook/", json={"enable_lead_ads": True})
        webhooks.replay(row)
        run_jobs()
        assert [lead.status for lead in all_leads()] == ["processed"]


# --- refused requests -----------------------------------------------------------------------------

def test_forged_malformed_oversize_and_misaddressed_webhooks_store_nothing(app, api, other_api, graph, httpserver,
                                                                            run_jobs):
    fb = configure(api)
    body = leadgen(LEAD_ID)
    forged = post_webhook(app, fb, body, signature=sign(body, "not-the-app-secret"))
    assert forged.status_code == 401 and "does not match" in forged.json["error"]
    missing = post_webhook(app, fb, body, signature=None)
    assert missing.status_code == 401 and "not signed" in missing.json["error"]
    assert post_webhook(app, fb, body, signature="sha256=").status_code == 401
    assert post_webhook(app, fb, body, signature="sha1=" + hashlib.sha1(body).hexdigest()).status_code == 401
    tampered = body.replace(LEAD_ID.encode(), SECOND_LEAD_ID.encode())
    assert post_webhook(app, fb, tampered, signature=sign(body)).status_code == 401
    for malformed, words in [(b'{"object":"page","entry":', "not JSON"), (b"\xff\xfe", "not JSON"),
                             (b'{"object":"whatsapp_business_account","entry":[]}', 'object "page"'),
                             (b'{"object":"page","entry":{}}', "no list of entries"),
                             (b'{"object":"page","entry":[{"changes":{}}]}', "not a list"),
                             (b'{"object":"page","entry":[{"changes":[{"field":"leadgen","value":{}}]}]}', "leadgen_id"),
                             (b'{"object":"page","entry":[{"changes":[{"field":"leadgen","value":{"leadgen_id":'
                              b'"../../me"}}]}]}', "leadgen_id"),
                             (b'{"object":"page","entry":[{"changes":[{"field":"leadgen","value":"x"}]}]}', "leadgen_id")]:
        response = post_webhook(app, fb, malformed)
        assert response.status_code == 400 and words in response.json["error"], (malformed, response.json)
    oversize = b'{"object":"page","entry":[],"pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert post_webhook(app, fb, oversize).status_code == 413
    client = app.test_client()
    headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
    assert client.post("/api/webhooks/graph_api/no-such-integration/", data=body, headers=headers).status_code == 404
    assert client.post(path_of(fb).replace("/graph_api/", "/cloud_api/"), data=body, headers=headers).status_code == 404
    assert client.post("/api/webhooks/graph_api/" + "x" * 100 + "/", data=body, headers=headers).status_code == 404
    # Another organisation's Facebook integration, with its own app secret: our signed lead is refused there.
    theirs = configure(other_api, app_secret="their-own-app-secret")
    assert client.post(path_of(theirs), data=body, headers=headers).status_code == 401
    run_jobs()
    assert stored_events() == [] and all_leads() == [] and graph_requests(httpserver) == []


def test_without_an_app_secret_nothing_is_accepted(app, api):
    fb = configure(api)
    row = db.session.get(Integration, fb["id"])
    integrations_svc.store_secrets(row, {"page_access_token": PAGE_TOKEN})
    db.session.commit()
    response = post_webhook(app, fb, leadgen(LEAD_ID), signature=sign(leadgen(LEAD_ID), ""))
    assert response.status_code == 401 and "set the App secret" in response.json["error"]
    assert stored_events() == []


# --- Graph errors ---------------------------------------------------------------------------------

def test_an_expired_token_puts_the_integration_in_error_and_the_lead_is_not_lost(app, api, browser, graph, run_jobs):
    fb = configure(api, page_access_token=EXPIRED_TOKEN)
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()
    data = api.get(f"/api/integrations/{fb['id']}/").json
    assert data["status"] == "error" and "reconnect needed" in data["last_error"]
    assert "(the token has expired)" in data["last_error"] and "Session has expired" in data["last_error"]
    logged = db.session.scalars(select(IntegrationLog.message).where(IntegrationLog.level == "error")).all()
    assert any("reconnect needed" in message for message in logged)
    [lead] = all_leads()
    assert lead.status == "failed" and "reconnect needed" in lead.error and lead.contact_id is None
    [row] = stored_events()
    assert row.status == "failed" and "reconnect needed" in row.error and row.body == leadgen(LEAD_ID)
    # More leads while the token is expired: each kept, the error logged once.
    graph.add_lead(SECOND_LEAD_ID, email="sam@example.com")
    post_webhook(app, fb, leadgen(SECOND_LEAD_ID))
    run_jobs()
    assert [lead.status for lead in all_leads()] == ["failed", "failed"]
    assert db.session.scalar(select(func.count()).select_from(IntegrationLog)
                             .where(IntegrationLog.event == "lead_fetch_failed")) == 1

    # Reconnected: a replay of the stored webhook event makes the lead.
    set_token(api, fb, PAGE_TOKEN)
    replay = browser.post(f"/integrations/{fb['id']}/webhooks/{row.id}/replay",
                          token_from=f"/integrations/{fb['id']}/webhooks")
    assert replay.status_code == 302
    run_jobs()
    lead = all_leads()[0]
    assert lead.status == "processed" and lead.error is None and lead.attempts == 2
    assert api.get(f"/api/contacts/{lead.contact_id}/").json["email"] == "jane.doe@example.com"
    assert stored_events()[0].status == "processed"
    data = api.get(f"/api/integrations/{fb['id']}/").json  # working again, without waiting for a test
    assert data["status"] == "active" and data["last_error"] is None
    assert db.session.scalar(select(func.count()).select_from(IntegrationLog)
                             .where(IntegrationLog.event == "lead_fetch_recovered")) == 1


@pytest.mark.parametrize("token", [BUSY_TOKEN, USER_BUSY_TOKEN])
def test_a_rate_limit_keeps_the_event_for_a_later_try(app, api, graph, run_jobs, token):
    fb = configure(api, page_access_token=token)
    post_webhook(app, fb, leadgen(LEAD_ID))
    run_jobs()
    [row] = stored_events()
    assert row.status == "pending" and "rate limiting" in row.error and row.error.endswith("Will try again.")
    [lead] = all_leads()
    assert lead.status == "pending" and "rate limiting" in lead.error
    assert api.get(f"/api/integrations/{fb['id']}/").json["status"] != "error"  # a rate limit is no broken integration
    # Meta lets us through again: the minute's sweep takes the event up.
    set_token(api, fb, PAGE_TOKEN)
    webhooks.sweep()
    run_jobs()
    assert stored_events()[0].status == "processed" and all_leads()[0].status == "processed"


def test_a_lead_meta_does_not_know_fails_with_metas_words(app, api, graph, run_jobs):
    fb = configure(api)
    post_webhook(app, fb, leadgen("900000000000099"))
    run_jobs()
    [lead] = all_leads()
    assert lead.status == "failed" and "does not know this ID" in lead.error and "does not exist" in lead.error
    assert stored_events()[0].status == "failed"
    assert api.get(f"/api/integrations/{fb['id']}/").json["status"] != "error"


def test_a_lead_processed_twice_at_once_is_made_once(app, api, graph, run_jobs):
    """A webhook and an import can hold the same lead at the same time: one of them finishes it."""
    fb = configure(api)
    integration = db.session.get(Integration, fb["id"])
    lead, created = leads_svc.record(integration, LEAD_ID, source="webhook")
    again, created_again = leads_svc.record(integration, LEAD_ID, source="import")
    db.session.commit()
    assert created and not created_again and again.id == lead.id
    fetched = integrations_svc.adapter_for(integration).fetch_lead(integration.config,
                                                                   integrations_svc.get_secrets(integration), LEAD_ID)
    stale = db.session.get(Lead, lead.id)
    assert leads_svc.process_lead(stale, fetched) == "processed"
    db.session.expire_all()
    other_view = db.session.get(Lead, lead.id)
    assert leads_svc._make_contact(integration, other_view, fetched) == "processed"  # the claim finds it done
    assert count(Contact) == 1
    contact = db.session.get(Contact, all_leads()[0].contact_id)
    assert [e.kind for e in contact.events].count("lead") == 1


# --- leads at the organisation's Meta app address (Connect with Meta) ------------------------------

def connected_page(api) -> dict:
    """A Page connected through the organisation's Meta app: no app id or secret of its own."""
    from app.crypto import vault
    from app.models import MetaApp
    fb = configure(api, app_id="", app_secret="")
    integration = db.session.get(Integration, fb["id"])
    integration.external_id = PAGE_ID
    meta_app = MetaApp(organization_id=integration.organization_id, app_id=APP_ID,
                       secrets_ciphertext=vault().encrypt_json({"app_secret": APP_SECRET}))
    db.session.add(meta_app)
    db.session.commit()
    return {**fb, "meta_path": f"/api/webhooks/meta/{meta_app.public_id}/"}


def test_leads_posted_to_the_meta_app_address_become_the_same_one_lead(app, api, graph, httpserver, run_jobs):
    campaign = welcome_campaign(api)
    page = connected_page(api)
    body = leadgen(LEAD_ID, sent_at=int(time.time()))
    client = app.test_client()
    response = client.post(page["meta_path"], data=body, headers={"X-Hub-Signature-256": sign(body)})
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    assert graph_requests(httpserver) == []  # stored and answered before Meta is asked
    run_jobs()
    [lead] = all_leads()
    assert (lead.status, lead.integration_id, lead.page_id) == ("processed", page["id"], PAGE_ID)
    contact = api.get(f"/api/contacts/{lead.contact_id}/").json
    assert contact["email"] == "jane.doe@example.com" and contact["tags"] == ["Facebook lead"]
    assert api.get(f"/api/campaigns/{campaign['id']}/enrollments/").json["total"] == 1
    # The same lead announced again, in another body, to the app address: still one lead, fetched once.
    again = leadgen(LEAD_ID, indent=2, sent_at=int(time.time()))
    assert client.post(page["meta_path"], data=again, headers={"X-Hub-Signature-256": sign(again)}).status_code == 200
    run_jobs()
    assert count(Lead) == 1 and count(Contact) == 1 and lead_fetches(httpserver) == 1
    assert all(row.status == "processed" for row in stored_events())


def test_a_rate_limited_lead_at_the_meta_app_address_waits_for_a_later_try(app, api, graph, run_jobs):
    page = connected_page(api)
    set_token(api, page, BUSY_TOKEN)
    body = leadgen(LEAD_ID, sent_at=int(time.time()))
    app.test_client().post(page["meta_path"], data=body, headers={"X-Hub-Signature-256": sign(body)})
    run_jobs()
    [row] = stored_events()
    assert row.status == "pending" and row.error.endswith("Will try again.")
    set_token(api, page, PAGE_TOKEN)
    webhooks.sweep()
    run_jobs()
    assert stored_events()[0].status == "processed" and all_leads()[0].status == "processed"


def test_a_forged_lead_at_the_meta_app_address_is_refused(app, api, graph, httpserver):
    page = connected_page(api)
    body = leadgen(LEAD_ID, sent_at=int(time.time()))
    response = app.test_client().post(page["meta_path"], data=body,
                                      headers={"X-Hub-Signature-256": sign(body, "another-secret")})
    assert response.status_code == 401 and stored_events() == [] and all_leads() == []
