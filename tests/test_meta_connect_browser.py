"""Connect with Meta in a real headless Chromium: the app served over HTTP on loopback, Meta played by a
loopback server whose Login dialog is a consent page with Allow and Cancel. From the settings page to
Meta's dialog, back to the pick of a Page, on to the connection panel, then a confirmed disconnect."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, point_at
from tests.meta_fake import APP_ID, APP_SECRET, FakeMeta
from tests.test_browser import assert_clean_markup, chromium, live_server, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS_META", "/tmp/switchboard-meta"))


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, caret="initial")


@pytest.fixture
def meta(app, httpserver, monkeypatch, live_server):
    fake = FakeMeta(httpserver)
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", fake.base)
    monkeypatch.setitem(app.config, "META_OAUTH_DIALOG_URL", fake.dialog_url)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server.url)  # Meta sends the browser back here
    return fake


def test_connect_with_meta_through_the_dialog_to_the_connection_panel(page, live_server, admin, meta):
    from app.extensions import db
    email = admin.email
    db.session.remove()  # the test thread holds no connection while the server works
    try:
        _run_flow(page, live_server, meta, email)
    except Exception:
        shot(page, "failure")
        raise
    assert page.problems == [], page.problems


def _ours(page, response=None):
    """Our page is clean, and fully loaded before the test leaves it (leaving earlier aborts its script)."""
    page.wait_for_load_state()
    assert_clean_markup(page, response.text() if response else page.content())


def _run_flow(page, live_server, meta, email):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")
    page.wait_for_load_state()

    # Settings: no Meta app yet; save its credentials.
    response = page.goto("/settings")
    expect(page.locator("#meta-empty")).to_be_visible()
    _ours(page, response)
    page.get_by_label("App ID").fill(APP_ID)
    page.get_by_label("App Secret").fill(APP_SECRET)
    page.get_by_role("button", name="Save Meta app").click()
    expect(page.locator(".flash.success")).to_contain_text("Meta accepted the credentials")
    expect(page.locator("#meta-secret-set")).to_have_text("An App Secret is set. Type a new one to replace it.")
    expect(page.get_by_label("App Secret")).to_have_value("")
    expect(page.locator("#meta-webhook-url")).to_have_text(re.compile(rf"^{re.escape(live_server.url)}/api/webhooks/meta/.+/$"))
    expect(page.locator("#meta-redirect-uri")).to_have_text(f"{live_server.url}/api/platforms/callback")
    assert APP_SECRET not in page.content()
    _ours(page)
    shot(page, "01-settings")

    # The Channels page is empty and says what to do.
    page.get_by_role("link", name="Channels").click()
    expect(page.locator("#no-accounts")).to_contain_text("No account is connected yet")
    _ours(page)

    # Connect with Meta: Meta's dialog (the fake) asks for the permissions.
    page.locator("#connect-meta").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(meta.dialog_url)}\?"))
    expect(page.locator("#scopes")).to_contain_text("pages_messaging")
    expect(page.locator("#scopes")).to_contain_text("instagram_manage_messages")
    shot(page, "02-dialog")
    page.get_by_role("button", name="Allow").click()

    # Back here: the pick, the first Page preselected, each with its Instagram account.
    expect(page.get_by_role("heading", name="Choose the Page to connect")).to_be_visible()
    # Our own fragment replaces the "#_=_" Meta appends to its redirect.
    assert re.fullmatch(rf"{re.escape(live_server.url)}/platforms/pending/[\w-]+#pick", page.url)
    expect(page.get_by_label(re.compile("Acme Bakery"))).to_be_checked()
    expect(page.get_by_label(re.compile("Acme Catering"))).not_to_be_checked()
    expect(page.locator("#instagram-101000000000001")).to_have_text("Instagram: @acmebakery")
    expect(page.locator("#instagram-101000000000002")).to_have_text("No Instagram professional account linked")
    _ours(page)
    shot(page, "03-pick")
    page.get_by_role("button", name="Connect this Page").click()

    # The connection panel.
    expect(page).to_have_url(f"{live_server.url}/platforms")
    expect(page.locator(".flash.success")).to_contain_text("Connected Acme Bakery and @acmebakery")
    rows = page.locator("#accounts-table tbody tr")
    expect(rows).to_have_count(2)
    facebook = page.locator('tr[data-platform="messenger"]')
    expect(facebook).to_contain_text("Acme Bakery")
    expect(facebook.locator(".account-status")).to_have_text("active")
    expect(facebook).to_contain_text("@acmebakery")
    expect(facebook.locator(".token-expiry")).to_have_text("does not expire")
    expect(facebook.locator(".subscription")).to_contain_text("Subscribed")
    expect(page.locator('tr[data-platform="instagram"]')).to_contain_text("Through the Page Acme Bakery")
    assert meta.subscriptions == {"101000000000001": "messages,messaging_postbacks,message_deliveries,"
                                                     "message_reads,message_echoes"}
    assert meta.page_token("101000000000001") not in page.content()
    # The panel asks for itself again every minute (htmx), so the countdowns move on without a reload.
    expect(page.locator("#platforms-panel")).to_have_attribute("hx-trigger", "every 60s")
    panel = page.request.get(page.locator("#platforms-panel").get_attribute("hx-get"))
    assert panel.ok and panel.text().lstrip().startswith('<section class="card" id="platforms-panel"')
    assert "Acme Bakery" in panel.text()
    _ours(page)
    shot(page, "04-panel")

    # Disconnect, after confirming.
    facebook.get_by_role("link", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Disconnect Acme Bakery?")).to_be_visible()
    _ours(page)
    page.get_by_role("button", name="Yes, disconnect").click()
    expect(page.locator(".flash.success")).to_contain_text("Disconnected Acme Bakery and @acmebakery")
    expect(page.locator(".account-status .badge.inactive")).to_have_count(2)
    expect(facebook.get_by_role("link", name="Reconnect")).to_be_visible()
    assert meta.subscriptions == {}
    _ours(page)
    shot(page, "05-disconnected")


def test_cancel_in_the_dialog_returns_to_settings_with_the_reason(page, live_server, admin, meta):
    from app.extensions import db
    from app.models import MetaApp
    from app.crypto import vault
    db.session.add(MetaApp(organization_id=admin.organization_id, app_id=APP_ID,
                           secrets_ciphertext=vault().encrypt_json({"app_secret": APP_SECRET})))
    db.session.commit()
    email = admin.email
    db.session.remove()
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server.url}/integrations")
    page.wait_for_load_state()
    page.goto("/settings")
    page.locator("#settings-connect-meta").click()
    page.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(f"{live_server.url}/settings#meta")
    expect(page.locator(".flash.error")).to_have_text("Meta did not grant access: Permissions error. Nothing was connected.")
    _ours(page)
    assert page.problems == [], page.problems
