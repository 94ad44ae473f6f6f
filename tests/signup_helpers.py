"""Helpers for the sign-up page tests: make a page through the JSON API, fetch a form's token
the way a browser gets it, post through each way in."""
from __future__ import annotations

import re

import pytest

FORM_FIELDS = [
    {"name": "email", "type": "email", "label": "Email"},
    {"name": "phone", "type": "phone", "label": "Phone"},
    {"name": "first_name", "type": "text", "label": "First name"},
    {"name": "plan", "type": "select", "label": "Plan", "options": ["Free", "Pro"]},
    {"name": "terms", "type": "checkbox", "label": "I agree to the terms", "required": True},
]
SHOP = "https://shop.example.com"


@pytest.fixture(autouse=True)
def signup_settings(app, monkeypatch):
    """Tests post quickly and often from one address: no minimum fill time, a generous rate limit.
    The tests of those two rules set their own."""
    monkeypatch.setitem(app.config, "SIGNUP_MIN_FILL_SECONDS", 0)
    monkeypatch.setitem(app.config, "SIGNUP_RATE_LIMIT", "1000 per minute")


def make_page(api, name="Newsletter", **config) -> dict:
    created = api.post("/api/integrations/", json={"integration_type": "signup_page", "name": name})
    assert created.status_code == 201, created.json
    body = {"form_fields": FORM_FIELDS, "allowed_origins": SHOP, **config}
    response = api.post(f"/api/integrations/{created.json['id']}/configure/signup/", json=body)
    assert response.status_code == 200, response.json
    data = response.json
    data["public_id"] = data["form_url"].rsplit("/", 1)[1]
    data["path"] = f"/f/{data['public_id']}"
    data["api_path"] = f"/api/signup/{data['public_id']}/"
    return data


def create_key(api, page: dict) -> str:
    response = api.post(f"/api/integrations/{page['id']}/api-key/")
    assert response.status_code == 201, response.json
    return response.json["api_key"]


def api_post(client, page: dict, body, key: str | None, **kw):
    headers = {**({"X-API-Key": key} if key else {}), **kw.pop("headers", {})}
    return client.post(page["api_path"], json=body, headers=headers, **kw)


def form_token(client, page: dict, path: str = "") -> str:
    html = client.get(page["path"] + path).get_data(as_text=True)
    return re.search(r'name="form-token" value="([^"]+)"', html).group(1)


def hosted_post(client, page: dict, data: dict, token: str | None = None, path: str = ""):
    token = token if token is not None else form_token(client, page, path)
    return client.post(page["path"] + path, data={"form-token": token, **data})


def embed_definition(client, page: dict, origin: str = SHOP):
    return client.get(f"{page['path']}/embed.json", headers={"Origin": origin})


def embed_post(client, page: dict, values: dict, origin: str = SHOP, token: str | None = None):
    token = token if token is not None else embed_definition(client, page, origin).json["token"]
    return client.post(f"{page['path']}/embed", json={"form-token": token, **values}, headers={"Origin": origin})
