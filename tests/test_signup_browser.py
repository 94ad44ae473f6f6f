"""The embedded sign-up form in a real headless Chromium (Debian's, through Playwright).

A business's page is served from a second local origin with a strict Content-Security-Policy
that allows only Switchboard's origin; it embeds the form with the script tag (and, on another
page, the iframe). A person fills it in; a real `python worker.py` processes the submission; the
contact appears with its tag, and the campaign's first message is queued (and sent to SendGrid
on loopback).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from werkzeug import Response

from app.extensions import db
from app.models import Contact, Message, SignupSubmission
from tests.conftest import PASSWORD, REDIS_URL, TEST_KEY
from tests.live_server import WorkerProcess
from tests.sendgrid_fake import FakeSendGrid
from tests.signup_helpers import create_key, make_page  # noqa: F401
from tests.test_browser import assert_clean_markup, chromium, live_server, page  # noqa: F401  (fixtures)
from tests.test_outbound import make_email

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS_SIGNUP", "/tmp/switchboard-signup"))


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


class BusinessSite:
    """The business's own site on another origin, with a CSP that allows only Switchboard besides itself."""

    def __init__(self, httpserver, switchboard: str, public_id: str):
        self.origin = httpserver.url_for("/").rstrip("/")
        policy = (f"default-src 'self'; script-src 'self' {switchboard}; style-src 'self' {switchboard}; "
                  f"connect-src {switchboard}; frame-src {switchboard}; img-src data:; form-action 'self'")
        script = (f'<script src="{switchboard}/static/signup/embed.js" data-switchboard-form="{public_id}" '
                  'async></script>')
        frame = (f'<iframe src="{switchboard}/f/{public_id}/frame" title="Sign up" width="100%" height="600">'
                 '</iframe>')
        for path, body in (("/join", script), ("/join-frame", frame)):
            html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
                    f'<title>Acme Bakery</title></head>'
                    f'<body><h1>Acme Bakery</h1><p>Fresh bread news, once a week.</p>{body}</body></html>')
            httpserver.expect_request(path).respond_with_response(
                Response(html, content_type="text/html", headers={"Content-Security-Policy": policy}))


@pytest.fixture
def setup(app, api, admin, httpserver, live_server, monkeypatch):
    """A sign-up page allowing the business's origin, a campaign whose first step emails through
    SendGrid (played on loopback), and a worker process."""
    email = admin.email
    sendgrid = FakeSendGrid(httpserver)
    monkeypatch.setitem(app.config, "SENDGRID_API_BASE", sendgrid.url)
    monkeypatch.setitem(app.config, "SIGNUP_MIN_FILL_SECONDS", 1)  # a person takes longer than this
    make_email(api)
    campaign = api.post("/api/campaigns/", json={"name": "Welcome", "steps": [
        {"channel": "email", "subject": "Welcome to the bakery, {{first_name}}", "body": "Fresh bread on Fridays."}]})
    assert campaign.status_code == 201, campaign.json
    site_origin = httpserver.url_for("/").rstrip("/")
    signup = make_page(api, name="Bakery newsletter", apply_tag="Bakery fans", trigger_campaign="Welcome",
                       allowed_origins=site_origin)
    site = BusinessSite(httpserver, live_server.url, signup["public_id"])
    env = {"APP_ENV": "testing", "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": REDIS_URL,
           "RQ_QUEUE": app.config["RQ_QUEUE"], "SECRET_KEY": app.config["SECRET_KEY"], "ENCRYPTION_KEYS": TEST_KEY,
           "SENDGRID_API_BASE": sendgrid.url, "INSTANCE_PATH": str(Path(os.environ.get("TMPDIR", "/tmp")))}
    db.session.remove()  # the test thread holds no connection while the server works
    return {"page": signup, "site": site, "sendgrid": sendgrid, "env": env, "email": email}


def wait_for(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_a_person_signs_up_through_the_embedded_form_on_another_site(page, live_server, setup, tmp_path):
    site, sendgrid = setup["site"], setup["sendgrid"]
    with WorkerProcess(setup["env"], tmp_path / "worker.log", redis_url=REDIS_URL,
                       queue=setup["env"]["RQ_QUEUE"]) as worker:
        try:
            _embedded_flow(page, live_server, setup, site, sendgrid, worker)
        except Exception:
            shot(page, "failure")
            print("worker output:\n" + worker.output())
            raise
    # Moving on to the next page quickly can cut the previous page's favicon request short.
    assert [p for p in page.problems if not ("favicon" in p and "ERR_ABORTED" in p)] == [], page.problems


def _embedded_flow(page, live_server, setup, site, sendgrid, worker):
    # The business's page, on its own origin, renders the form in place from the script tag.
    page.goto(f"{site.origin}/join")
    form = page.locator("form.sb-form")
    expect(form).to_be_visible()
    expect(page.get_by_label("Email")).to_be_visible()
    expect(page.locator(".sb-hp")).to_be_hidden()
    shot(page, "01-embedded-form")

    # A mistake is answered next to its field, and what was typed stays.
    page.get_by_label("Email").fill("jane@")
    page.get_by_label("First name").fill("Jane")
    time.sleep(1.2)  # longer than the page's minimum fill time
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#sb-" + setup["page"]["public_id"] + "-email-error")).to_contain_text("Not a valid email")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("First name")).to_have_value("Jane")
    shot(page, "02-embedded-errors")
    page.problems = [p for p in page.problems if "status of 400" not in p]  # the form's own 400 answer

    page.get_by_label("Email").fill("Jane@Example.com")
    page.get_by_label("Phone").fill("(415) 555-2671")
    page.get_by_label("Plan").select_option("Pro")
    page.get_by_label("I agree to the terms").check()
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator(".sb-thanks")).to_have_text("Thank you for signing up.")
    shot(page, "03-embedded-thanks")

    # The worker turns it into a tagged contact, enrolled, whose first campaign message goes out.
    worker.wait_until_listening()
    message = wait_for(lambda: db.session.query(Message).filter(Message.contact_id.isnot(None)).first())
    contact = db.session.get(Contact, message.contact_id)
    assert (contact.email, contact.phone, contact.first_name) == ("jane@example.com", "+14155552671", "Jane")
    assert message.subject == "Welcome to the bakery, Jane"
    submission = db.session.query(SignupSubmission).filter_by(status="processed").one()
    assert (submission.source, submission.origin) == ("embed", site.origin)
    wait_for(lambda: sendgrid.recipients() == ["jane@example.com"])
    contact_id = contact.id
    db.session.remove()

    # Staff see it: the contact with its tag and a timeline from the sign-up to the campaign's message.
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill(setup["email"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")
    page.goto(f"{live_server.url}/contacts?tag=Bakery+fans")
    row = page.locator("#contacts-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("jane@example.com")
    expect(row).to_contain_text("Bakery fans")
    row.get_by_role("link").first.click()
    expect(page).to_have_url(f"{live_server.url}/contacts/{contact_id}")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Signed up through Bakery newsletter (embed)")
    expect(timeline).to_contain_text("Enrolled in campaign Welcome")
    expect(timeline).to_contain_text("email message queued to jane@example.com")
    shot(page, "04-contact")

    # The submissions page counts it against the form's views.
    page.goto(f"{live_server.url}/integrations/{setup['page']['id']}/submissions")
    expect(page.locator("#total-processed")).to_have_text("1")
    expect(page.locator("#total-invalid")).to_have_text("1")
    expect(page.locator("#total-conversion")).to_have_text("100%")
    assert_clean_markup(page, page.content())
    shot(page, "05-submissions")
    page.goto(f"{live_server.url}/integrations/{setup['page']['id']}")
    expect(page.locator("#embed-code")).to_contain_text("embed.js")
    assert_clean_markup(page, page.content())
    shot(page, "06-panel")
    page.wait_for_load_state("networkidle")


def test_the_iframe_works_on_the_allowed_site_and_the_hosted_page_is_clean(page, live_server, setup):
    site = setup["site"]
    page.goto(f"{site.origin}/join-frame")
    frame = page.frame_locator("iframe")
    expect(frame.get_by_label("Email")).to_be_visible()
    frame.get_by_label("Email").fill("sam@example.com")
    frame.get_by_label("I agree to the terms").check()
    time.sleep(1.2)
    frame.get_by_role("button", name="Sign up").click()
    expect(frame.get_by_role("heading")).to_have_text("Thank you for signing up.")
    submission = wait_for(lambda: db.session.query(SignupSubmission).one_or_none())
    assert (submission.source, submission.status) in (("embed", "pending"), ("embed", "processed"))
    db.session.remove()

    # The hosted page itself on a phone-sized screen: labelled, clean markup, no CSP problems.
    page.set_viewport_size({"width": 390, "height": 844})
    response = page.goto(f"{live_server.url}{setup['page']['path']}")
    assert_clean_markup(page, response.text())
    expect(page.get_by_label("Email")).to_be_visible()
    expect(page.get_by_label("Leave this field empty")).not_to_be_in_viewport()
    shot(page, "07-hosted-mobile")
    page.wait_for_load_state("networkidle")
    assert page.problems == [], page.problems
