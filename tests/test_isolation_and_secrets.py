"""Organisations never see each other's integrations; secrets never leave encrypted storage."""
import logging

import pytest
from cryptography.fernet import Fernet

from app.crypto import Vault
from app.extensions import db
from app.models import Integration
from app.services import integrations as svc
from tests.conftest import TEST_KEY, csrf_token_from

SECRET = "SG.top-secret-value-4242"


@pytest.fixture
def foreign(other_api):
    """An integration of another organisation, with a secret and a connection test."""
    data = other_api.post("/api/integrations/", json={"integration_type": "email", "name": "Theirs",
                                                      "provider": "sendgrid"}).json
    other_api.post(f"/api/integrations/{data['id']}/configure/email/",
                   json={"from_email": "them@example.com", "api_key": SECRET})
    job_id = other_api.post(f"/api/integrations/{data['id']}/test/").json["job_id"]
    return data["id"], job_id


def _url_for_rule(rule, integration_id, job_id):
    return (rule.rule.replace("<int:integration_id>", str(integration_id))
            .replace("<test_id>", job_id).replace("<job_id>", job_id).replace("<slug>", "email")
            .replace("<message_id>", "0" * 32).replace("<int:event_id>", "1"))


def test_every_integration_route_gives_404_for_another_organisation(app, api, browser, foreign):
    integration_id, job_id = foreign
    rules = [r for r in app.url_map.iter_rules() if "integration_id" in r.arguments]
    assert len(rules) >= 15
    token = csrf_token_from(browser.get("/account/password").get_data(as_text=True))
    for rule in rules:
        url = _url_for_rule(rule, integration_id, job_id)
        assert "<" not in url, f"add a substitution for {rule.rule}"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if rule.endpoint.startswith("api."):
                response = api.open(url, method=method, json={"name": "stolen", "api_key": "x"})
            else:
                data = {"csrf_token": token, "name": "stolen"} if method == "POST" else None
                response = browser.client.open(url, method=method, data=data)
            assert response.status_code == 404, (method, url, response.status_code)
            body = response.get_data(as_text=True)
            assert "Theirs" not in body and SECRET not in body and "them@example.com" not in body
    db.session.expire_all()
    theirs = db.session.get(Integration, integration_id)
    assert theirs.name == "Theirs" and theirs.config["from_email"] == "them@example.com"


def test_lists_and_stats_show_only_own_organisation(api, browser, foreign):
    assert api.get("/api/integrations/").json == []
    assert api.get("/api/integrations/stats/").json["total"] == 0
    assert "Theirs" not in browser.get("/integrations").get_data(as_text=True)


def test_secret_absent_from_pages_json_logs_and_database(app, api, browser, run_jobs, caplog):
    caplog.set_level(logging.DEBUG)
    data = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mine",
                                                "provider": "sendgrid"}).json
    integration_id = data["id"]
    responses = [api.post(f"/api/integrations/{integration_id}/configure/email/",
                          json={"from_email": "me@example.com", "api_key": SECRET})]
    api.post(f"/api/integrations/{integration_id}/test/")
    run_jobs()  # the check fails (no SendGrid here) and logs its error: still no secret
    responses += [api.get("/api/integrations/"), api.get(f"/api/integrations/{integration_id}/"),
                  api.get(f"/api/integrations/{integration_id}/logs/"), api.get("/api/integrations/stats/")]
    for path in ("/integrations", f"/integrations/{integration_id}", f"/integrations/{integration_id}/edit",
                 f"/integrations/{integration_id}/logs", "/integrations/stats",
                 f"/integrations/{integration_id}/delete"):
        responses.append(browser.get(path))
    for response in responses:
        assert response.status_code == 200, response.request.path
        assert SECRET not in response.get_data(as_text=True), response.request.path
    assert SECRET not in caplog.text

    # The database holds only ciphertext: scan every text column of every table.
    with db.engine.connect() as connection:
        for table in db.metadata.sorted_tables:
            for row in connection.execute(table.select()):
                assert SECRET not in repr(tuple(row)), table.name
    stored = db.session.get(Integration, integration_id)
    assert stored.secrets_ciphertext and SECRET not in stored.secrets_ciphertext
    assert svc.get_secrets(stored) == {"api_key": SECRET}


def test_edit_form_masks_secrets_and_empty_field_keeps_the_value(app, api, browser):
    data = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mine",
                                                "provider": "sendgrid"}).json
    api.post(f"/api/integrations/{data['id']}/configure/email/", json={"from_email": "me@example.com", "api_key": SECRET})
    page = browser.get(f"/integrations/{data['id']}/edit").get_data(as_text=True)
    assert "A value is set." in page and SECRET not in page
    response = browser.post(f"/integrations/{data['id']}/edit",
                            {"name": "Renamed", "from_email": "new@example.com", "from_name": "", "reply_to": "",
                             "api_key": ""}, token_from=f"/integrations/{data['id']}/edit")
    assert response.status_code == 302
    db.session.expire_all()
    stored = db.session.get(Integration, data["id"])
    assert stored.name == "Renamed" and stored.config["from_email"] == "new@example.com"
    assert svc.get_secrets(stored) == {"api_key": SECRET}
    # A typed value replaces it.
    browser.post(f"/integrations/{data['id']}/edit", {"name": "Renamed", "from_email": "new@example.com",
                                                      "api_key": "SG.replacement"})
    db.session.expire_all()
    assert svc.get_secrets(db.session.get(Integration, data["id"])) == {"api_key": "SG.replacement"}


def test_key_rotation_reencrypts_with_the_first_key(app, api, monkeypatch):
    data = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mine",
                                                "provider": "sendgrid"}).json
    api.post(f"/api/integrations/{data['id']}/configure/email/", json={"from_email": "me@example.com", "api_key": SECRET})
    old_cipher = db.session.get(Integration, data["id"]).secrets_ciphertext
    new_key = Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "ENCRYPTION_KEYS", f"{new_key},{TEST_KEY}")
    monkeypatch.setitem(app.extensions, "vault", Vault(f"{new_key},{TEST_KEY}"))
    result = app.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 0 and "1 integration" in result.output
    db.session.expire_all()
    rotated = db.session.get(Integration, data["id"]).secrets_ciphertext
    assert rotated != old_cipher
    assert Vault(new_key).decrypt_json(rotated) == {"api_key": SECRET}  # the old key is no longer needed
    with pytest.raises(RuntimeError):
        Vault(Fernet.generate_key().decode()).decrypt_json(rotated)


def test_vault_refuses_bad_keys():
    with pytest.raises(RuntimeError):
        Vault("")
    with pytest.raises(RuntimeError):
        Vault("not-a-fernet-key")


def test_config_generates_dev_secrets_and_refuses_production(tmp_path, monkeypatch):
    import config
    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    with pytest.warns(UserWarning):
        values = config.Config.finalise({"APP_ENV": "development", "REDIS_URL": "redis://x"})
    assert (tmp_path / "encryption_keys").read_text().strip() == values["ENCRYPTION_KEYS"]
    assert config.Config.finalise({"APP_ENV": "development", "REDIS_URL": "redis://x"})["SECRET_KEY"] == values["SECRET_KEY"]
    with pytest.raises(RuntimeError, match="production"):
        config.Config.finalise({"APP_ENV": "production", "REDIS_URL": "redis://x"})
    assert config.database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"


@pytest.fixture
def foreign_contact(other_api):
    """A contact of another organisation, with a tag."""
    return other_api.post("/api/contacts/", json={"name": "Their Contact", "email": "their.contact@example.com",
                                                  "tags": ["theirs"]}).json["id"]


def _url_for_contact_rule(rule, contact_id):
    return (rule.rule.replace("<int:contact_id>", str(contact_id)).replace("<int:tag_id>", "1")
            .replace("<name>", "theirs"))


def test_every_contact_route_gives_404_for_another_organisation(app, api, browser, foreign_contact):
    from app.models import Contact
    rules = [r for r in app.url_map.iter_rules() if "contact_id" in r.arguments]
    assert len(rules) >= 6
    token = csrf_token_from(browser.get("/account/password").get_data(as_text=True))
    for rule in rules:
        url = _url_for_contact_rule(rule, foreign_contact)
        assert "<" not in url, f"add a substitution for {rule.rule}"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if rule.endpoint.startswith("api."):
                response = api.open(url, method=method, json={"tags": ["stolen"]})
            else:
                data = {"csrf_token": token, "name": "stolen"} if method == "POST" else None
                response = browser.client.open(url, method=method, data=data)
            assert response.status_code == 404, (method, url, response.status_code)
            body = response.get_data(as_text=True)
            assert "Their Contact" not in body and "their.contact@example.com" not in body
    db.session.expire_all()
    theirs = db.session.get(Contact, foreign_contact)
    assert theirs.name == "Their Contact" and [t.name for t in theirs.tags] == ["theirs"]
