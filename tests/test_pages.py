"""The integrations pages as a signed-in user sees them (server side; the browser test drives them too)."""
import re

from app.extensions import db
from app.models import ConnectionTest, Integration
from app.services import campaigns
from app.services import integrations as svc
from tests.signup_helpers import embed_definition


def test_hub_shows_a_card_per_type_with_empty_states(browser):
    html = browser.get("/integrations").get_data(as_text=True)
    for label in ("Email", "SMS", "WhatsApp", "Sign-up page", "Facebook"):
        assert f"Add {label}" in html
        assert f"No {label} integration yet." in html


def test_add_form_shows_inline_errors_then_creates(browser):
    form = browser.get("/integrations/new/email?provider=smtp").get_data(as_text=True)
    assert 'name="host"' in form and 'name="password"' in form and 'type="password"' in form
    bad = browser.post("/integrations/new/email", {"name": "Relay", "provider": "smtp", "from_email": "nope",
                                                   "host": "smtp.example.com", "port": "abc", "security": "starttls"},
                       token_from="/integrations/new/email")
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert 'id="error-from_email"' in html and 'id="error-port"' in html and "Enter a whole number." in html
    assert 'value="smtp.example.com"' in html  # what the user typed is kept
    assert db.session.query(Integration).count() == 0
    good = browser.post("/integrations/new/email", {"name": "Relay", "provider": "smtp", "from_email": "a@example.com",
                                                    "host": "smtp.example.com", "port": "587", "security": "starttls",
                                                    "username": "u", "password": "pw-secret"})
    assert good.status_code == 302
    integration = db.session.query(Integration).one()
    assert integration.provider == "smtp" and integration.config["port"] == 587
    assert svc.get_secrets(integration) == {"password": "pw-secret"}
    hub = browser.get("/integrations").get_data(as_text=True)
    assert "Relay" in hub and "pending" in hub


def test_provider_switch_returns_that_providers_fields(browser):
    response = browser.get("/integrations/new/sms?provider=twilio", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="provider-fields">')
    assert 'name="account_sid"' in html and "<html" not in html
    assert browser.get("/integrations/new/fax").status_code == 404


def test_bool_fields_can_be_turned_off(browser):
    browser.post("/integrations/new/signup_page", {"name": "Newsletter", "provider": "hosted",
                                                  "form_fields": '[{"name": "email", "type": "email", "label": "Email", "required": true}]',
                                                  "auto_create_contact": "1"}, token_from="/integrations/new/signup_page")
    integration = db.session.query(Integration).one()
    assert integration.config["auto_create_contact"] is True
    browser.post(f"/integrations/{integration.id}/edit", {"name": "Newsletter",
                                                         "form_fields": '[{"name": "email", "type": "email", "label": "Email"}]'})
    db.session.expire_all()
    assert db.session.get(Integration, integration.id).config["auto_create_contact"] is False


def _integration(admin, provider="sendgrid"):
    integration, _ = svc.create_integration(admin.organization_id, admin, "email", "Mail", provider)
    db.session.commit()
    return integration


def test_test_button_returns_a_polling_fragment_until_done(browser, admin, run_jobs):
    integration = _integration(admin)
    response = browser.post(f"/integrations/{integration.id}/test", headers={"HX-Request": "true"},
                            token_from=f"/integrations/{integration.id}")
    html = response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in html and "Test queued" in html and 'class="spinner"' in html
    test = db.session.query(ConnectionTest).one()
    run_jobs()
    done = browser.get(f"/integrations/{integration.id}/tests/{test.id}")
    body = done.get_data(as_text=True)
    assert "hx-trigger" not in body and "Connection test failed." in body
    assert "Fill in From email, API key before testing" in body  # nothing was configured
    assert done.headers["HX-Trigger"] == "integration-tested"
    summary = browser.get(f"/integrations/{integration.id}/summary").get_data(as_text=True)
    assert "badge error" in summary and 'id="error-count">1<' in summary
    assert browser.get(f"/integrations/{integration.id}/tests/nope").status_code == 404


def test_test_button_without_htmx_redirects_to_the_detail_page(browser, admin):
    integration = _integration(admin)
    response = browser.post(f"/integrations/{integration.id}/test", token_from=f"/integrations/{integration.id}")
    assert response.status_code == 302
    page = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert "Test queued" in page and "every 1s" in page


def test_deactivate_activate_and_delete_with_confirmation(browser, admin):
    integration = _integration(admin)
    integration_id = integration.id
    browser.post(f"/integrations/{integration.id}/active", {"active": "0"}, token_from=f"/integrations/{integration.id}")
    db.session.expire_all()
    assert db.session.get(Integration, integration.id).status == "inactive"
    browser.post(f"/integrations/{integration.id}/active", {"active": "1"})
    db.session.expire_all()
    assert db.session.get(Integration, integration.id).status == "pending"
    confirm = browser.get(f"/integrations/{integration.id}/delete").get_data(as_text=True)
    assert "Delete Mail?" in confirm and "cannot be undone" in confirm
    assert db.session.get(Integration, integration.id) is not None  # the GET deletes nothing
    response = browser.post(f"/integrations/{integration_id}/delete", token_from=f"/integrations/{integration_id}/delete")
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Integration, integration_id) is None


def test_log_page_paginates_and_filters(browser, admin):
    integration = _integration(admin)
    for n in range(55):
        svc.log_event(integration, "probe", f"entry number {n}", level="error" if n % 5 == 0 else "info")
    db.session.commit()
    first = browser.get(f"/integrations/{integration.id}/logs").get_data(as_text=True)
    assert "entry number 54" in first and "Older" in first and "Page 1 of 2" in first
    errors = browser.get(f"/integrations/{integration.id}/logs?level=error").get_data(as_text=True)
    assert "entry number 50" in errors and "entry number 51" not in errors
    empty = browser.get(f"/integrations/{integration.id}/logs?level=warning").get_data(as_text=True)
    assert "No warning entries yet." in empty


def test_stats_page_has_counts_and_a_chart(browser, admin):
    empty = browser.get("/integrations/stats").get_data(as_text=True)
    assert "No integrations yet." in empty
    integration = _integration(admin)
    svc.set_status(integration, "error", "test")
    db.session.commit()
    html = browser.get("/integrations/stats").get_data(as_text=True)
    assert '<svg class="chart"' in html and 'id="errors-24h">1<' in html


def test_webhook_url_shown_on_detail(browser, admin):
    integration = _integration(admin)
    html = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert f"https://switchboard.example.com/api/webhooks/sendgrid/{integration.public_id}/" in html


def test_hub_caps_each_card_and_links_to_the_full_list(browser, admin, other_admin):
    for n in range(12):
        svc.create_integration(admin.organization_id, admin, "sms", f"Line {n:02d}", "twilio")
    svc.create_integration(other_admin.organization_id, other_admin, "sms", "Not mine", "twilio")
    db.session.commit()
    hub = browser.get("/integrations").get_data(as_text=True)
    assert "Line 09" in hub and "Line 10" not in hub
    assert "All 12 SMS integrations" in hub and "Not mine" not in hub
    listing = browser.get("/integrations/type/sms").get_data(as_text=True)
    assert "Line 11" in listing and "Not mine" not in listing and "Next" not in listing
    assert "No Email integration." in browser.get("/integrations/type/email").get_data(as_text=True)
    assert browser.get("/integrations/type/fax").status_code == 404


def test_settings_set_the_default_country_that_reads_local_numbers(browser, api, admin):
    page = browser.get("/settings").get_data(as_text=True)
    assert re.search(r'<option[^>]*selected[^>]*value="US"', page) and "United Kingdom (+44)" in page
    bad = browser.post("/settings", data={"name": "", "default_country": "ZZ"}, token_from="/settings")
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Give the organisation a name" in text and "Choose a country from the list." in text
    response = browser.post("/settings", data={"name": "Acme UK", "default_country": "GB"}, token_from="/settings")
    assert response.status_code == 302
    contact = api.post("/api/contacts/", json={"phone": "020 7946 0958"}).json
    assert contact["phone"] == "+442079460958"


def test_only_admins_change_settings(app, admin):
    from tests.conftest import Browser, make_user
    make_user("Acme", "staff@acme.example.com", role="staff")
    staff = Browser(app.test_client()).login("staff@acme.example.com")
    assert "Only admins can change these." in staff.get("/settings").get_data(as_text=True)
    assert staff.post("/settings", data={"name": "Mine", "default_country": "GB"}, token_from="/settings").status_code == 403


SIGNUP_FIELDS = '[{"name": "email", "type": "email", "label": "Email", "required": true}]'


def test_allowed_origins_take_one_origin_a_line(browser):
    form = browser.get("/integrations/new/signup_page").get_data(as_text=True)
    assert re.search(r'<textarea name="allowed_origins" id="f-allowed_origins" class="lines"', form)
    added = browser.post("/integrations/new/signup_page", {
        "name": "Newsletter", "provider": "hosted", "form_fields": SIGNUP_FIELDS,
        "allowed_origins": "https://shop.example.com\r\n\r\n  https://www.example.com/  \r\n"},
        token_from="/integrations/new/signup_page")
    assert added.status_code == 302
    integration = db.session.query(Integration).one()
    assert integration.config["allowed_origins"] == "https://shop.example.com\nhttps://www.example.com/"
    client = browser.client.application.test_client()
    page = {"path": f"/f/{integration.public_id}"}
    for origin in ("https://shop.example.com", "https://www.example.com"):  # each line is an origin the embed serves
        assert embed_definition(client, page, origin).headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Origin" not in embed_definition(client, page, "https://other.example.com").headers
    edit = browser.get(f"/integrations/{integration.id}/edit").get_data(as_text=True)
    assert ">https://shop.example.com\nhttps://www.example.com/</textarea>" in edit
    bad = browser.post(f"/integrations/{integration.id}/edit", {"name": "Newsletter", "form_fields": SIGNUP_FIELDS,
                                                               "allowed_origins": "https://ok.example.com\nnot an origin"})
    assert bad.status_code == 400 and 'id="error-allowed_origins"' in bad.get_data(as_text=True)


def test_campaign_and_tag_fields_suggest_the_organisations_names_and_a_missing_campaign_is_flagged(
        browser, api, other_admin):
    for name in ("Welcome", "Spring sale"):
        assert api.post("/api/campaigns/", json={"name": name}).status_code == 201
    assert api.post("/api/contacts/", json={"email": "jane@example.com", "tags": ["Bakery fans"]}).status_code == 201
    theirs, _ = campaigns.create(other_admin.organization_id, {"name": "Globex launch"})  # another organisation's
    db.session.commit()
    form = browser.get("/integrations/new/signup_page").get_data(as_text=True)
    names = re.search(r'<datalist id="names-trigger_campaign">(.*?)</datalist>', form).group(1)
    assert names == '<option value="Spring sale"><option value="Welcome">' and theirs.name not in form
    assert 'list="names-trigger_campaign"' in form and 'list="names-apply_tag"' in form
    assert '<datalist id="names-apply_tag"><option value="Bakery fans"></datalist>' in form

    browser.post("/integrations/new/signup_page", {"name": "Newsletter", "provider": "hosted", "form_fields": SIGNUP_FIELDS,
                                                  "trigger_campaign": "welcome"}, token_from="/integrations/new/signup_page")
    integration = db.session.query(Integration).one()
    assert 'id="unknown-trigger_campaign"' not in browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    browser.post(f"/integrations/{integration.id}/edit", {"name": "Newsletter", "form_fields": SIGNUP_FIELDS,
                                                         "trigger_campaign": "Welcom"}, token_from="/integrations")
    detail = browser.get(f"/integrations/{integration.id}").get_data(as_text=True)
    assert 'id="unknown-trigger_campaign"' in detail and "No campaign has this name" in detail

