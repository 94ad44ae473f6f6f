"""Staff pages of a sign-up page: its panel (addresses, embed code, API key), the key's create and
replace flow (admins only, shown once), the submissions page (escaped, filtered, counted) and the API list."""
import re

from app.extensions import db
from app.models import Integration
from tests.conftest import Browser, make_user
from tests.signup_helpers import (api_post, create_key, embed_post, hosted_post, make_page,  # noqa: F401
                                  signup_settings)


def test_panel_shows_the_addresses_the_embed_code_and_how_to_get_a_key(app, api, browser):
    page = make_page(api, allowed_origins="")
    html = browser.get(f"/integrations/{page['id']}").get_data(as_text=True)
    assert page["form_url"] in html and page["submit_url"] in html
    assert "&lt;script src=&#34;https://switchboard.example.com/static/signup/embed.js&#34;" in html
    assert f"/f/{page['public_id']}/frame" in html
    assert 'id="no-origins"' in html  # says what to do for the embed to work
    assert 'id="create-api-key"' in html and "No key yet" in html
    assert 'id="count-total">0<' in html and 'id="conversion">—<' in html


def test_admin_creates_the_key_sees_it_once_and_replaces_it_after_confirming(app, api, browser):
    page = make_page(api)
    created = browser.post(f"/integrations/{page['id']}/api-key", token_from=f"/integrations/{page['id']}")
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    key = re.search(r'<pre class="payload" id="api-key">([^<]+)</pre>', created.get_data(as_text=True)).group(1)
    client = app.test_client()
    assert api_post(client, page, {"email": "jane@example.com", "terms": True}, key).status_code == 201

    detail = browser.get(f"/integrations/{page['id']}").get_data(as_text=True)
    assert key not in detail and 'id="replace-api-key"' in detail and "A key was created" in detail
    question = browser.get(f"/integrations/{page['id']}/api-key").get_data(as_text=True)
    assert "stops working at once" in question and 'id="confirm-replace"' in question
    replaced = browser.post(f"/integrations/{page['id']}/api-key", token_from=f"/integrations/{page['id']}/api-key")
    new_key = re.search(r'id="api-key">([^<]+)<', replaced.get_data(as_text=True)).group(1)
    assert new_key != key and "The old key no longer works" in replaced.get_data(as_text=True)
    assert api_post(client, page, {"email": "jane@example.com", "terms": True}, key).status_code == 401
    assert api_post(client, page, {"email": "jane@example.com", "terms": True}, new_key).status_code == 201
    log = api.get(f"/api/integrations/{page['id']}/logs/").json["items"]
    assert [e["event"] for e in log][:2] == ["api_key_replaced", "api_key_created"]
    assert all(key not in e["message"] and new_key not in e["message"] for e in log)


def test_staff_cannot_make_keys_and_other_organisations_pages_are_404(app, api, admin, other_admin):
    page = make_page(api)
    staff = make_user("Acme", "staff@acme.example.com", role="staff")
    clerk = Browser(app.test_client()).login(staff.email)
    detail = clerk.get(f"/integrations/{page['id']}").get_data(as_text=True)
    assert 'id="create-api-key"' not in detail and "An admin of your organisation" in detail
    assert clerk.post(f"/integrations/{page['id']}/api-key", token_from=f"/integrations/{page['id']}").status_code == 403
    assert db.session.get(Integration, page["id"]).api_key_hash is None
    outsider = Browser(app.test_client()).login(other_admin.email)
    for path in (f"/integrations/{page['id']}/submissions", f"/integrations/{page['id']}/api-key"):
        assert outsider.get(path).status_code == 404
    email = api.post("/api/integrations/", json={"integration_type": "email", "name": "Mail", "provider": "smtp"}).json
    assert clerk.get(f"/integrations/{email['id']}/submissions").status_code == 404


def test_submissions_page_lists_escaped_raw_fields_errors_spam_and_contacts_with_counts(app, api, browser, run_jobs,
                                                                                      monkeypatch):
    page = make_page(api)
    empty = browser.get(f"/integrations/{page['id']}/submissions").get_data(as_text=True)
    assert 'id="submissions-empty"' in empty and "embed code" in empty
    client = app.test_client()
    client.get(page["path"])  # a view; each post below also views the form first
    hosted_post(client, page, {"email": "jane@example.com", "first_name": "<script>alert(1)</script>", "terms": "on"})
    hosted_post(client, page, {"email": "nope", "terms": "on"})
    hosted_post(client, page, {"email": "bot@example.com", "your-website": "x"})
    embed_post(client, page, {"email": "sam@example.com", "terms": True})
    run_jobs()
    response = browser.get(f"/integrations/{page['id']}/submissions")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Not a valid email address" in html and "Spam: The hidden field" in html
    assert len(re.findall(r'href="/contacts/\d+">Contact</a>', html)) == 2
    assert 'id="total-submissions">4<' in html and 'id="total-processed">2<' in html
    assert 'id="total-spam">1<' in html and 'id="total-invalid">1<' in html
    assert 'id="total-views">5<' in html and 'id="total-conversion">40%<' in html  # 2 processed of 5 views
    assert 'id="signup-chart"' in html and "conversion" in html and 'id="conversion-definition"' in html
    spam_only = browser.get(f"/integrations/{page['id']}/submissions?status=spam").get_data(as_text=True)
    assert spam_only.count('class="webhook-event submission') == 1 and "bot@example.com" in spam_only
    none_failed = browser.get(f"/integrations/{page['id']}/submissions?status=failed").get_data(as_text=True)
    assert "No failed submissions" in none_failed
    assert browser.get(f"/integrations/{page['id']}/submissions?page=abc&status=%00").status_code in (200, 400)
    panel = browser.get(f"/integrations/{page['id']}").get_data(as_text=True)
    assert 'id="count-total">4<' in panel and 'id="conversion">40%<' in panel


def test_api_lists_submissions_with_a_status_filter(app, api):
    page = make_page(api)
    key = create_key(api, page)
    client = app.test_client()
    api_post(client, page, {"email": "jane@example.com", "terms": True}, key)
    api_post(client, page, {"email": "nope"}, key)
    listed = api.get(f"/api/integrations/{page['id']}/submissions/")
    assert listed.status_code == 200 and listed.json["total"] == 2
    newest = listed.json["items"][0]
    assert newest["status"] == "invalid" and newest["fields"] == {"email": "nope"} and newest["source"] == "api"
    assert set(newest["errors"]) == {"email", "terms"}
    invalid = api.get(f"/api/integrations/{page['id']}/submissions/?status=invalid").json
    assert invalid["total"] == 1
    assert api.get(f"/api/integrations/{page['id']}/submissions/?status=bogus").status_code == 400
