"""The JSON API contract: auth, CRUD, configure, validation, logs, stats, bad input."""
import pytest

from app.extensions import db
from app.models import Integration, IntegrationLog


def create(api, integration_type="email", provider="sendgrid", name="Mail"):
    response = api.post("/api/integrations/", json={"integration_type": integration_type, "name": name,
                                                    "provider": provider})
    assert response.status_code == 201, response.json
    return response.json


def test_requires_a_valid_token(app, api):
    client = app.test_client()
    assert client.get("/api/integrations/").status_code == 401
    assert client.get("/api/integrations/", headers={"Authorization": "Bearer sb_wrong"}).status_code == 401
    assert client.get("/api/integrations/", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/api/integrations/", headers={"Authorization": "Bearer " + "x" * 5000}).status_code == 401
    assert client.post("/api/integrations/", json={}).json == {
        "error": "A valid API token is required (Authorization: Bearer <token>)."}


def test_create_returns_the_contract_shape(api):
    data = create(api)
    assert set(data) >= {"id", "integration_type", "name", "provider", "status", "is_active", "config", "secrets",
                         "webhook_url", "last_sync_at", "last_error", "error_count", "created_at", "updated_at"}
    assert data["status"] == "pending" and data["is_active"] is True and data["error_count"] == 0
    assert data["secrets"] == {"api_key": False}
    assert data["config"] == {"from_email": None, "from_name": None, "reply_to": None, "webhook_verification_key": None}
    assert data["priority"] == 100 and data["sandbox"] is False and data["rate_limit"] == 100.0
    public_id = db.session.get(Integration, data["id"]).public_id
    assert data["webhook_url"] == f"https://switchboard.example.com/api/webhooks/sendgrid/{public_id}/"
    assert str(data["id"]) != public_id and len(public_id) >= 20


def test_single_provider_types_default_their_provider_and_generate_tokens(api):
    data = api.post("/api/integrations/", json={"integration_type": "whatsapp", "name": "WA"}).json
    assert data["provider"] == "cloud_api"
    assert len(data["config"]["webhook_verify_token"]) >= 24
    assert data["secrets"] == {"access_token": False, "app_secret": False}
    signup = create(api, "signup_page", "hosted", "Newsletter")
    assert "webhook_url" not in signup
    assert signup["config"]["auto_create_contact"] is True


@pytest.mark.parametrize("body, field", [
    ({"integration_type": "fax", "name": "x", "provider": "sendgrid"}, "integration_type"),
    ({"integration_type": "email", "name": "x", "provider": "twilio"}, "provider"),
    ({"integration_type": "email", "name": "", "provider": "sendgrid"}, "name"),
    ({"integration_type": "email", "name": "x" * 201, "provider": "sendgrid"}, "name"),
    ({"integration_type": ["email"], "name": "x", "provider": "sendgrid"}, "integration_type"),
])
def test_create_rejects_bad_input_by_field(api, body, field):
    response = api.post("/api/integrations/", json=body)
    assert response.status_code == 400 and field in response.json["errors"]
    assert db.session.query(Integration).count() == 0


def test_malformed_and_oversize_bodies(api):
    assert api.post("/api/integrations/", data="{not json", content_type="application/json").status_code == 400
    assert api.post("/api/integrations/", json=["a list"]).json["errors"] == {
        "body": ["Send a JSON object with Content-Type: application/json."]}
    big = api.post("/api/integrations/", data="x" * (2 * 1024 * 1024), content_type="application/json")
    assert big.status_code == 413 and big.json == {"error": "Too large"}
    assert db.session.query(Integration).count() == 0


def test_list_filters_by_type(api):
    create(api, name="A")
    create(api, "sms", "twilio", "B")
    assert [i["name"] for i in api.get("/api/integrations/").json] == ["A", "B"]
    assert [i["name"] for i in api.get("/api/integrations/?type=sms").json] == ["B"]
    assert api.get("/api/integrations/?type=fax").status_code == 400


def test_put_updates_name_active_and_status(api):
    data = create(api)
    url = f"/api/integrations/{data['id']}/"
    updated = api.put(url, json={"name": "Renamed", "is_active": False}).json
    assert updated["name"] == "Renamed" and updated["is_active"] is False and updated["status"] == "inactive"
    updated = api.put(url, json={"is_active": True}).json
    assert updated["is_active"] is True and updated["status"] == "pending"
    assert api.put(url, json={"status": "error"}).json["status"] == "error"
    for bad in ({"status": "exploded"}, {"is_active": "yes"}, {"name": ""}, {"provider": "mailgun"}):
        response = api.put(url, json=bad)
        assert response.status_code == 400 and set(response.json["errors"]) == set(bad), bad
    assert api.get(url).json["status"] == "error"
    events = {e["event"] for e in api.get(f"{url}logs/").json["items"]}
    assert {"created", "renamed", "deactivated", "activated", "status_changed"} <= events


def test_delete(api):
    data = create(api)
    assert api.delete(f"/api/integrations/{data['id']}/").status_code == 204
    assert api.get(f"/api/integrations/{data['id']}/").status_code == 404
    assert db.session.query(IntegrationLog).count() == 0


def test_configure_validates_every_field_and_changes_nothing_on_error(api):
    data = create(api, "sms", "twilio", "Texts")
    url = f"/api/integrations/{data['id']}/configure/sms/"
    response = api.post(url, json={"from_phone_number": "12345", "account_sid": "nope", "auth_token": "",
                                   "colour": "red"})
    assert response.status_code == 400
    errors = response.json["errors"]
    assert set(errors) == {"from_phone_number", "account_sid", "auth_token", "colour"}
    assert errors["auth_token"] == ["This field is required."]
    assert "AC followed by 32" in errors["account_sid"][0]
    assert api.get(f"/api/integrations/{data['id']}/").json["config"]["account_sid"] is None

    good = api.post(url, json={"from_phone_number": "+1 415 555 2671", "account_sid": "AC" + "a" * 32,
                               "auth_token": "tok-123"}).json
    assert good["config"]["from_phone_number"] == "+14155552671"
    assert good["secrets"] == {"auth_token": True}
    # Partial update keeps the rest, including the secret.
    again = api.post(url, json={"from_phone_number": "+442071838750"}).json
    assert again["config"]["account_sid"] == "AC" + "a" * 32 and again["secrets"] == {"auth_token": True}


def test_configure_slug_must_match_the_type(api):
    data = create(api)
    response = api.post(f"/api/integrations/{data['id']}/configure/sms/", json={})
    assert response.status_code == 400 and "integration_type" in response.json["errors"]
    assert api.post(f"/api/integrations/{data['id']}/configure/fax/", json={}).status_code == 404


@pytest.mark.parametrize("integration_type, provider, slug, body, field, words", [
    ("email", "sendgrid", "email", {"from_email": "not an email", "api_key": "k"}, "from_email", "valid email"),
    ("email", "smtp", "email", {"from_email": "a@example.com", "host": "smtp.example.com", "port": 70000},
     "port", "from 1 to 65535"),
    ("email", "smtp", "email", {"from_email": "a@example.com", "host": "127.0.0.1", "port": 25}, "host", "not allowed"),
    ("email", "smtp", "email", {"from_email": "a@example.com", "host": "localhost", "port": 25}, "host", "not allowed"),
    ("email", "smtp", "email", {"from_email": "a@example.com", "host": "10.0.0.5", "port": 25}, "host", "not allowed"),
    ("email", "smtp", "email", {"from_email": "a@example.com", "host": "bad host!", "port": 25}, "host", "host name"),
    ("email", "smtp", "email", {"from_email": "a@example.com", "host": "smtp.example.com", "security": "tls13"},
     "security", "Choose one of"),
    ("email", "mailgun", "email", {"from_email": "a@example.com", "domain": "mg.example.com", "region": "asia",
                                   "api_key": "k"}, "region", "Choose one of"),
    ("facebook", "graph_api", "facebook", {"app_id": "abc", "app_secret": "s"}, "app_id", "Invalid App ID format"),
    ("signup_page", "hosted", "signup", {"form_fields": "[{"}, "form_fields", "not valid JSON"),
    ("signup_page", "hosted", "signup", {"form_fields": [{"name": "nick", "type": "text", "label": "Nick"}]},
     "form_fields", "email or a phone"),
    ("signup_page", "hosted", "signup", {"form_fields": [{"name": "email", "type": "colour", "label": "E"}]},
     "form_fields", "unknown type"),
    ("signup_page", "hosted", "signup", {"redirect_url": "javascript:alert(1)"}, "redirect_url", "https://"),
    ("signup_page", "hosted", "signup", {"allowed_origins": "https://ok.example.com\nnot-an-origin"},
     "allowed_origins", "Not an origin"),
    ("whatsapp", "cloud_api", "whatsapp", {"phone_number_id": "12ab", "business_account_id": "123456",
                                           "access_token": "t"}, "phone_number_id", "API Setup"),
])
def test_validation_errors_name_the_field(api, integration_type, provider, slug, body, field, words):
    data = create(api, integration_type, provider, "X")
    before = api.get(f"/api/integrations/{data['id']}/").json
    response = api.post(f"/api/integrations/{data['id']}/configure/{slug}/", json=body)
    assert response.status_code == 400, response.json
    assert words in " ".join(response.json["errors"][field])
    after = api.get(f"/api/integrations/{data['id']}/").json
    assert after["config"] == before["config"] and after["secrets"] == before["secrets"]


def test_private_hosts_allowed_when_configured(api, app, monkeypatch):
    monkeypatch.setitem(app.config, "ALLOW_PRIVATE_NETWORK", True)
    data = create(api, "email", "smtp", "Relay")
    response = api.post(f"/api/integrations/{data['id']}/configure/email/",
                        json={"from_email": "a@example.com", "host": "127.0.0.1", "port": 25, "security": "none"})
    assert response.status_code == 200, response.json


def test_configuration_changes_are_logged_without_values(api):
    data = create(api)
    api.post(f"/api/integrations/{data['id']}/configure/email/",
             json={"from_email": "a@example.com", "api_key": "SG.very-secret"})
    logs = api.get(f"/api/integrations/{data['id']}/logs/").json
    change = next(e for e in logs["items"] if e["event"] == "config_changed")
    assert change["details"] == {"fields": ["api_key", "from_email"]}
    assert change["user"] == "admin@acme.example.com"
    assert "SG.very-secret" not in str(logs) and "a@example.com" not in change["message"]


def test_logs_paginate_and_filter_by_level(api):
    data = create(api)
    integration = db.session.get(Integration, data["id"])
    from app.services import integrations as svc
    for n in range(60):
        svc.log_event(integration, "probe", f"entry {n}", level="error" if n % 3 == 0 else "info")
    db.session.commit()
    url = f"/api/integrations/{data['id']}/logs/"
    first = api.get(url).json
    assert first["total"] == 61 and first["pages"] == 2 and len(first["items"]) == 50
    assert first["items"][0]["message"] == "entry 59"  # newest first
    assert len(api.get(url + "?page=2").json["items"]) == 11
    errors = api.get(url + "?level=error").json
    assert errors["total"] == 20 and {e["level"] for e in errors["items"]} == {"error"}
    assert api.get(url + "?level=loud").status_code == 400
    assert api.get(url + "?page=999").json["items"] == []


def test_stats_counts_by_type_status_and_recent_errors(api):
    create(api, name="A")
    b = create(api, name="B")
    create(api, "sms", "twilio", "C")
    api.put(f"/api/integrations/{b['id']}/", json={"status": "error"})
    stats = api.get("/api/integrations/stats/").json
    assert stats["total"] == 3
    assert stats["by_type"]["email"] == {"total": 2, "active": 0, "inactive": 0, "error": 1, "pending": 1}
    assert stats["by_status"]["pending"] == 2
    assert stats["errors_last_24h"] == 1  # the status change to error is logged at level error
    assert len(stats["errors_by_hour"]) == 24 and stats["errors_by_hour"][-1]["count"] == 1


def test_test_endpoint_answers_503_when_the_queue_is_down(api, app, monkeypatch):
    data = create(api)
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")
    app.extensions.pop("redis", None)
    try:
        response = api.post(f"/api/integrations/{data['id']}/test/")
    finally:
        app.extensions.pop("redis", None)
    assert response.status_code == 503 and "Redis" in response.json["error"]


def test_stuck_tests_are_expired(api, app):
    from datetime import timedelta

    from app.models import ConnectionTest, utcnow
    from app.services.connection_tests import expire_stuck_tests
    data = create(api)
    job_id = api.post(f"/api/integrations/{data['id']}/test/").json["job_id"]
    assert expire_stuck_tests() == 0
    test = db.session.get(ConnectionTest, job_id)
    test.created_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert expire_stuck_tests() == 1
    result = api.get(f"/api/integrations/{data['id']}/test/{job_id}/").json
    assert result["status"] == "failed" and "worker" in result["message"]
