"""Whatever a client sends to the API or a form, the answer is a clear 4xx, never a 500."""
import pytest

from app.providers import INTEGRATION_TYPES
from tests.conftest import csrf_token_from

ODD_VALUES = [None, 0, 1.5, True, [], {}, ["a"], {"a": 1}, "", " ", "x" * 5000, "nul\x00byte", "💥 émoji",
              "<script>alert(1)</script>", "' OR 1=1 --", "-1", "99999999999999999999999"]
PROVIDERS = [(kind, provider) for kind in INTEGRATION_TYPES.values() for provider in kind.providers]


@pytest.mark.parametrize("kind, provider", PROVIDERS, ids=[f"{k.key}-{p.name}" for k, p in PROVIDERS])
def test_configure_never_fails_with_500(api, kind, provider):
    created = api.post("/api/integrations/", json={"integration_type": kind.key, "name": "x", "provider": provider.name})
    url = f"/api/integrations/{created.json['id']}/configure/{kind.configure_slug}/"
    for value in ODD_VALUES:
        response = api.post(url, json={f.name: value for f in provider.fields})
        assert response.status_code in (200, 400), (value, response.status_code)
        if response.status_code == 400:
            assert set(response.json["errors"]) <= {f.name for f in provider.fields}


@pytest.mark.parametrize("value", ODD_VALUES)
def test_create_and_update_never_fail_with_500(api, value):
    response = api.post("/api/integrations/", json={"integration_type": value, "name": value, "provider": value})
    assert response.status_code == 400
    created = api.post("/api/integrations/", json={"integration_type": "email", "name": "x", "provider": "smtp"}).json
    for field in ("name", "is_active", "status"):
        response = api.put(f"/api/integrations/{created['id']}/", json={field: value})
        assert response.status_code in (200, 400), (field, value)


def test_odd_query_strings(api):
    created = api.post("/api/integrations/", json={"integration_type": "email", "name": "x", "provider": "smtp"}).json
    for query in ("page=-1", "page=abc", "per_page=0", "per_page=100000", "level=%00", "page=99999999999999999999"):
        assert api.get(f"/api/integrations/{created['id']}/logs/?{query}").status_code in (200, 400), query
    assert api.get("/api/integrations/?type=%00").status_code == 400
    assert api.get("/api/integrations/99999999999999999999/").status_code == 404


def test_odd_form_posts(app, browser):
    token = csrf_token_from(browser.get("/integrations/new/email").get_data(as_text=True))
    for value in ("nul\x00byte", "x" * 5000, "💥"):
        response = browser.client.post("/integrations/new/email", data={
            "csrf_token": token, "name": value, "provider": value, "from_email": value, "host": value,
            "port": value, "security": value, "api_key": value})
        assert response.status_code in (302, 400), value
    setup = app.test_client()
    assert setup.get("/setup").status_code == 302  # already set up
    for path in ("/login", "/account/password", "/users"):
        response = browser.client.post(path, data={"csrf_token": token, "email": "a\x00@example.com",
                                                   "password": "p\x00" * 10, "current_password": "\x00",
                                                   "new_password": "\x00" * 12, "role": "\x00"})
        assert response.status_code in (302, 400, 403), path


def test_first_run_with_odd_values(app):
    client = app.test_client()
    token = csrf_token_from(client.get("/setup").get_data(as_text=True))
    for value in ("nul\x00byte", "x" * 5000):
        response = client.post("/setup", data={"csrf_token": token, "organization_name": value,
                                               "email": f"{value}@example.com", "password": value})
        assert response.status_code == 400


def test_nul_characters_are_refused_by_field(api):
    response = api.post("/api/integrations/", json={"integration_type": "email", "name": "a\x00b", "provider": "smtp"})
    assert response.status_code == 400
    assert response.json == {"errors": {"name": ["This value contains a NUL character, which is not allowed."]}}


def test_webhook_addresses_that_cannot_be_public_ids_are_404(app):
    client = app.test_client()
    for public_id in ("%00", "a%00b", "x" * 65, "%F0%9F%92%A5", "a.b"):
        for method in ("GET", "POST"):
            response = client.open(f"/api/webhooks/cloud_api/{public_id}/", method=method, data=b"{}")
            assert response.status_code == 404, (public_id, method, response.status_code)
