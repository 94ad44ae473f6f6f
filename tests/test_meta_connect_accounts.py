"""Connected Meta accounts against a loopback Meta: WhatsApp numbers checked before they are saved,
the /api/platforms/ view onto the integrations, disconnecting, the connection panel, other
organisations' ids, and the organisation's Meta app credentials reaching the Facebook adapter."""
from __future__ import annotations

import logging

import pytest

from app.extensions import db
from app.models import Integration, IntegrationLog
from app.services import integrations as svc
from tests.conftest import Browser
from tests.meta_fake import APP_ID, APP_SECRET
from tests.test_meta_connect import (PAGE_1, PAGE_2, connect_first_page, credentials, meta,  # noqa: F401  (fixtures)
                                     meta_accounts)

NUMBER, WABA = "106540352242922", "102290129340398"
CONTRACT = {"id", "platform", "name", "status", "external_id", "token_expires_at", "last_sync_at", "webhook_url",
            "verify_token"}


@pytest.fixture
def whatsapp_token(meta):
    return meta.add_number(NUMBER, WABA)


def connect_whatsapp(api, token, **overrides):
    return api.post("/api/platforms/whatsapp/connect",
                    json={"phone_number_id": NUMBER, "business_account_id": WABA, "access_token": token, **overrides})


# --- WhatsApp --------------------------------------------------------------------------------

def test_whatsapp_number_is_checked_subscribed_and_stored(api, admin, meta, credentials, whatsapp_token, caplog):
    caplog.set_level(logging.DEBUG)
    response = connect_whatsapp(api, whatsapp_token)
    assert response.status_code == 201, response.json
    body = response.json
    assert set(body) == CONTRACT
    assert body["platform"] == "whatsapp" and body["external_id"] == NUMBER and body["status"] == "active"
    assert body["name"] == "Acme Bakery (+1 555-078-3881)"
    assert body["webhook_url"] == credentials["webhook_url"] and body["verify_token"] == credentials["verify_token"]
    assert [c["token"] for c in meta.calls("GET", NUMBER)] == [whatsapp_token]
    assert meta.calls("GET", f"{WABA}/phone_numbers") and meta.calls("GET", "debug_token")
    [subscribe] = meta.calls("POST", f"{WABA}/subscribed_apps")
    assert subscribe["token"] == whatsapp_token
    assert WABA in meta.subscriptions
    [integration] = meta_accounts(admin.organization_id)
    assert (integration.integration_type, integration.provider) == ("whatsapp", "cloud_api")
    assert integration.config["phone_number_id"] == NUMBER and integration.config["business_account_id"] == WABA
    assert svc.get_secrets(integration)["access_token"] == whatsapp_token
    assert integration.subscribed_at is not None
    assert whatsapp_token not in response.get_data(as_text=True)
    assert whatsapp_token not in "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    # Connecting the same number again updates it.
    assert connect_whatsapp(api, whatsapp_token).json["id"] == integration.id
    assert len(meta_accounts(admin.organization_id)) == 1


@pytest.mark.parametrize("case, field, words", [
    ("wrong token", "access_token", "Invalid OAuth access token"),
    ("expired token", "access_token", "reconnect needed"),
    ("unknown number", "phone_number_id", "Meta does not know this ID"),
    ("number of another business account", "business_account_id", "is not one of the numbers of WhatsApp Business Account"),
    ("business account the token cannot read", "business_account_id", "could not be read"),
    ("subscription refused", "business_account_id", "Meta refused to subscribe the business account"),
])
def test_whatsapp_refusals_say_which_field_and_store_nothing(api, admin, meta, credentials, whatsapp_token,
                                                             case, field, words):
    data = {}
    if case == "wrong token":
        data["access_token"] = "EAA-not-a-token"
    elif case == "expired token":
        meta.expire(whatsapp_token)
    elif case == "unknown number":
        data["phone_number_id"] = "999999999"
    elif case == "number of another business account":
        meta.add_number("106540352249999", WABA)
        other_token = meta.add_number("555000111222", "777000111222")
        meta.tokens[other_token]["businesses"] |= {WABA}
        data = {"phone_number_id": "555000111222", "access_token": other_token}
    elif case == "business account the token cannot read":
        data["business_account_id"] = "888000111222"
    else:
        meta.fail_next("subscribe", "(#200) Permissions error", code=200)
    response = connect_whatsapp(api, whatsapp_token, **data)
    assert response.status_code == 400
    assert list(response.json["errors"]) == [field]
    assert words in response.json["errors"][field][0]
    assert meta_accounts(admin.organization_id) == []
    assert db.session.scalar(db.select(db.func.count()).select_from(Integration)) == 0
    if case != "subscription refused":
        assert meta.subscriptions == {}


@pytest.mark.parametrize("payload, field", [
    ({"phone_number_id": "12ab", "business_account_id": WABA, "access_token": "x"}, "phone_number_id"),
    ({"phone_number_id": NUMBER, "business_account_id": "", "access_token": "x"}, "business_account_id"),
    ({"phone_number_id": NUMBER, "business_account_id": WABA, "access_token": ""}, "access_token"),
    ({"phone_number_id": NUMBER, "business_account_id": WABA, "access_token": ["x"]}, "access_token"),
    ({"phone_number_id": NUMBER, "business_account_id": WABA, "access_token": "x", "name": "n"}, "name"),
])
def test_whatsapp_fields_are_checked_before_meta_is_asked(api, meta, credentials, payload, field):
    response = api.post("/api/platforms/whatsapp/connect", json=payload)
    assert response.status_code == 400 and field in response.json["errors"]
    assert meta.calls("GET", NUMBER) == []


def test_whatsapp_needs_the_meta_app_first(api, meta, whatsapp_token):
    response = connect_whatsapp(api, whatsapp_token)
    assert response.status_code == 400
    assert response.json["errors"]["meta_app"][0].startswith("Meta App credentials not configured")
    assert api.post("/api/platforms/whatsapp/connect", data="nope").status_code == 400


def test_whatsapp_form_shows_errors_inline_then_connects(browser, admin, meta, credentials, whatsapp_token):
    response = browser.post("/platforms/whatsapp", {"phone_number_id": NUMBER, "business_account_id": WABA,
                                                    "access_token": "EAA-wrong"}, token_from="/platforms")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Invalid OAuth access token" in page and 'aria-invalid="true"' in page
    assert f'value="{NUMBER}"' in page and "EAA-wrong" not in page  # the token is not sent back
    response = browser.post("/platforms/whatsapp", {"phone_number_id": NUMBER, "business_account_id": WABA,
                                                    "access_token": whatsapp_token}, token_from="/platforms")
    assert response.status_code == 302
    page = browser.get("/platforms").get_data(as_text=True)
    assert "Connected Acme Bakery (+1 555-078-3881)" in page and 'data-platform="whatsapp"' in page
    assert whatsapp_token not in page


# --- the list -----------------------------------------------------------------------------------

def test_platforms_list_is_a_view_onto_the_integrations(api, browser, admin, meta, credentials, whatsapp_token):
    assert api.get("/api/platforms/").json == []
    connect_first_page(browser, meta)
    connect_whatsapp(api, whatsapp_token)
    svc.create_integration(admin.organization_id, admin, "email", "Mail", "sendgrid")  # not a Meta account
    db.session.commit()
    listed = api.get("/api/platforms/").json
    assert all(set(item) == CONTRACT for item in listed)
    assert sorted((i["platform"], i["external_id"]) for i in listed) == [
        ("instagram", "17841400000000001"), ("messenger", PAGE_1), ("whatsapp", NUMBER)]
    stored = {i.id: i for i in meta_accounts(admin.organization_id)}
    for item in listed:
        integration = stored[item["id"]]
        assert item["name"] == integration.name and item["status"] == integration.status == "active"
        assert item["token_expires_at"] is None and item["last_sync_at"] is None
        assert item["webhook_url"] == credentials["webhook_url"] and item["verify_token"] == credentials["verify_token"]
    # The same accounts in the integrations API: one store.
    ids = {i["id"] for i in api.get("/api/integrations/").json}
    assert {i["id"] for i in listed} <= ids


def test_other_organisations_see_nothing_and_get_404(api, other_api, browser, app, admin, other_admin, meta,
                                                     credentials, whatsapp_token):
    connect_first_page(browser, meta)
    theirs = meta_accounts(admin.organization_id)
    assert other_api.get("/api/platforms/").json == []
    stranger = Browser(app.test_client()).login(other_admin.email)
    for integration in theirs:
        assert other_api.delete(f"/api/platforms/{integration.id}/disconnect").status_code == 404
        assert stranger.get(f"/platforms/{integration.id}/disconnect").status_code == 404
        assert stranger.post(f"/platforms/{integration.id}/disconnect", {}, token_from="/settings").status_code == 404
    page = stranger.get("/platforms").get_data(as_text=True)
    assert "Acme Bakery" not in page and "No account is connected yet" in page
    assert all(svc.get_secrets(i) for i in meta_accounts(admin.organization_id))
    # Ids that are not Meta accounts are 404 too.
    email, _ = svc.create_integration(admin.organization_id, admin, "email", "Mail", "sendgrid")
    db.session.commit()
    assert api.delete(f"/api/platforms/{email.id}/disconnect").status_code == 404
    assert api.delete("/api/platforms/99999999999/disconnect").status_code == 404


# --- disconnecting ------------------------------------------------------------------------------

def test_disconnect_removes_the_tokens_and_unsubscribes_the_page(api, browser, admin, meta, credentials):
    connect_first_page(browser, meta)
    facebook, instagram = meta_accounts(admin.organization_id)
    response = api.delete(f"/api/platforms/{facebook.id}/disconnect")
    assert response.status_code == 200
    assert response.json["unsubscribed"] is True and response.json["message"] == "Tokens removed; webhooks unsubscribed."
    assert sorted(a["id"] for a in response.json["disconnected"]) == sorted([facebook.id, instagram.id])
    [unsubscribe] = meta.calls("DELETE", f"{PAGE_1}/subscribed_apps")
    assert unsubscribe["token"] == meta.page_token(PAGE_1)
    assert meta.subscriptions == {}
    for account in meta_accounts(admin.organization_id):
        assert account.secrets_ciphertext is None and svc.get_secrets(account) == {}
        assert account.status == "inactive" and not account.is_active and account.subscribed_at is None
    assert [i["status"] for i in api.get("/api/platforms/").json] == ["inactive", "inactive"]
    panel = browser.get("/platforms").get_data(as_text=True)
    assert panel.count("disconnected</span>") == 2 and "Reconnect</a>" in panel


def test_disconnect_still_removes_our_tokens_when_meta_refuses(api, browser, admin, meta, credentials):
    connect_first_page(browser, meta, page_id=PAGE_2)
    [facebook] = meta_accounts(admin.organization_id)
    meta.fail_next("unsubscribe", "An unknown error has occurred.", code=1, status=500)
    response = api.delete(f"/api/platforms/{facebook.id}/disconnect")
    assert response.status_code == 200 and response.json["unsubscribed"] is False
    assert "Meta could not be told to stop the webhooks" in response.json["message"]
    assert "An unknown error has occurred." in response.json["message"]
    [facebook] = meta_accounts(admin.organization_id)
    assert facebook.secrets_ciphertext is None
    log = db.session.scalars(db.select(IntegrationLog).where(IntegrationLog.event == "disconnected")).one()
    assert log.level == "warning" and "could not be told" in log.message


def test_disconnect_page_asks_first_then_disconnects(browser, admin, meta, credentials):
    connect_first_page(browser, meta)
    facebook, _ = meta_accounts(admin.organization_id)
    page = browser.get(f"/platforms/{facebook.id}/disconnect").get_data(as_text=True)
    assert "Disconnect Acme Bakery?" in page and "@acmebakery" in page and "Yes, disconnect" in page
    assert svc.get_secrets(meta_accounts(admin.organization_id)[0])  # nothing happened on GET
    response = browser.post(f"/platforms/{facebook.id}/disconnect", {}, token_from=f"/platforms/{facebook.id}/disconnect")
    assert response.status_code == 302
    assert "Disconnected Acme Bakery and @acmebakery" in browser.get("/platforms").get_data(as_text=True)
    assert meta.calls("DELETE", f"{PAGE_1}/subscribed_apps")


def test_disconnecting_one_of_two_numbers_keeps_the_business_account_subscribed(api, admin, meta, credentials,
                                                                                  whatsapp_token):
    second = "106540352240000"
    meta.numbers.append(type(meta.numbers[0])(second, WABA, "+1 555-000-0000", "Acme Two"))
    assert connect_whatsapp(api, whatsapp_token).status_code == 201
    assert connect_whatsapp(api, whatsapp_token, phone_number_id=second).status_code == 201
    first, other = sorted(meta_accounts(admin.organization_id), key=lambda i: i.external_id != NUMBER)
    assert api.delete(f"/api/platforms/{first.id}/disconnect").json["unsubscribed"] is True
    assert meta.calls("DELETE", f"{WABA}/subscribed_apps") == [] and WABA in meta.subscriptions
    assert api.delete(f"/api/platforms/{other.id}/disconnect").status_code == 200
    assert len(meta.calls("DELETE", f"{WABA}/subscribed_apps")) == 1 and WABA not in meta.subscriptions


# --- the organisation's app credentials reach the Facebook adapter ---------------------------------

def test_connection_test_of_a_connected_page_uses_the_organisations_app(api, browser, admin, meta, credentials,
                                                                          run_jobs):
    connect_first_page(browser, meta)
    facebook, _ = meta_accounts(admin.organization_id)
    assert "app_id" not in (facebook.config or {}) or not facebook.config.get("app_id")
    job_id = api.post(f"/api/integrations/{facebook.id}/test/").json["job_id"]
    run_jobs()
    result = api.get(f"/api/integrations/{facebook.id}/test/{job_id}/").json
    assert result["status"] == "passed", result
    assert f"valid for app {APP_ID}" in result["message"]
    assert meta.calls("GET", "debug_token")[-1]["token"] == f"{APP_ID}|{APP_SECRET}"


def test_facebook_test_without_any_app_credentials_says_so(api, admin, meta, run_jobs):
    integration = api.post("/api/integrations/", json={"integration_type": "facebook", "name": "Page"}).json
    assert api.post(f"/api/integrations/{integration['id']}/configure/facebook/",
                    json={"page_id": PAGE_1, "page_access_token": "EAA-something"}).status_code == 200
    job_id = api.post(f"/api/integrations/{integration['id']}/test/").json["job_id"]
    run_jobs()
    result = api.get(f"/api/integrations/{integration['id']}/test/{job_id}/").json
    assert result["status"] == "failed"
    assert result["message"].startswith("Meta App credentials not configured")


def test_a_disconnected_number_is_reconnected_with_its_ids_filled_in(api, app, browser, admin, other_admin, meta,
                                                                      credentials, whatsapp_token):
    number_id = connect_whatsapp(api, whatsapp_token).json["id"]
    api.delete(f"/api/platforms/{number_id}/disconnect")
    panel = browser.get("/platforms").get_data(as_text=True)
    assert f'href="/platforms?reconnect={number_id}#whatsapp"' in panel
    form = browser.get(f"/platforms?reconnect={number_id}").get_data(as_text=True)
    assert f'value="{NUMBER}"' in form and f'value="{WABA}"' in form
    stranger = Browser(app.test_client()).login(other_admin.email)
    assert NUMBER not in stranger.get(f"/platforms?reconnect={number_id}").get_data(as_text=True)
    assert connect_whatsapp(api, whatsapp_token).json["id"] == number_id
    [number] = meta_accounts(admin.organization_id)
    assert number.status == "active" and number.is_active and svc.get_secrets(number)["access_token"] == whatsapp_token
