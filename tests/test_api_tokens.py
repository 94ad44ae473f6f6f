"""The account page's API tokens: made with a name and shown once, listed with when each was last
used, revoked after confirming; each user sees and revokes only their own."""
import re

from app.extensions import db
from app.models import ApiToken
from app.services import accounts
from tests.conftest import Browser, make_user


def make_token(browser, name="Website backend"):
    response = browser.post("/account/tokens", {"name": name}, token_from="/account/tokens")
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    return response, re.search(r'<pre class="payload" id="new-token">([^<]+)</pre>', response.get_data(as_text=True)).group(1)


def test_a_token_is_shown_once_works_and_shows_when_it_was_last_used(app, browser, admin):
    empty = browser.get("/account/tokens").get_data(as_text=True)
    assert 'id="no-tokens"' in empty
    response, token = make_token(browser)
    assert response.headers["Cache-Control"] == "no-store" and token.startswith("sb_")
    stored = db.session.query(ApiToken).one()
    assert stored.name == "Website backend" and token not in (stored.token_hash or "")
    listed = browser.get("/account/tokens").get_data(as_text=True)
    assert token not in listed and "Website backend" in listed and f'id="token-{stored.id}"' in listed
    assert re.search(rf'id="token-{stored.id}">.*?</td>\s*<td class="nowrap">never</td>', listed, re.S)
    assert app.test_client().get("/api/integrations/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listed = browser.get("/account/tokens").get_data(as_text=True)
    assert not re.search(rf'id="token-{stored.id}">.*?</td>\s*<td class="nowrap">never</td>', listed, re.S)


def test_a_name_is_needed_and_kept_short(browser):
    for name, words in (("  ", "Say what the token is for"), ("x" * 101, "Keep the name under 100 characters.")):
        response = browser.post("/account/tokens", {"name": name}, token_from="/account/tokens")
        assert response.status_code == 400 and words in response.get_data(as_text=True)
        assert 'id="new-token"' not in response.get_data(as_text=True)
    assert db.session.query(ApiToken).count() == 0


def test_revoking_asks_first_then_the_token_stops(app, browser):
    _, token = make_token(browser)
    _, kept = make_token(browser, "Zapier")
    revoked_id = db.session.query(ApiToken).filter_by(name="Website backend").one().id
    question = browser.get(f"/account/tokens/{revoked_id}/revoke").get_data(as_text=True)
    assert "Revoke Website backend?" in question and 'id="confirm-revoke"' in question
    assert db.session.get(ApiToken, revoked_id) is not None
    done = browser.post(f"/account/tokens/{revoked_id}/revoke", token_from=f"/account/tokens/{revoked_id}/revoke")
    assert done.status_code == 302
    client = app.test_client()
    assert client.get("/api/integrations/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/api/integrations/", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    assert "Website backend was revoked" in browser.get("/account/tokens").get_data(as_text=True)


def test_nobody_sees_or_revokes_another_users_tokens(app, browser, admin, other_admin):
    colleague = make_user("Acme", "colleague@acme.example.com")
    theirs = accounts.create_api_token(colleague, "Colleague's script")
    outsider_token = accounts.create_api_token(other_admin, "Globex script")
    db.session.commit()
    ids = {t.name: t.id for t in db.session.query(ApiToken)}
    page = browser.get("/account/tokens").get_data(as_text=True)
    assert "Colleague's script" not in page and "Globex script" not in page
    for name in ("Colleague's script", "Globex script"):
        assert browser.get(f"/account/tokens/{ids[name]}/revoke").status_code == 404
        assert browser.post(f"/account/tokens/{ids[name]}/revoke", token_from="/account/tokens").status_code == 404
    assert db.session.query(ApiToken).count() == 2
    for token in (theirs, outsider_token):
        assert app.test_client().get("/api/integrations/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert Browser(app.test_client()).client.get("/account/tokens").status_code == 302  # signed out: to sign-in
