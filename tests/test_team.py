"""The team page: admins change roles and remove members (after confirming); the organisation always
keeps an admin; a removed member is signed out and their API tokens stop working; staff and other
organisations can do none of it."""
import re

from app.extensions import db
from app.models import ApiToken, User
from app.services import accounts
from tests.conftest import PASSWORD, Browser, make_user


def role_of(user_id: int) -> str:
    db.session.expire_all()
    return db.session.get(User, user_id).role


def test_admins_change_roles_and_the_last_admin_cannot_step_down(app, browser, admin):
    clerk = make_user("Acme", "clerk@acme.example.com", role="staff")
    page = browser.get("/users").get_data(as_text=True)
    assert f'id="role-{clerk.id}"' in page and f'id="remove-{clerk.id}"' in page
    assert f'id="remove-{admin.id}"' not in page  # nobody removes themself

    refused = browser.post(f"/users/{admin.id}/role", {"role": "staff"}, token_from="/users")
    assert refused.status_code == 400
    assert f'id="role-error-{admin.id}"' in refused.get_data(as_text=True)
    assert "is the only admin. Make someone else admin first." in refused.get_data(as_text=True)
    assert role_of(admin.id) == "admin"
    assert browser.post(f"/users/{clerk.id}/role", {"role": "owner"}).status_code == 400
    assert role_of(clerk.id) == "staff"

    assert browser.post(f"/users/{clerk.id}/role", {"role": "admin"}).status_code == 302
    assert role_of(clerk.id) == "admin"
    assert browser.post(f"/users/{admin.id}/role", {"role": "staff"}).status_code == 302
    assert role_of(admin.id) == "staff"
    # Now staff: the change applies at once, without signing in again.
    assert browser.post(f"/users/{clerk.id}/role", {"role": "staff"}).status_code == 403
    assert 'id="role-' not in browser.get("/users").get_data(as_text=True)
    assert role_of(clerk.id) == "admin"


def test_a_removed_member_is_signed_out_and_their_tokens_stop(app, browser, admin):
    clerk = make_user("Acme", "clerk@acme.example.com", role="staff")
    token = accounts.create_api_token(clerk)
    db.session.commit()
    clerk_id, clerk_email = clerk.id, clerk.email
    clerk_browser = Browser(app.test_client()).login(clerk_email)
    api_headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/integrations/", headers=api_headers).status_code == 200

    question = browser.get(f"/users/{clerk_id}/remove").get_data(as_text=True)
    assert "their 1 API token stops working" in question and 'id="confirm-remove"' in question
    assert db.session.get(User, clerk_id) is not None  # asking removes nothing
    done = browser.post(f"/users/{clerk_id}/remove", token_from=f"/users/{clerk_id}/remove")
    assert done.status_code == 302
    db.session.expunge_all()
    assert db.session.get(User, clerk_id) is None and db.session.query(ApiToken).filter_by(user_id=clerk_id).count() == 0
    assert clerk_browser.get("/integrations").status_code == 302  # back to the sign-in page
    assert app.test_client().get("/api/integrations/", headers=api_headers).status_code == 401
    team = browser.get("/users").get_data(as_text=True)
    assert f"{clerk_email} was removed from the team" in team and f'id="user-{clerk_id}"' not in team


def test_nobody_removes_themself_and_staff_and_outsiders_change_nothing(app, browser, admin, other_admin):
    refused = browser.post(f"/users/{admin.id}/remove", token_from=f"/users/{admin.id}/remove")
    assert refused.status_code == 400 and "You cannot remove yourself" in refused.get_data(as_text=True)
    assert db.session.get(User, admin.id) is not None

    clerk = make_user("Acme", "clerk@acme.example.com", role="staff")
    clerk_browser = Browser(app.test_client()).login(clerk.email)
    assert clerk_browser.get(f"/users/{admin.id}/remove").status_code == 403
    assert clerk_browser.post(f"/users/{admin.id}/remove", token_from="/users").status_code == 403
    assert clerk_browser.post(f"/users/{clerk.id}/role", {"role": "admin"}).status_code == 403
    assert "Only admins can add, change and remove users." in clerk_browser.get("/users").get_data(as_text=True)

    outsider = Browser(app.test_client()).login(other_admin.email)
    assert outsider.get(f"/users/{clerk.id}/remove").status_code == 404
    assert outsider.post(f"/users/{clerk.id}/remove", token_from="/users").status_code == 404
    assert outsider.post(f"/users/{clerk.id}/role", {"role": "admin"}).status_code == 404
    assert role_of(clerk.id) == "staff" and db.session.get(User, clerk.id) is not None
    # A post without its form's token changes nothing.
    no_token = app.test_client()
    Browser(no_token).login(admin.email)
    assert no_token.post(f"/users/{clerk.id}/role", data={"role": "admin"}).status_code == 400
    assert no_token.post(f"/users/{clerk.id}/remove").status_code == 400
    assert role_of(clerk.id) == "staff" and db.session.get(User, clerk.id) is not None
    assert re.search(r"is now|was removed", no_token.get("/users").get_data(as_text=True)) is None


def test_a_new_password_signs_out_every_other_session(app, browser, admin):
    phone = Browser(app.test_client()).login(admin.email)
    changed = browser.post("/account/password", {"current_password": PASSWORD, "new_password": "a brand new password"},
                           token_from="/account/password")
    assert changed.status_code == 302
    assert browser.get("/integrations").status_code == 200  # this session carries on
    assert phone.get("/integrations").status_code == 302  # the other one signs in again
    assert Browser(app.test_client()).login(admin.email, "a brand new password").get("/integrations").status_code == 200


def test_an_admin_gives_a_member_a_new_password_and_signs_them_out(app, browser, admin, other_admin):
    clerk = make_user("Acme", "clerk@acme.example.com", role="staff")
    clerk_id = clerk.id
    clerk_browser = Browser(app.test_client()).login(clerk.email)
    page = browser.get(f"/users/{clerk_id}/password").get_data(as_text=True)
    assert "signed out everywhere" in page and 'id="set-password"' in page
    short = browser.post(f"/users/{clerk_id}/password", {"password": "short"}, token_from=f"/users/{clerk_id}/password")
    assert short.status_code == 400 and "Use at least 10 characters." in short.get_data(as_text=True)
    assert clerk_browser.get("/integrations").status_code == 200  # nothing changed yet
    done = browser.post(f"/users/{clerk_id}/password", {"password": "given by the admin"})
    assert done.status_code == 302
    assert clerk_browser.get("/integrations").status_code == 302
    assert Browser(app.test_client()).login("clerk@acme.example.com", "given by the admin").get(
        "/integrations").status_code == 200
    # Their own page for themself; staff and other organisations cannot.
    assert browser.get(f"/users/{admin.id}/password").headers["Location"].endswith("/account/password")
    staff = Browser(app.test_client()).login("clerk@acme.example.com", "given by the admin")
    assert staff.post(f"/users/{admin.id}/password", {"password": "taken over!!"}, token_from="/users").status_code == 403
    outsider = Browser(app.test_client()).login(other_admin.email)
    assert outsider.post(f"/users/{clerk_id}/password", {"password": "taken over!!"},
                         token_from="/users").status_code == 404
    assert Browser(app.test_client()).login("clerk@acme.example.com", "given by the admin").get(
        "/integrations").status_code == 200
