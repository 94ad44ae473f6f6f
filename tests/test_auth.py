"""First run, sign-in, password change, team management, rate limiting, headers."""
from sqlalchemy import select

from app.extensions import db
from app.models import Organization, User
from tests.conftest import PASSWORD, Browser, csrf_token_from, make_user


def setup_page(client):
    return csrf_token_from(client.get("/setup").get_data(as_text=True))


def test_first_run_leads_every_page_to_setup(app):
    client = app.test_client()
    for path in ("/", "/integrations", "/integrations/stats", "/login", "/users"):
        response = client.get(path)
        assert response.status_code == 302 and response.location.endswith("/setup"), path


def test_setup_creates_organisation_and_admin_then_closes(app):
    client = app.test_client()
    token = setup_page(client)
    response = client.post("/setup", data={"organization_name": "Acme", "email": "Owner@Example.com",
                                           "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and response.location.endswith("/integrations")
    user = db.session.scalar(select(User))
    assert user.email == "owner@example.com" and user.role == "admin" and user.organization.name == "Acme"
    assert user.password_hash != PASSWORD and PASSWORD not in user.password_hash
    assert client.get("/integrations").status_code == 200  # signed in
    other = app.test_client()
    assert other.get("/setup").location.endswith("/login")
    assert other.post("/setup", data={"organization_name": "Evil", "email": "x@example.com",
                                      "password": PASSWORD}).status_code in (302, 400)
    assert db.session.query(Organization).count() == 1


def test_setup_shows_errors_by_field(app):
    client = app.test_client()
    token = setup_page(client)
    response = client.post("/setup", data={"organization_name": "", "email": "not-an-email",
                                           "password": "short", "csrf_token": token})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This field is required." in html or "Give your organisation a name." in html
    assert 'id="password-error"' in html and "at least 10 characters" in html
    assert db.session.query(User).count() == 0


def test_login_logout_and_wrong_password(app, admin):
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    bad = client.post("/login", data={"email": admin.email, "password": "wrong password", "csrf_token": token})
    assert bad.status_code == 400 and "Wrong email or password." in bad.get_data(as_text=True)
    browser = Browser(client).login(admin.email)
    assert client.get("/integrations").status_code == 200
    response = browser.post("/logout", token_from="/integrations")
    assert response.status_code == 302
    assert client.get("/integrations").location.startswith("/login")


def test_login_does_not_redirect_off_site(app, admin):
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=//evil.example.com/x", data={"email": admin.email, "password": PASSWORD,
                                                                   "csrf_token": token})
    assert response.location == "/integrations"


def test_login_is_rate_limited(app, admin):
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    codes = [client.post("/login", data={"email": admin.email, "password": "nope nope nope", "csrf_token": token}).status_code
             for _ in range(12)]
    assert codes[:10] == [400] * 10 and codes[-1] == 429
    # Even the right password is refused while limited.
    assert client.post("/login", data={"email": admin.email, "password": PASSWORD, "csrf_token": token}).status_code == 429


def test_change_password(app, browser, admin):
    wrong = browser.post("/account/password", {"current_password": "nope", "new_password": "another long one"})
    assert wrong.status_code == 400 and "not your current password" in wrong.get_data(as_text=True)
    ok = browser.post("/account/password", {"current_password": PASSWORD, "new_password": "another long one"})
    assert ok.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, admin.id).check_password("another long one")


def test_admin_adds_staff_who_cannot_add_users(app, browser, admin):
    response = browser.post("/users", {"email": "staff@example.com", "password": PASSWORD, "role": "staff"})
    assert response.status_code == 302
    staff = db.session.scalar(select(User).where(User.email == "staff@example.com"))
    assert staff.organization_id == admin.organization_id and staff.role == "staff"
    duplicate = browser.post("/users", {"email": "staff@example.com", "password": PASSWORD, "role": "staff"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.get_data(as_text=True)

    staff_browser = Browser(app.test_client()).login("staff@example.com")
    assert "Only admins can add, change and remove users." in staff_browser.get("/users").get_data(as_text=True)
    assert staff_browser.post("/users", {"email": "x@example.com", "password": PASSWORD, "role": "admin"},
                              token_from="/account/password").status_code == 403
    assert db.session.scalar(select(User).where(User.email == "x@example.com")) is None


def test_team_page_lists_only_own_organisation(app, browser, other_admin):
    html = browser.get("/users").get_data(as_text=True)
    assert "admin@acme.example.com" in html and other_admin.email not in html


def test_security_headers_and_cookie_flags(app, admin):
    client = app.test_client()
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin")
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    api = client.get("/api/integrations/")
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def test_csrf_is_required_on_every_form(app, browser, admin):
    from app.services import integrations as svc
    integration, _ = svc.create_integration(admin.organization_id, admin, "email", "Mail", "smtp")
    db.session.commit()
    for path, data in [
        ("/login", {"email": admin.email, "password": PASSWORD}),
        ("/integrations/new/email", {"name": "x", "provider": "smtp"}),
        (f"/integrations/{integration.id}/edit", {"name": "renamed"}),
        (f"/integrations/{integration.id}/delete", {}),
        (f"/integrations/{integration.id}/test", {}),
        (f"/integrations/{integration.id}/active", {"active": "0"}),
        ("/account/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
        ("/users", {"email": "y@example.com", "password": PASSWORD, "role": "admin"}),
        ("/logout", {}),
    ]:
        response = browser.client.post(path, data=data)
        assert response.status_code == 400, path
        assert "security token" in response.get_data(as_text=True), path
    db.session.expire_all()
    assert db.session.get(type(integration), integration.id).name == "Mail"


def test_cli_create_user_and_api_token(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "--email", "cli@example.com", "--password", PASSWORD,
                                 "--org", "Initech", "--admin"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["create-user", "--email", "cli2@example.com", "--password", PASSWORD, "--org", "Initech"])
    assert again.exit_code == 0
    assert db.session.query(Organization).filter_by(name="Initech").count() == 1
    bad = runner.invoke(args=["create-user", "--email", "nope", "--password", "x", "--org", "Initech"])
    assert bad.exit_code == 1 and "email" in bad.output
    result = runner.invoke(args=["create-api-token", "--email", "cli@example.com"])
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    response = app.test_client().get("/api/integrations/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json == []
    from app.models import ApiToken
    assert token not in {t.token_hash for t in db.session.query(ApiToken)}
    assert db.session.query(ApiToken).one().name == "Made on the command line"
    named = runner.invoke(args=["create-api-token", "--email", "cli@example.com", "--name", "Nightly export"])
    assert named.exit_code == 0 and db.session.query(ApiToken).filter_by(name="Nightly export").count() == 1
    assert runner.invoke(args=["create-api-token", "--email", "cli@example.com", "--name", " "]).exit_code == 1
    missing = runner.invoke(args=["create-api-token", "--email", "ghost@example.com"])
    assert missing.exit_code == 1


def test_make_user_helper_roles(app):
    staff = make_user("Acme", "s@example.com", role="staff")
    assert not staff.is_admin
