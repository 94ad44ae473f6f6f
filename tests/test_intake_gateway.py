"""The public intake addresses served ahead of Flask (app/intake_gateway.py): what every answer
carries, what other methods get, a crash of ours, and a page or integration changed while a process
holds its copy."""
import logging

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import Integration, Organization, SignupSubmission, WebhookEvent
from app.security import SECURITY_HEADERS
from app.services import accounts, signups
from app.services.intake_store import APPLICATION_NAME
from tests.providers.test_send_whatsapp import configure, notification, post_webhook, sign, status, webhook_path
from tests.signup_helpers import api_post, create_key, make_page, signup_settings  # noqa: F401  (fixture)

JANE = {"email": "jane@example.com", "first_name": "Jane", "terms": True}


def stored(model):
    db.session.expire_all()
    return db.session.query(model).count()


def assert_secure(response):
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name) == value, name


def test_webhook_answers_carry_the_security_headers_and_other_methods_get_405(app, api):
    wa = configure(api)
    client = app.test_client()
    body = notification(status("wamid.gateway1", "delivered"))
    accepted = post_webhook(app, wa, body)
    assert accepted.status_code == 200 and accepted.json == {"status": "accepted"}
    assert_secure(accepted)
    forged = post_webhook(app, wa, body, signature="sha256=" + "0" * 64)
    assert forged.status_code == 401 and forged.is_json
    assert_secure(forged)
    for method in ("PUT", "DELETE", "PATCH"):
        refused = client.open(webhook_path(wa), method=method, data=body)
        assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD, POST" and refused.is_json
    unknown = client.post("/api/webhooks/cloud_api/no-such-address/", data=body)
    assert unknown.status_code == 404 and unknown.is_json
    assert stored(WebhookEvent) == 1


def test_an_address_posted_to_without_its_trailing_slash_is_served_the_same(app, api):
    wa = configure(api)
    body = notification(status("wamid.gateway2", "delivered"))
    response = app.test_client().post(webhook_path(wa).rstrip("/"), data=body,
                                      headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)})
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    page = make_page(api)
    key = create_key(api, page)
    assert api_post(app.test_client(), {"api_path": page["api_path"].rstrip("/")}, JANE, key).status_code == 201


def test_the_signup_api_takes_post_only_and_its_answers_carry_the_security_headers(app, api):
    page = make_page(api)
    key = create_key(api, page)
    client = app.test_client()
    for method in ("GET", "PUT", "OPTIONS"):
        refused = client.open(page["api_path"], method=method, headers={"X-API-Key": key})
        assert refused.status_code == 405 and refused.headers["Allow"] == "POST" and refused.is_json
    created = api_post(client, page, JANE, key)
    assert created.status_code == 201
    assert_secure(created)
    assert_secure(api_post(client, page, JANE, "wrong"))


def test_a_crash_of_ours_is_a_logged_500_in_words(app, api, monkeypatch, caplog):
    page = make_page(api)
    key = create_key(api, page)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(signups, "receive", broken)  # stands for any bug behind the gateway
    with caplog.at_level(logging.ERROR):
        response = api_post(app.test_client(), page, JANE, key)
    assert response.status_code == 500 and "logged" in response.json["error"]
    assert_secure(response)
    assert "intake of POST" in caplog.text and "a bug" in caplog.text


def test_changes_to_a_page_take_effect_at_once_in_a_process_that_holds_its_copy(app, api):
    page = make_page(api)
    first_key = create_key(api, page)
    client = app.test_client()
    assert api_post(client, page, JANE, first_key).status_code == 201  # this process now holds the page
    second_key = create_key(api, page)
    assert api_post(client, page, JANE, first_key).status_code == 401  # checked on a fresh read
    assert api_post(client, page, JANE, second_key).status_code == 201  # refused by the copy, accepted on a fresh read
    fields = [{"name": "email", "type": "email", "label": "Email"},
              {"name": "company", "type": "text", "label": "Company", "required": True}]
    assert api.post(f"/api/integrations/{page['id']}/configure/signup/",
                    json={"form_fields": fields}).status_code == 200
    assert "Company" in client.get(page["path"]).get_data(as_text=True)  # the form shows the edit at once
    changed = api_post(client, page, {"email": "ann@example.com"}, second_key)
    assert changed.status_code == 400 and changed.json["errors"] == {"company": ["This field is required."]}
    assert api.put(f"/api/integrations/{page['id']}/", json={"is_active": False}).status_code == 200
    assert api_post(client, page, {"email": "ann@example.com", "company": "Acme"}, second_key).status_code == 403
    assert client.get(page["path"]).status_code == 403
    assert api.put(f"/api/integrations/{page['id']}/", json={"is_active": True}).status_code == 200
    assert client.get(page["path"]).status_code == 200
    assert api_post(client, page, {"email": "ann@example.com", "company": "Acme"}, second_key).status_code == 201
    assert api.delete(f"/api/integrations/{page['id']}/").status_code in (200, 204)
    assert api_post(client, page, JANE, second_key).status_code == 404
    assert client.get(page["path"]).status_code == 404


def test_a_new_default_country_takes_effect_at_once_in_a_process_that_holds_a_page(app, api):
    page = make_page(api)
    key = create_key(api, page)
    client = app.test_client()
    london = {**JANE, "phone": "020 7946 0018"}
    as_american = api_post(client, page, london, key)  # read in the default country, US: no such number
    assert as_american.status_code == 400 and set(as_american.json["errors"]) == {"phone"}
    organization = db.session.get(Organization, db.session.get(Integration, page["id"]).organization_id)
    assert accounts.update_organization(organization, organization.name, "GB") == {}
    db.session.commit()
    as_british = api_post(client, page, london, key)  # this process still holds its copy of the page
    assert as_british.status_code == 201
    row = db.session.get(SignupSubmission, as_british.json["submission_id"])
    assert (row.status, row.errors) == ("pending", None)


@pytest.mark.parametrize("path", ["/api/signup/x/y/", "/api/webhooks/meta/", "/api/webhooks/a/b/c/"])
def test_other_addresses_under_the_intake_prefixes_are_flasks_404(app, api, path):
    response = app.test_client().post(path, json={})
    assert response.status_code == 404 and response.is_json


def test_a_lost_database_connection_is_replaced_without_failing_the_request(app, api):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("ending a connection from the server's side needs PostgreSQL")
    wa = configure(api)
    page = make_page(api)
    key = create_key(api, page)
    assert post_webhook(app, wa, notification(status("wamid.lost1", "delivered"))).status_code == 200
    assert api_post(app.test_client(), page, JANE, key).status_code == 201  # intake's pool holds connections now
    ended = db.session.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE application_name = :name"), {"name": APPLICATION_NAME}).scalar()
    db.session.commit()
    assert ended >= 1
    assert post_webhook(app, wa, notification(status("wamid.lost2", "delivered"))).status_code == 200
    assert api_post(app.test_client(), page, JANE, key).status_code == 201
    assert stored(WebhookEvent) == 2 and stored(SignupSubmission) == 2

    # The same when copies have expired: the integration and the page are read again, through a pool
    # that holds connections from before the restart
    app.extensions.pop("webhook_receivers", None)
    app.extensions.pop("signup_pages", None)
    assert api_post(app.test_client(), page, {**JANE, "email": "read@example.com"}, key).status_code == 201
    db.session.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = :name"), {"name": APPLICATION_NAME})
    db.session.commit()
    app.extensions.pop("webhook_receivers", None)
    app.extensions.pop("signup_pages", None)
    assert post_webhook(app, wa, notification(status("wamid.lost3", "delivered"))).status_code == 200
    assert api_post(app.test_client(), page, JANE, key).status_code == 201
    assert stored(WebhookEvent) == 3 and stored(SignupSubmission) == 4
