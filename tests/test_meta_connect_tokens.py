"""Token care: the daily job run by a real RQ worker against a loopback Meta (debug_token) and a loopback
SendGrid (the admins' email goes through the organisation's own email integration and the outbound
pipeline). An expired or refused token, or a revoked permission, marks the account "reconnect needed"
once: status error, a log line, a banner on every page, one email per admin; a reconnect clears it."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from app.extensions import db
from app.jobs.meta_tokens import check_meta_tokens
from app.models import IntegrationLog, utcnow
from app.queue import task_queue
from app.services import integrations as svc
from tests.conftest import make_user, point_at
from tests.meta_fake import LONG_LIVED_SECONDS
from tests.sendgrid_fake import FakeSendGrid
from tests.test_meta_connect import PAGE_1, PAGE_2, connect_first_page, credentials, meta, meta_accounts  # noqa: F401
from tests.test_outbound import make_email


@pytest.fixture
def sendgrid(app, httpserver, monkeypatch):
    fake = FakeSendGrid(httpserver)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", fake.url)
    return fake


@pytest.fixture
def connected(api, browser, admin, meta, credentials, sendgrid):
    """A Page with its Instagram account, a second admin, and an email integration for alerts."""
    make_user("Acme", "owner@acme.example.com", role="admin")
    make_user("Acme", "clerk@acme.example.com", role="staff")
    make_email(api)
    connect_first_page(browser, meta)
    return meta_accounts(admin.organization_id)


def run_token_care(run_jobs):
    task_queue().enqueue(check_meta_tokens)
    run_jobs()
    db.session.expire_all()


def alerts(sendgrid):
    return [(p["to"][0]["email"], body["subject"]) for body in sendgrid.sent for p in body["personalizations"]]


def test_an_expired_token_marks_reconnect_needed_with_a_banner_and_one_email_per_admin(
        browser, admin, meta, connected, sendgrid, run_jobs):
    facebook, instagram = connected
    meta.expire(meta.page_token(PAGE_1))
    run_token_care(run_jobs)

    for account in meta_accounts(admin.organization_id):
        assert account.needs_reconnect is True and account.status == "error"
        assert account.last_error.endswith("reconnect needed")
        assert "no longer valid (the token has expired; Meta said: Error validating access token" in account.last_error
        assert svc.get_secrets(account)  # kept: a reconnect replaces them
    logged = db.session.scalars(db.select(IntegrationLog).where(IntegrationLog.event == "reconnect_needed")).all()
    assert sorted(e.integration_id for e in logged) == sorted([facebook.id, instagram.id])
    assert all(e.level == "error" for e in logged)

    # One email to each admin (not to staff), naming both accounts.
    assert sorted(alerts(sendgrid)) == [
        ("admin@acme.example.com", "Switchboard: reconnect Acme Bakery, @acmebakery"),
        ("owner@acme.example.com", "Switchboard: reconnect Acme Bakery, @acmebakery")]
    body = sendgrid.sent[0]["content"][0]["value"]
    assert "Acme Bakery: " in body and "reconnect needed" in body and meta.page_token(PAGE_1) not in body

    for path in ("/integrations", "/platforms", "/settings"):
        page = browser.get(path).get_data(as_text=True)
        banner = page[page.index('id="reconnect-banner"'):page.index("</div>", page.index('id="reconnect-banner"'))]
        assert "Acme Bakery" in banner and "@acmebakery" in banner and "have stopped working" in banner, path
    assert "reconnect needed</span>" in browser.get("/platforms").get_data(as_text=True)

    # The next day: still broken, no second email.
    run_token_care(run_jobs)
    assert len(alerts(sendgrid)) == 2
    assert len(db.session.scalars(db.select(IntegrationLog).where(IntegrationLog.event == "reconnect_needed")).all()) == 2


def test_a_reconnect_clears_the_mark_and_the_banner(browser, admin, meta, connected, sendgrid, run_jobs):
    meta.expire(meta.page_token(PAGE_1))
    run_token_care(run_jobs)
    meta.tokens[meta.page_token(PAGE_1)]["valid"] = True  # the Page granted again in Meta's dialog
    response, _, _ = connect_first_page(browser, meta)
    assert response.status_code == 302
    for account in meta_accounts(admin.organization_id):
        assert account.needs_reconnect is False and account.status == "active" and account.last_error is None
    assert 'id="reconnect-banner"' not in browser.get("/integrations").get_data(as_text=True)
    run_token_care(run_jobs)
    assert all(not a.needs_reconnect for a in meta_accounts(admin.organization_id))


def test_meta_refusing_the_token_with_error_190_marks_reconnect_needed(admin, meta, connected, sendgrid, run_jobs):
    meta.fail_next("debug_token", "Error validating access token: The user has not authorized application 1234.",
                   code=190, subcode=458)
    run_token_care(run_jobs)
    facebook, instagram = meta_accounts(admin.organization_id)
    assert facebook.needs_reconnect and facebook.status == "error"
    assert facebook.last_error.startswith("Page access token: Meta refused the token (the user removed the app)")
    assert facebook.last_error.endswith("— reconnect needed")
    assert not instagram.needs_reconnect  # its check passed: the refusal was for one call
    assert [subject for _, subject in alerts(sendgrid)] == ["Switchboard: reconnect Acme Bakery"] * 2


def test_a_revoked_permission_marks_reconnect_needed(admin, meta, connected, sendgrid, run_jobs):
    meta.revoke_scope(meta.page_token(PAGE_1), "instagram_manage_messages")
    run_token_care(run_jobs)
    facebook, instagram = meta_accounts(admin.organization_id)
    assert not facebook.needs_reconnect and facebook.status == "active"
    assert instagram.needs_reconnect
    assert instagram.last_error.startswith("The permission instagram_manage_messages was removed")


def test_lead_ads_needs_its_permission(admin, meta, connected, run_jobs):
    facebook, _ = connected
    facebook = db.session.get(type(facebook), facebook.id)
    facebook.config = {**facebook.config, "enable_lead_ads": True}
    db.session.commit()
    run_token_care(run_jobs)
    facebook, _ = meta_accounts(admin.organization_id)
    assert facebook.needs_reconnect and "leads_retrieval" in facebook.last_error


def test_meta_unreachable_changes_nothing(admin, meta, connected, sendgrid, run_jobs):
    meta.fail_next("debug_token", "An unexpected error has occurred. Please retry your request later.", code=2,
                   status=500)
    run_token_care(run_jobs)
    assert [a.needs_reconnect for a in meta_accounts(admin.organization_id)] == [False, False]
    assert alerts(sendgrid) == []


def test_valid_tokens_record_their_expiry_and_a_user_token_near_its_end_is_extended(admin, meta, credentials, browser,
                                                                                      run_jobs):
    meta.page_expires_at = int(time.time()) + 30 * 86400
    connect_first_page(browser, meta, page_id=PAGE_2)
    [facebook] = meta_accounts(admin.organization_id)
    user_token = svc.get_secrets(facebook)["access_token"]
    meta.tokens[user_token]["expires_at"] = int(time.time()) + 5 * 86400
    meta.page_expires_at = 0  # Meta now says the Page token never expires
    meta.tokens[meta.page_token(PAGE_2)]["expires_at"] = 0
    run_token_care(run_jobs)
    [facebook] = meta_accounts(admin.organization_id)
    assert facebook.token_expires_at is None and not facebook.needs_reconnect
    fresh = svc.get_secrets(facebook)["access_token"]
    assert fresh != user_token and meta.tokens[fresh]["type"] == "USER"
    assert meta.tokens[fresh]["expires_at"] > time.time() + LONG_LIVED_SECONDS - 60
    assert meta.calls("GET", "oauth/access_token")[-1]["args"]["fb_exchange_token"] == user_token
    extended = db.session.scalars(db.select(IntegrationLog).where(IntegrationLog.event == "token_extended")).one()
    assert fresh not in extended.message and "extended until" in extended.message
    # A token far from its end is left alone.
    run_token_care(run_jobs)
    [facebook] = meta_accounts(admin.organization_id)
    assert svc.get_secrets(facebook)["access_token"] == fresh


def test_expired_pending_connections_are_purged(admin, meta, credentials, browser, run_jobs):
    from app.models import PendingConnection
    from tests.test_meta_connect import consent_and_return
    consent_and_return(browser, meta)
    db.session.execute(db.update(PendingConnection).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    run_token_care(run_jobs)
    assert db.session.scalar(db.select(db.func.count()).select_from(PendingConnection)) == 0


def test_the_job_is_registered_daily_with_rq_cron(redis_conn):
    from rq.cron import CronScheduler
    scheduler = CronScheduler(connection=redis_conn)
    scheduler.load_config_from_file("app/cron_config.py")  # as `rq cron app/cron_config.py` loads it
    [job] = [j for j in scheduler.get_jobs() if j.func is check_meta_tokens]
    assert job.cron == "17 4 * * *" and job.name == "meta-token-care"
