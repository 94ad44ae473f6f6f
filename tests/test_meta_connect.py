"""Connect with Meta against a loopback Meta (tests/meta_fake.py): the Meta app's credentials, the
dialog address and its state, the callback (code exchange, long-lived exchange, Pages with paging,
Instagram accounts), the pick, the webhook subscription, and every way it can be refused."""
from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from app.extensions import db
from app.models import Integration, IntegrationLog, OAuthState, PendingConnection, utcnow
from app.providers.meta_oauth import BASE_SCOPES, PAGE_WEBHOOK_FIELDS
from app.services import accounts
from app.services import integrations as svc
from tests.conftest import Browser, make_user, point_at
from tests.meta_fake import APP_ID, APP_SECRET, FakeMeta

BASE = "https://switchboard.example.com"
CALLBACK = f"{BASE}/api/platforms/callback"
PAGE_1, PAGE_2, PAGE_3 = "101000000000001", "101000000000002", "101000000000003"
IG_1 = "17841400000000001"


@pytest.fixture
def meta(app, httpserver, monkeypatch):
    fake = FakeMeta(httpserver)
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", fake.base)
    monkeypatch.setitem(app.config, "META_OAUTH_DIALOG_URL", fake.dialog_url)
    return fake


@pytest.fixture
def credentials(api, meta):
    response = api.post("/api/meta/credentials/", json={"app_id": APP_ID, "app_secret": APP_SECRET})
    assert response.status_code == 200, response.json
    return response.json


def start(browser, platform="messenger", **params) -> str:
    response = browser.get(f"/platforms/connect/{platform}", query_string=params)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def local(location: str) -> str:
    """Meta redirects to the public address (with Meta's "#_=_"); the test client takes the path."""
    assert location.startswith(CALLBACK + "?"), location
    return location.removeprefix(BASE).split("#")[0]


def consent_and_return(browser, meta, choice="allow", **params):
    return browser.get(local(meta.consent(start(browser, **params), choice)))


def flashed(browser) -> str:
    return browser.get("/settings").get_data(as_text=True)


def connect_first_page(browser, meta, page_id=PAGE_1, **params):
    response = consent_and_return(browser, meta, **params)
    assert response.status_code == 302, response.get_data(as_text=True)
    pick = response.headers["Location"].removesuffix("#pick")
    assert pick.startswith("/platforms/pending/")
    page = browser.get(pick).get_data(as_text=True)
    return browser.post(pick, {"page_id": page_id}, token_from=pick), pick, page


def meta_accounts(organization_id: int) -> list[Integration]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(Integration).where(Integration.organization_id == organization_id,
                                                                Integration.external_id.is_not(None))
                                   .order_by(Integration.integration_type)))


# --- the Meta app's credentials -------------------------------------------------------------

def test_credentials_are_checked_with_an_app_token_stored_encrypted_and_never_shown(api, browser, meta, admin):
    response = api.post("/api/meta/credentials/", json={"app_id": APP_ID, "app_secret": APP_SECRET})
    assert response.status_code == 200
    body = response.json
    assert body["app_id"] == APP_ID and body["app_secret_set"] is True and "app_secret" not in body
    assert body["checked"] == f"Meta accepted the credentials of app {APP_ID} (Acme Connect)."
    check = meta.calls("GET", APP_ID)[-1]
    assert check["args"] == {"fields": "id,name"} and check["token"] == f"{APP_ID}|{APP_SECRET}"
    assert body["webhook_url"].startswith(f"{BASE}/api/webhooks/meta/") and body["verify_token"]
    from app.models import MetaApp
    stored = db.session.scalar(db.select(MetaApp))
    assert APP_SECRET not in stored.secrets_ciphertext
    assert APP_SECRET not in response.get_data(as_text=True)

    # An empty secret keeps the stored one, which is checked again with the new App ID.
    assert api.post("/api/meta/credentials/", json={"app_id": APP_ID, "app_secret": ""}).status_code == 200
    assert meta.calls("GET", APP_ID)[-1]["token"] == f"{APP_ID}|{APP_SECRET}"

    page = browser.get("/settings").get_data(as_text=True)
    assert APP_SECRET not in page
    assert "An App Secret is set" in page and APP_ID in page
    assert body["webhook_url"] in page and body["verify_token"] in page
    assert f"{BASE}/api/platforms/callback" in page
    assert body["data_deletion_url"] in page and body["deauthorize_url"] in page
    assert body["data_deletion_url"].endswith("/data-deletion/") and body["deauthorize_url"].endswith("/deauthorize/")


@pytest.mark.parametrize("payload, field, words", [
    ({"app_id": "my-app", "app_secret": APP_SECRET}, "app_id", "Invalid App ID format"),
    ({"app_id": "12.5", "app_secret": APP_SECRET}, "app_id", "Invalid App ID format"),
    ({"app_id": "", "app_secret": APP_SECRET}, "app_id", "Give the App ID"),
    ({"app_id": APP_ID}, "app_secret", "Give the App Secret"),
    ({"app_id": APP_ID, "app_secret": "wrong-secret"}, "app_secret", "Meta refused this App ID and App Secret"),
    ({"app_id": APP_ID, "app_secret": 42}, "app_secret", "Give the App Secret as text."),
    ({"app_id": APP_ID, "app_secret": APP_SECRET, "extra": 1}, "extra", "This field is not known."),
    ({"app_id": True, "app_secret": APP_SECRET}, "app_id", "Invalid App ID format"),
])
def test_credentials_errors_by_field_change_nothing(api, meta, payload, field, words):
    response = api.post("/api/meta/credentials/", json=payload)
    assert response.status_code == 400
    assert words in " ".join(response.json["errors"][field])
    from app.models import MetaApp
    assert db.session.scalar(db.select(MetaApp)) is None


def test_an_app_id_sent_as_a_json_number_is_taken(api, meta):
    response = api.post("/api/meta/credentials/", json={"app_id": int(APP_ID), "app_secret": APP_SECRET})
    assert response.status_code == 200 and response.json["app_id"] == APP_ID


def test_credentials_refused_by_meta_say_what_meta_said(api, meta):
    meta.fail_next("app", "Invalid OAuth access token signature.", code=190)
    response = api.post("/api/meta/credentials/", json={"app_id": APP_ID, "app_secret": APP_SECRET})
    assert response.status_code == 400
    assert "Invalid OAuth access token signature." in response.json["errors"]["app_secret"][0]


def test_only_admins_change_the_meta_app(app, meta, admin):
    staff = make_user("Acme", "staff@acme.example.com", role="staff")
    token = accounts.create_api_token(staff)
    db.session.commit()
    client = app.test_client()
    response = client.post("/api/meta/credentials/", json={"app_id": APP_ID, "app_secret": APP_SECRET},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    page = Browser(app.test_client()).login(staff.email)
    assert page.post("/settings/meta-app", {"app_id": APP_ID, "app_secret": APP_SECRET},
                     token_from="/settings").status_code == 403
    assert "Only admins can change these." in page.get("/settings").get_data(as_text=True)


def test_settings_form_shows_errors_inline_and_saves(browser, meta):
    response = browser.post("/settings/meta-app", {"app_id": "abc", "app_secret": APP_SECRET}, token_from="/settings")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Invalid App ID format" in page and 'aria-invalid="true"' in page and APP_SECRET not in page
    response = browser.post("/settings/meta-app", {"app_id": APP_ID, "app_secret": APP_SECRET}, token_from="/settings")
    assert response.status_code == 302 and response.headers["Location"].endswith("/settings#meta")
    page = browser.get("/settings").get_data(as_text=True)
    assert "Meta app saved. Meta accepted the credentials" in page and APP_SECRET not in page


def test_connecting_before_saving_credentials_says_so(api, browser, meta):
    response = api.get("/api/platforms/messenger/connect")
    assert response.status_code == 400
    assert response.json["errors"]["meta_app"][0].startswith("Meta App credentials not configured")
    response = browser.get("/platforms/connect/messenger")
    assert response.status_code == 302 and response.headers["Location"].endswith("/settings#meta")
    assert "Meta App credentials not configured" in flashed(browser)
    assert db.session.scalar(db.select(db.func.count()).select_from(OAuthState)) == 0
    assert meta.requests == []


# --- the dialog address and its state -------------------------------------------------------------

def test_dialog_url_carries_the_app_the_redirect_the_scopes_and_a_hashed_single_use_state(api, admin, meta,
                                                                                           credentials):
    response = api.get("/api/platforms/messenger/connect")
    assert response.status_code == 200
    url = urlsplit(response.json["authorization_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == meta.dialog_url
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert set(query) == {"client_id", "redirect_uri", "state", "scope", "response_type"}
    assert query["client_id"] == APP_ID and query["redirect_uri"] == CALLBACK and query["response_type"] == "code"
    assert query["scope"].split(",") == list(BASE_SCOPES)
    assert "leads_retrieval" not in query["scope"]
    state = query["state"]
    assert len(state) >= 40
    stored = db.session.scalar(db.select(OAuthState))
    assert stored.state_hash == hashlib.sha256(state.encode()).hexdigest()
    assert stored.user_id == admin.id and stored.organization_id == admin.organization_id
    assert stored.platform == "messenger" and stored.used_at is None
    assert timedelta(minutes=9) < stored.expires_at - utcnow() <= timedelta(minutes=10)
    # Each start has its own state.
    again = parse_qs(urlsplit(api.get("/api/platforms/messenger/connect").json["authorization_url"]).query)
    assert again["state"][0] != state


def test_lead_ads_permission_when_asked_or_when_lead_ads_is_on(api, admin, meta, credentials):
    def scopes(url):
        return parse_qs(urlsplit(url).query)["scope"][0].split(",")
    assert "leads_retrieval" in scopes(api.get("/api/platforms/messenger/connect?lead_ads=1").json["authorization_url"])
    assert api.get("/api/platforms/messenger/connect?lead_ads=yes").status_code == 400
    integration, _ = svc.create_integration(admin.organization_id, admin, "facebook", "Leads page", "graph_api")
    integration.config = {**integration.config, "enable_lead_ads": True}
    db.session.commit()
    assert "leads_retrieval" in scopes(api.get("/api/platforms/messenger/connect").json["authorization_url"])
    assert "leads_retrieval" not in scopes(api.get("/api/platforms/messenger/connect?lead_ads=0").json["authorization_url"])
    assert api.get("/api/platforms/whatsapp/connect").status_code == 404
    assert api.get("/api/platforms/tiktok/connect").status_code == 404


# --- the full flow -----------------------------------------------------------------------------

def test_connect_with_meta_from_dialog_to_subscribed_page_and_instagram(app, browser, admin, meta, credentials, caplog):
    caplog.set_level(logging.DEBUG)
    location = start(browser)
    callback = meta.consent(location)
    response = browser.get(local(callback))
    assert response.status_code == 302
    pick = response.headers["Location"].removesuffix("#pick")

    # The code was exchanged, then the token for a long-lived one, with the app's credentials.
    [exchange, long_lived] = meta.calls("GET", "oauth/access_token")
    assert set(exchange["args"]) >= {"client_id", "redirect_uri", "client_secret", "code"}
    assert exchange["args"]["client_id"] == APP_ID and exchange["args"]["client_secret"] == APP_SECRET
    assert exchange["args"]["redirect_uri"] == CALLBACK
    assert long_lived["args"]["grant_type"] == "fb_exchange_token"
    assert long_lived["args"]["client_id"] == APP_ID and long_lived["args"]["client_secret"] == APP_SECRET
    short_token = long_lived["args"]["fb_exchange_token"]
    [user_token] = [t for t, info in meta.tokens.items() if info["type"] == "USER" and t != short_token]
    # Every Page was read: two pages of /me/accounts, the second by its cursor on our configured host.
    listings = meta.calls("GET", "me/accounts")
    assert len(listings) == 2 and "after" not in listings[0]["args"] and listings[1]["args"]["after"] == "cursor-2"
    assert listings[0]["args"]["fields"] == "id,name,access_token,tasks,category,instagram_business_account"
    assert {c["path"] for c in meta.requests if c["args"].get("fields") == "username"} == \
        {IG_1, "17841400000000003"}

    # Nothing is connected yet: the Pages wait, their tokens encrypted.
    pending = db.session.scalar(db.select(PendingConnection))
    assert [p["id"] for p in pending.pages] == [PAGE_1, PAGE_2, PAGE_3]
    assert meta.page_token(PAGE_1) not in pending.secrets_ciphertext
    assert meta_accounts(admin.organization_id) == []
    page = browser.get(pick).get_data(as_text=True)
    assert f'value="{PAGE_1}" id="page-{PAGE_1}" checked' in page
    assert page.count(" checked") == 1
    assert "Acme Bakery" in page and "Acme Catering" in page and "Acme Outlet" in page
    assert "Instagram: @acmebakery" in page and "No Instagram professional account linked" in page
    assert meta.page_token(PAGE_1) not in page

    response = browser.post(pick, {"page_id": PAGE_1}, token_from=pick)
    assert response.status_code == 302 and response.headers["Location"] == "/platforms"
    [subscribe] = meta.calls("POST", f"{PAGE_1}/subscribed_apps")
    assert subscribe["args"]["subscribed_fields"] == ",".join(PAGE_WEBHOOK_FIELDS)
    assert subscribe["token"] == meta.page_token(PAGE_1)
    assert meta.subscriptions == {PAGE_1: "messages,messaging_postbacks,message_deliveries,message_reads,message_echoes"}

    facebook, instagram = meta_accounts(admin.organization_id)
    assert (facebook.integration_type, facebook.provider, facebook.external_id) == ("facebook", "graph_api", PAGE_1)
    assert facebook.name == "Acme Bakery" and facebook.status == "active" and facebook.is_active
    assert facebook.config["page_id"] == PAGE_1 and facebook.config["enable_messenger"] is True
    assert facebook.config["enable_lead_ads"] is False
    secrets = svc.get_secrets(facebook)
    assert secrets["page_access_token"] == meta.page_token(PAGE_1) and secrets["access_token"] == user_token
    assert facebook.subscribed_at is not None and facebook.token_expires_at is None  # Page tokens do not expire
    assert (instagram.integration_type, instagram.external_id, instagram.name) == ("instagram", IG_1, "@acmebakery")
    assert instagram.config == {"instagram_account_id": IG_1, "username": "acmebakery", "page_id": PAGE_1}
    assert svc.get_secrets(instagram)["page_access_token"] == meta.page_token(PAGE_1)
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0
    assert "connected" in {e.event for e in db.session.scalars(db.select(IntegrationLog)
                                                              .where(IntegrationLog.integration_id == facebook.id))}

    panel = browser.get("/platforms").get_data(as_text=True)
    assert "Connected Acme Bakery and @acmebakery" in panel
    assert f'id="account-{facebook.id}"' in panel and f'id="account-{instagram.id}"' in panel
    assert "Through the Page Acme Bakery" in panel and "does not expire" in panel and "Subscribed" in panel
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")  # werkzeug: the fake's own log
    assert "client_secret=[redacted]" in ours and "input_token=[redacted]" in ours
    for secret in (APP_SECRET, meta.page_token(PAGE_1), user_token, short_token):
        assert secret not in panel and secret not in ours


def test_instagram_connect_lists_only_pages_with_an_instagram_account(browser, admin, meta, credentials):
    response = consent_and_return(browser, meta, platform="instagram")
    page = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "Acme Bakery" in page and "Acme Outlet" in page and "Acme Catering" not in page


def test_a_page_with_an_expiring_token_shows_its_countdown(browser, admin, meta, credentials):
    meta.page_expires_at = int(time.time()) + 59 * 86400 + 3 * 3600
    response, _, _ = connect_first_page(browser, meta, page_id=PAGE_2)
    assert response.status_code == 302
    [facebook] = meta_accounts(admin.organization_id)
    assert timedelta(days=59) < facebook.token_expires_at - utcnow() < timedelta(days=59, hours=4)
    panel = browser.get("/platforms/panel").get_data(as_text=True)
    assert "in 59 days" in panel and 'hx-trigger="every 60s"' in panel
    assert "No Instagram professional account linked" in panel


def test_reconnecting_a_page_updates_its_integrations(browser, admin, meta, credentials):
    connect_first_page(browser, meta)
    first = {(i.integration_type, i.external_id): i.id for i in meta_accounts(admin.organization_id)}
    facebook = db.session.get(Integration, first[("facebook", PAGE_1)])
    facebook.needs_reconnect, facebook.status, facebook.last_error = True, "error", "x — reconnect needed"
    facebook.name = "Our bakery"  # renamed by the team: kept
    db.session.commit()
    response, _, _ = connect_first_page(browser, meta, lead_ads="1")
    assert response.status_code == 302
    again = meta_accounts(admin.organization_id)
    assert {(i.integration_type, i.external_id): i.id for i in again} == first
    facebook = next(i for i in again if i.integration_type == "facebook")
    assert facebook.needs_reconnect is False and facebook.status == "active" and facebook.last_error is None
    assert facebook.name == "Our bakery"
    # Lead Ads was granted this time: it is on, and the Page's leadgen field is subscribed too.
    assert facebook.config["enable_lead_ads"] is True
    assert meta.subscriptions[PAGE_1].endswith(",leadgen")
    assert "reconnected" in {e.event for e in db.session.scalars(db.select(IntegrationLog)
                                                                .where(IntegrationLog.integration_id == facebook.id))}


# --- refusals ---------------------------------------------------------------------------------

def test_denied_consent_returns_to_settings_with_the_reason_and_stores_nothing(browser, admin, meta, credentials):
    response = consent_and_return(browser, meta, choice="cancel")
    assert response.status_code == 302 and response.headers["Location"].endswith("/settings#meta")
    assert "Meta did not grant access: Permissions error. Nothing was connected." in flashed(browser)
    assert meta.calls("GET", "oauth/access_token") == []
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0
    assert meta_accounts(admin.organization_id) == []


@pytest.mark.parametrize("failing, message", [
    ("code_exchange", "Invalid verification code format."),
    ("long_lived", "Error validating application. Invalid application ID."),
])
def test_token_exchange_failure_says_what_meta_said(browser, admin, meta, credentials, failing, message):
    meta.fail_next(failing, message, code=100)
    response = consent_and_return(browser, meta)
    assert response.status_code == 302 and response.headers["Location"].endswith("/settings#meta")
    assert f"Token exchange failed: {message} Nothing was connected." in flashed(browser)
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0
    assert meta_accounts(admin.organization_id) == []


def test_token_exchange_failure_through_the_api_callback(api, meta, credentials):
    url = api.get("/api/platforms/messenger/connect").json["authorization_url"]
    meta.fail_next("code_exchange", "This authorization code has expired.", code=100, subcode=36007)
    response = api.get(local(meta.consent(url)))
    assert response.status_code == 400
    assert response.json["errors"]["meta"] == [
        "Token exchange failed: This authorization code has expired. Nothing was connected."]


def test_subscription_failure_leaves_nothing_half_connected(browser, admin, meta, credentials):
    meta.fail_next("subscribe", "(#200) The user must be an administrator of the page", code=200)
    response, pick, _ = connect_first_page(browser, meta)
    assert response.status_code == 302 and response.headers["Location"].endswith("/settings#meta")
    page = flashed(browser)
    assert "Acme Bakery was not connected" in page and "The user must be an administrator of the page" in page
    assert meta_accounts(admin.organization_id) == []
    assert db.session.scalar(db.select(db.func.count()).select_from(Integration)) == 0
    # The tokens Meta granted are dropped with the pending connection.
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0
    assert browser.get(pick).status_code == 404
    assert meta.subscriptions == {}


def test_a_page_that_was_not_offered_is_refused_on_the_pick_page(browser, admin, meta, credentials):
    response, pick, _ = connect_first_page(browser, meta, page_id="999")
    assert response.status_code == 400
    assert "Choose one of the Pages listed." in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 1
    assert browser.post(pick, {"page_id": PAGE_2}, token_from=pick).status_code == 302
    assert [i.external_id for i in meta_accounts(admin.organization_id)] == [PAGE_2]


def test_cancelling_the_pick_drops_the_grant(browser, admin, meta, credentials):
    response = consent_and_return(browser, meta)
    pick = response.headers["Location"].removesuffix("#pick")
    assert browser.post(f"{pick}/cancel", {}, token_from=pick).status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0
    assert meta_accounts(admin.organization_id) == []


def test_a_used_state_is_refused(browser, admin, meta, credentials):
    callback = local(meta.consent(start(browser)))
    assert browser.get(callback).status_code == 302
    exchanges = len(meta.calls("GET", "oauth/access_token"))
    response = browser.get(callback)
    assert response.headers["Location"].endswith("/settings#meta")
    assert "This Connect with Meta answer was already used: start again." in flashed(browser)
    assert len(meta.calls("GET", "oauth/access_token")) == exchanges
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 1


def test_an_expired_state_is_refused_and_changes_nothing(browser, admin, meta, credentials):
    callback = local(meta.consent(start(browser)))
    db.session.execute(db.update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = browser.get(callback)
    assert response.headers["Location"].endswith("/settings#meta")
    assert "expired (it lasts 10 minutes)" in flashed(browser)
    assert meta.calls("GET", "oauth/access_token") == []
    db.session.expire_all()
    assert db.session.scalar(db.select(OAuthState)).used_at is None


def test_a_state_started_by_another_user_is_refused_and_stays_usable(app, browser, admin, meta, credentials, caplog):
    colleague = make_user("Acme", "colleague@acme.example.com", role="admin")
    other = Browser(app.test_client()).login(colleague.email)
    callback = local(meta.consent(start(browser)))
    response = other.get(callback)
    assert response.headers["Location"].endswith("/settings#meta")
    assert "started by another user" in other.get("/settings").get_data(as_text=True)
    assert f"Connect with Meta callback refused for user {colleague.id}" in caplog.text
    assert meta.calls("GET", "oauth/access_token") == []
    db.session.expire_all()
    assert db.session.scalar(db.select(OAuthState)).used_at is None
    # The user who started finishes it.
    assert browser.get(callback).headers["Location"].startswith("/platforms/pending/")


def test_an_api_started_flow_is_bound_to_the_api_user(app, api, browser, other_admin, meta, credentials):
    url = api.get("/api/platforms/messenger/connect").json["authorization_url"]
    callback = local(meta.consent(url))
    stranger = Browser(app.test_client()).login(other_admin.email)
    assert stranger.get(callback).headers["Location"].endswith("/settings#meta")
    assert meta.calls("GET", "oauth/access_token") == []
    # The same person, signed in in the browser, continues to the pick.
    assert browser.get(callback).headers["Location"].startswith("/platforms/pending/")


def test_the_api_callback_and_pick(api, admin, meta, credentials):
    url = api.get("/api/platforms/instagram/connect").json["authorization_url"]
    response = api.get(local(meta.consent(url)))
    assert response.status_code == 200
    pending = response.json["pending_connection"]
    assert pending["platform"] == "instagram"
    assert [p["id"] for p in pending["pages"]] == [PAGE_1, PAGE_3]
    assert pending["pages"][0]["instagram"] == {"id": IG_1, "username": "acmebakery"}
    assert meta.page_token(PAGE_1) not in response.get_data(as_text=True)
    connect_url = response.json["connect_url"]
    assert api.post(connect_url, json={"page_id": PAGE_2}).status_code == 400  # not offered for Instagram
    response = api.post(connect_url, json={"page_id": PAGE_3})
    assert response.status_code == 201
    assert [(a["platform"], a["external_id"]) for a in response.json] == [("messenger", PAGE_3),
                                                                          ("instagram", "17841400000000003")]
    assert api.post(connect_url, json={"page_id": PAGE_3}).status_code == 404  # used up


def test_an_unsigned_callback_leads_to_sign_in_and_back(app, browser, admin, meta, credentials):
    callback = local(meta.consent(start(browser)))
    anonymous = app.test_client()
    response = anonymous.get(callback)
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    assert meta.calls("GET", "oauth/access_token") == []
    assert anonymous.get(callback, headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize("query", ["", "?state=", "?code=abc", "?code=abc&state=unknown", "?state=x&error=access_denied",
                                   "?code=%00&state=x"])
def test_callbacks_without_a_known_state_change_nothing(browser, api, meta, credentials, query):
    response = browser.get(f"/api/platforms/callback{query}")
    assert response.status_code in (302, 400)
    response = api.get(f"/api/platforms/callback{query}")
    assert response.status_code == 400
    assert meta.calls("GET", "oauth/access_token") == []
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0


def test_pending_connections_belong_to_their_user(app, browser, admin, meta, credentials):
    pick = consent_and_return(browser, meta).headers["Location"].removesuffix("#pick")
    colleague = Browser(app.test_client()).login(make_user("Acme", "c2@acme.example.com").email)
    assert colleague.get(pick).status_code == 404
    assert colleague.post(pick, {"page_id": PAGE_1}, token_from="/settings").status_code == 404
    assert colleague.post(f"{pick}/cancel", {}, token_from="/settings").status_code == 404
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 1
