"""The three ways into a sign-up page (hosted form, embedded form, JSON endpoint): stored first,
validated against the form's fields, spam kept apart, and a clear 4xx for whatever a client sends."""
import hashlib
import re

import pytest

from app import create_app
from app.extensions import db
from app.models import Contact, Integration, SignupPageView, SignupSubmission
from tests.signup_helpers import (SHOP, api_post, create_key, embed_definition, embed_post, form_token,
                                  hosted_post, make_page, signup_settings)  # noqa: F401  (fixture)

JANE = {"email": "jane@example.com", "first_name": "Jane", "terms": True}
CONFIG_OF_THE_TEST_APP = ("APP_ENV", "TESTING", "SECRET_KEY", "ENCRYPTION_KEYS", "SQLALCHEMY_DATABASE_URI", "REDIS_URL",
                          "RATELIMIT_STORAGE_URI", "RQ_QUEUE", "PUBLIC_BASE_URL", "PASSWORD_HASH_METHOD",
                          "SIGNUP_MIN_FILL_SECONDS", "SIGNUP_RATE_LIMIT")


def submissions():
    db.session.expire_all()
    return db.session.query(SignupSubmission).order_by(SignupSubmission.received_at).all()


# -- the JSON endpoint and its key ------------------------------------------------------------

def test_the_key_is_shown_once_only_its_hash_is_kept_and_a_new_one_replaces_it(app, api):
    page = make_page(api)
    client = app.test_client()
    first = api.post(f"/api/integrations/{page['id']}/api-key/")
    assert first.status_code == 201 and set(first.json) == {"api_key"}
    key = first.json["api_key"]
    assert db.session.get(Integration, page["id"]).api_key_hash == hashlib.sha256(key.encode()).hexdigest()
    shown = api.get(f"/api/integrations/{page['id']}/")
    assert key not in shown.get_data(as_text=True) and shown.json["has_api_key"] is True
    assert api_post(client, page, JANE, key).status_code == 201

    second = create_key(api, page)
    assert second != key
    old = api_post(client, page, JANE, key)
    assert old.status_code == 401 and "wrong" in old.json["error"]
    assert api_post(client, page, JANE, second).status_code == 201


def test_forwarded_addresses_are_believed_only_from_as_many_proxies_as_trusted_proxies_says(app, api):
    page = make_page(api)
    key = create_key(api, page)
    forged = {"X-API-Key": key, "X-Forwarded-For": "203.0.113.9"}
    assert api_post(app.test_client(), page, JANE, key, headers=forged).status_code == 201
    assert [row.ip for row in submissions()] == ["127.0.0.1"]  # no proxy trusted: the header is the client's word

    behind_nginx = create_app({**{name: app.config[name] for name in CONFIG_OF_THE_TEST_APP}, "TRUSTED_PROXIES": 1})
    behind_nginx.test_client_class = type(app.test_client())
    with behind_nginx.app_context():
        client = behind_nginx.test_client()
        assert api_post(client, page, JANE, key, headers=forged).status_code == 201
        token = form_token(client, page)
        posted = client.post(page["path"], data={"form-token": token, **JANE},
                             headers={"X-Forwarded-For": "198.51.100.4"})
        assert posted.status_code in (200, 303)
    assert [row.ip for row in submissions()] == ["127.0.0.1", "203.0.113.9", "198.51.100.4"]


def test_json_endpoint_answers_201_with_the_stored_row_400_by_field_and_401_without_a_key(app, api):
    page = make_page(api)
    client = app.test_client()
    no_key_yet = api_post(client, page, JANE, "anything")
    assert no_key_yet.status_code == 401 and "no API key yet" in no_key_yet.json["error"]
    key = create_key(api, page)
    missing = api_post(client, page, JANE, None)
    assert missing.status_code == 401 and "X-API-Key" in missing.json["error"]
    assert api_post(client, page, JANE, key[:-1]).status_code == 401
    assert submissions() == []

    created = api_post(client, page, {**JANE, "plan": "Pro"}, key, headers={"X-API-Key": key, "User-Agent": "CRM-sync/2"})
    assert created.status_code == 201 and set(created.json) == {"submission_id"}
    row = db.session.get(SignupSubmission, created.json["submission_id"])
    assert (row.status, row.source, row.ip, row.user_agent) == ("pending", "api", "127.0.0.1", "CRM-sync/2")
    assert row.fields == {**JANE, "plan": "Pro"} and row.received_at is not None

    bad = api_post(client, page, {"email": "not-an-email", "phone": 12, "plan": "Gold", "terms": "maybe",
                                  "first_name": {"nested": 1}, "colour": "red"}, key)
    assert bad.status_code == 400
    assert set(bad.json["errors"]) == {"email", "phone", "plan", "terms", "first_name", "colour"}
    assert bad.json["errors"]["colour"] == ["This form has no such field."]
    invalid = db.session.get(SignupSubmission, submissions()[-1].id)
    assert invalid.status == "invalid" and invalid.errors == bad.json["errors"]
    assert invalid.fields["first_name"] == {"nested": 1}  # the raw values, as sent

    required = api_post(client, page, {"email": "jane@example.com"}, key)
    assert required.json["errors"] == {"terms": ["Tick this box to continue."]}
    neither = api_post(client, page, {"first_name": "Jane", "terms": True}, key)
    assert neither.json["errors"] == {"email": ["Give an email address or a phone number."]}


@pytest.mark.parametrize("public_id", ["unknown", "x" * 33, "x" * 5000, "%E2%98%83", "..%2F..%2Fetc", "%00", "1"])
def test_unknown_and_garbage_public_ids_are_404(app, api, public_id):
    make_page(api)
    client = app.test_client()
    for method, path, kw in (("get", f"/f/{public_id}", {}), ("post", f"/f/{public_id}", {"data": JANE}),
                             ("get", f"/f/{public_id}/frame", {}), ("get", f"/f/{public_id}/embed.json", {}),
                             ("post", f"/f/{public_id}/embed", {"json": JANE}),
                             ("post", f"/api/signup/{public_id}/", {"json": JANE})):
        response = getattr(client, method)(path, **kw)
        assert response.status_code == 404, (method, path, response.status_code)


def test_another_organisations_page_is_404_and_its_key_opens_nothing_else(app, api, other_api):
    mine, theirs = make_page(api), make_page(other_api, name="Theirs")
    my_key, their_key = create_key(api, mine), create_key(other_api, theirs)
    client = app.test_client()
    for path in (f"/api/integrations/{theirs['id']}/submissions/", f"/api/integrations/{theirs['id']}/"):
        assert api.get(path).status_code == 404
    assert api.post(f"/api/integrations/{theirs['id']}/api-key/").status_code == 404
    assert api_post(client, theirs, JANE, my_key).status_code == 401
    assert api_post(client, mine, JANE, their_key).status_code == 401
    # Another kind of integration's public id is no sign-up page: the same 404 as an unknown id.
    email = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mail", "provider": "smtp"}).json
    other_public_id = db.session.get(Integration, email["id"]).public_id
    unknown = client.post("/api/signup/unknown/", json=JANE, headers={"X-API-Key": my_key})
    other_kind = client.post(f"/api/signup/{other_public_id}/", json=JANE, headers={"X-API-Key": my_key})
    assert other_kind.status_code == unknown.status_code == 404 and other_kind.json == unknown.json
    assert client.get(f"/f/{other_public_id}").get_data() == client.get("/f/unknown").get_data()
    assert api.post(f"/api/integrations/{email['id']}/api-key/").status_code == 404
    assert api.get(f"/api/integrations/{email['id']}/submissions/").status_code == 404
    assert submissions() == []


def test_bodies_a_client_can_send_get_a_clear_4xx_and_store_nothing(app, api):
    page = make_page(api)
    key = create_key(api, page)
    client = app.test_client()
    headers = {"X-API-Key": key, "Origin": SHOP}
    huge = {"email": "jane@example.com", "first_name": "x" * (70 * 1024)}
    for path in (page["api_path"], f"{page['path']}/embed"):
        too_large = client.post(path, json=huge, headers=headers)
        assert too_large.status_code == 413 and too_large.is_json, path
        malformed = client.post(path, data=b'{"email": "jane@', content_type="application/json", headers=headers)
        assert malformed.status_code == 400 and "JSON object" in malformed.json["errors"]["body"][0]
        assert client.post(path, json=["jane@example.com"], headers=headers).status_code == 400
        assert client.post(path, json="jane", headers=headers).status_code == 400
        wrong_type = client.post(path, data="email=jane@example.com", headers=headers,
                                 content_type="application/x-www-form-urlencoded")
        assert wrong_type.status_code == 415 and "application/json" in wrong_type.json["errors"]["body"][0]
        nul = client.post(path, json={"email": "jane@example.com", "first_name": "Ja\x00ne"}, headers=headers)
        assert nul.status_code == 400
        many = client.post(path, json={f"field_{n}": "x" for n in range(101)}, headers=headers)
        assert many.status_code == 400 and many.json["errors"] == {"body": ["At most 100 fields."]}
    hosted = client.post(page["path"], data={"first_name": "x" * (70 * 1024)})
    assert hosted.status_code == 413 and "larger than" in hosted.get_data(as_text=True)
    assert client.post(page["path"], data={"first_name": "Ja\x00ne"}).status_code == 400
    assert client.put(page["api_path"], json=JANE, headers=headers).status_code == 405
    assert submissions() == []


def test_a_deactivated_page_says_so_everywhere(app, api):
    page = make_page(api)
    key = create_key(api, page)
    token = form_token(app.test_client(), page)
    assert api.put(f"/api/integrations/{page['id']}/", json={"is_active": False}).status_code == 200
    client = app.test_client()
    closed = api_post(client, page, JANE, key)
    assert closed.status_code == 403 and "deactivated" in closed.json["error"]
    assert api_post(client, page, JANE, "wrong").status_code == 401  # who asks is checked first
    for response in (client.get(page["path"]), client.get(f"{page['path']}/frame"),
                     hosted_post(client, page, {"email": "jane@example.com"}, token=token)):
        assert response.status_code == 403 and "deactivated" in response.get_data(as_text=True)
    assert embed_definition(client, page).status_code == 403
    assert submissions() == []


# -- the hosted form ----------------------------------------------------------------------------

def test_hosted_form_has_labels_required_markers_and_keeps_what_was_typed(app, api):
    page = make_page(api)
    client = app.test_client()
    response = client.get(page["path"])
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for name in ("email", "phone", "first_name", "plan", "terms"):
        assert f'<label for="f-{name}">' in html and f'id="f-{name}"' in html
    assert re.search(r'id="f-terms"[^>]*required', html) and 'class="required"' in html
    assert 'name="your-website"' in html and 'class="field honeypot"' in html
    assert 'name="viewport"' in html
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"

    token = form_token(client, page)
    invalid = hosted_post(client, page, {"email": "jane@", "first_name": "<b>Jane</b>", "plan": "Pro"}, token=token)
    html = invalid.get_data(as_text=True)
    assert invalid.status_code == 400
    assert re.search(r'id="f-email"[^>]*aria-invalid="true" aria-describedby="f-email-error"', html)
    assert 'id="f-email-error">Not a valid email address' in html
    assert 'id="f-terms-error">Tick this box to continue.' in html
    assert 'value="&lt;b&gt;Jane&lt;/b&gt;"' in html and "<b>Jane</b>" not in html  # kept, escaped
    assert "<option selected>Pro</option>" in html
    assert f'value="{token}"' in html  # the fill time still counts from the first view
    assert submissions()[0].status == "invalid"

    done = hosted_post(client, page, {"email": "jane@example.com", "terms": "on"}, token=token)
    assert done.status_code == 303 and done.headers["Location"].endswith(f"{page['path']}/thanks")
    assert "Thank you" in client.get(done.headers["Location"]).get_data(as_text=True)
    assert [s.status for s in submissions()] == ["invalid", "pending"]
    assert submissions()[1].fields == {"email": "jane@example.com", "terms": "on"}
    assert submissions()[1].source == "hosted"


def test_hosted_form_redirects_to_the_redirect_url_which_its_policy_allows(app, api):
    page = make_page(api, redirect_url="https://www.example.com/welcome")
    client = app.test_client()
    csp = client.get(page["path"]).headers["Content-Security-Policy"]
    assert "form-action 'self' https://www.example.com;" in csp  # a redirect after a post is held to it
    done = hosted_post(client, page, {"email": "jane@example.com", "terms": "on"})
    assert done.status_code == 303 and done.headers["Location"] == "https://www.example.com/welcome"


def test_form_views_are_counted_per_day(app, api):
    page = make_page(api)
    client = app.test_client()
    client.get(page["path"])
    client.get(f"{page['path']}/frame")
    embed_definition(client, page)
    embed_definition(client, page, origin="https://elsewhere.example.com")  # refused: not a view
    db.session.expire_all()
    assert [v.views for v in db.session.query(SignupPageView).all()] == [3]


# -- spam -----------------------------------------------------------------------------------------

def forged(token: str) -> str:
    """The token with one character of its signature changed: one that carries six bits (the last
    may carry only two, and a change there can leave the signature as it was)."""
    position = len(token) - 10
    return token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1:]


def test_honeypot_and_fill_time_get_the_same_thank_you_create_nothing_and_are_marked_spam(app, api, monkeypatch,
                                                                                          run_jobs):
    page, other = make_page(api), make_page(api, name="Other")
    client = app.test_client()
    person = {"email": "bot@example.com", "terms": "on"}
    honeypot = hosted_post(client, page, {**person, "your-website": "http://spam.example"})
    human = hosted_post(client, page, {"email": "jane@example.com", "terms": "on"})
    assert honeypot.status_code == human.status_code == 303
    assert honeypot.headers["Location"] == human.headers["Location"]
    no_token = client.post(page["path"], data=person)
    foreign_token = hosted_post(client, page, person, token=form_token(client, other))
    forged_token = hosted_post(client, page, person, token=forged(form_token(client, page)))
    monkeypatch.setitem(app.config, "SIGNUP_MIN_FILL_SECONDS", 30)
    too_fast = hosted_post(client, page, person)
    embedded = embed_post(client, page, {**person, "terms": True, "your-website": "x"})
    assert {r.status_code for r in (no_token, foreign_token, forged_token, too_fast)} == {303}
    assert embedded.status_code == 201 and set(embedded.json) == {"submission_id", "message", "redirect_url"}

    rows = submissions()
    assert [r.status for r in rows] == ["spam", "pending", "spam", "spam", "spam", "spam", "spam"]
    reasons = [r.spam_reason for r in rows if r.status == "spam"]
    assert "hidden field" in reasons[0] and "token is missing" in reasons[1]
    assert "not made for this page" in reasons[2] and "not made for this page" in reasons[3]
    assert "faster than a person" in reasons[4] and rows[5].fill_seconds < 30
    assert "your-website" not in rows[0].fields and rows[0].fields["email"] == "bot@example.com"
    run_jobs()
    assert [c.email for c in db.session.query(Contact)] == ["jane@example.com"]
    assert [r.status for r in submissions()].count("spam") == 6


def test_the_rate_limit_holds_per_client_ip_across_the_browser_forms(app, api, monkeypatch):
    page = make_page(api)
    monkeypatch.setitem(app.config, "SIGNUP_RATE_LIMIT", "2 per minute")
    client = app.test_client()
    assert hosted_post(client, page, {"email": "jane@example.com", "terms": "on"}).status_code == 303
    assert embed_post(client, page, JANE).status_code == 201
    limited = embed_post(client, page, JANE)
    assert limited.status_code == 429 and limited.is_json
    assert client.post(page["path"], data={}).status_code == 429
    assert client.get(page["path"]).status_code == 200  # showing the form is not limited
    elsewhere = app.test_client()
    other_ip = elsewhere.post(page["path"], data={"email": "jane@example.com", "terms": "on"},
                              environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert other_ip.status_code == 303  # stored (as spam: no form token), not limited
    assert len(submissions()) == 3


def test_the_api_limits_refused_keys_per_ip_not_a_business_import(app, api, monkeypatch):
    """The JSON endpoint's caller is the business's own server: a whole import comes from one address."""
    page = make_page(api)
    key = create_key(api, page)
    monkeypatch.setitem(app.config, "SIGNUP_RATE_LIMIT", "3 per minute")
    client = app.test_client()
    for n in range(6):
        assert api_post(client, page, {**JANE, "email": f"person{n}@example.com"}, key).status_code == 201
    assert [api_post(client, page, JANE, "sbk_guess").status_code for _ in range(4)] == [401, 401, 401, 429]
    assert api_post(client, page, JANE, None).status_code == 429  # a missing key counts too, once over the limit
    assert api_post(client, page, JANE, key).status_code == 201  # the right key still goes through
    elsewhere = app.test_client()
    assert api_post(elsewhere, page, JANE, "sbk_guess", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 401
    assert len(submissions()) == 7


# -- the embedded form and CORS -------------------------------------------------------------------

def test_cors_answers_only_the_allowed_origins(app, api):
    page = make_page(api, allowed_origins=f"{SHOP}\nhttp://127.0.0.1:8080")
    client = app.test_client()
    form = embed_definition(client, page)
    assert form.status_code == 200 and form.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in form.headers["Vary"]
    assert [f["name"] for f in form.json["fields"]] == ["email", "phone", "first_name", "plan", "terms"]
    assert form.json["submit_url"].endswith(f"{page['path']}/embed")
    assert embed_definition(client, page, "http://127.0.0.1:8080").headers["Access-Control-Allow-Origin"] == \
        "http://127.0.0.1:8080"
    other = embed_definition(client, page, "https://evil.example.com")
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
    lookalike = embed_definition(client, page, "https://shop.example.com.evil.example")
    assert "Access-Control-Allow-Origin" not in lookalike.headers

    preflight = client.options(f"{page['path']}/embed", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"
    refused = client.options(f"{page['path']}/embed", headers={"Origin": "https://evil.example.com",
                                                               "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers

    token = form.json["token"]
    assert embed_post(client, page, JANE, origin="https://evil.example.com", token=token).status_code == 403
    no_origin = client.post(f"{page['path']}/embed", json={"form-token": token, **JANE})
    assert no_origin.status_code == 403 and "allowed origins" in no_origin.json["error"]
    assert submissions() == []
    accepted = embed_post(client, page, JANE, token=token)
    assert accepted.status_code == 201 and accepted.headers["Access-Control-Allow-Origin"] == SHOP
    invalid = embed_post(client, page, {"email": "jane@"}, token=token)
    assert invalid.status_code == 400 and invalid.headers["Access-Control-Allow-Origin"] == SHOP
    assert set(invalid.json["errors"]) == {"email", "terms"}
    row = submissions()[0]
    assert (row.source, row.origin, row.status) == ("embed", SHOP, "pending")


def test_the_iframe_may_be_framed_by_the_allowed_origins_only(app, api):
    page = make_page(api)
    client = app.test_client()
    response = client.get(f"{page['path']}/frame")
    csp = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {SHOP}" in csp and "script-src 'self'" in csp
    assert "X-Frame-Options" not in response.headers
    done = hosted_post(client, page, {"email": "jane@example.com", "terms": "on"}, path="/frame")
    assert done.status_code == 303 and done.headers["Location"].endswith(f"{page['path']}/thanks?frame=1")
    thanks = client.get(done.headers["Location"])
    assert "frame-ancestors 'self' https://shop.example.com" in thanks.headers["Content-Security-Policy"]
    assert submissions()[0].source == "embed"


def test_integration_json_shows_form_url_submit_url_and_embed_code(api):
    page = make_page(api)
    base, public_id = "https://switchboard.example.com", page["public_id"]
    assert page["form_url"] == f"{base}/f/{public_id}"
    assert page["submit_url"] == f"{base}/api/signup/{public_id}/"
    assert page["embed_code"] == (f'<script src="{base}/static/signup/embed.js" data-switchboard-form="{public_id}" '
                                  'async></script>')
    assert f'src="{base}/f/{public_id}/frame"' in page["iframe_code"]
    assert page["has_api_key"] is False
