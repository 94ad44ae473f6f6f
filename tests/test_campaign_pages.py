"""Campaign pages: list with an empty state, create and edit with inline errors, steps added,
edited and deleted (with confirmation), pause and resume, enrolled contacts with each step's
messages, and another organisation's campaigns answering 404 on every route."""
from app.extensions import db
from app.models import Campaign, CampaignEnrollment, CampaignStep
from tests.conftest import csrf_token_from
from tests.test_outbound import make_email, sendgrid  # noqa: F401  (fixture)


def create(browser, name="Welcome series"):
    response = browser.post("/campaigns/new", data={"name": name, "description": "For new sign-ups"},
                            token_from="/campaigns/new")
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.query(Campaign).filter_by(name=name).one().id


def add_step(browser, campaign_id, **data):
    fields = {"channel": "email", "integration_id": "", "delay_amount": "0", "delay_unit": "minutes",
              "subject": "Welcome, {{first_name}}", "body": "Hello {{first_name|there}}", "template_name": "",
              "template_language": "en_US", "template_parameters": "", **data}
    return browser.post(f"/campaigns/{campaign_id}/steps", data=fields, token_from=f"/campaigns/{campaign_id}")


def test_list_shows_what_to_do_when_empty(browser):
    page = browser.get("/campaigns").get_data(as_text=True)
    assert "No campaigns yet" in page and 'href="/campaigns/new"' in page


def test_create_with_inline_errors_then_success(browser):
    response = browser.post("/campaigns/new", data={"name": "  "}, token_from="/campaigns/new")
    assert response.status_code == 400 and "Give the campaign a name." in response.get_data(as_text=True)
    campaign_id = create(browser)
    again = browser.post("/campaigns/new", data={"name": "welcome SERIES"}, token_from="/campaigns/new")
    assert again.status_code == 400 and "There is already a campaign called Welcome series" in again.get_data(as_text=True)
    page = browser.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    assert "No steps yet" in page and "Nobody is enrolled yet" in page
    assert "Welcome series" in browser.get("/campaigns").get_data(as_text=True)


def test_steps_are_added_with_inline_errors_edited_and_deleted(browser):
    campaign_id = create(browser)
    bad = add_step(browser, campaign_id, subject="")
    assert bad.status_code == 400 and "An email needs a subject." in bad.get_data(as_text=True)
    assert db.session.query(CampaignStep).count() == 0
    assert add_step(browser, campaign_id).status_code == 302
    assert add_step(browser, campaign_id, channel="sms", subject="", body="Day 2, {{first_name}}",
                    delay_amount="2", delay_unit="days").status_code == 302
    steps = db.session.query(CampaignStep).order_by(CampaignStep.position).all()
    assert [(s.channel, s.delay_minutes) for s in steps] == [("email", 0), ("sms", 2880)]
    page = browser.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    assert "right away after enrolment" in page and "after 2 days" in page

    edit_url = f"/campaigns/{campaign_id}/steps/{steps[1].id}/edit"
    form = browser.get(edit_url).get_data(as_text=True)
    assert 'value="2"' in form and "Day 2, {{first_name}}" in form
    response = browser.post(edit_url, data={"channel": "sms", "integration_id": "", "delay_amount": "3",
                                            "delay_unit": "hours", "body": "Later"}, token_from=edit_url)
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(CampaignStep, steps[1].id).delay_minutes == 180

    delete_url = f"/campaigns/{campaign_id}/steps/{steps[0].id}/delete"
    assert "Yes, delete the step" in browser.get(delete_url).get_data(as_text=True)
    assert db.session.query(CampaignStep).count() == 2  # asking changes nothing
    assert browser.post(delete_url, token_from=delete_url).status_code == 302
    db.session.expire_all()
    remaining = db.session.query(CampaignStep).one()
    assert remaining.body == "Later" and remaining.position == 0


def test_pause_resume_and_delete_with_confirmation(browser):
    campaign_id = create(browser)
    assert browser.post(f"/campaigns/{campaign_id}/active", token_from=f"/campaigns/{campaign_id}").status_code == 302
    assert "Paused:" in browser.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    browser.post(f"/campaigns/{campaign_id}/active", token_from=f"/campaigns/{campaign_id}")
    db.session.expire_all()
    assert db.session.get(Campaign, campaign_id).is_active
    delete_url = f"/campaigns/{campaign_id}/delete"
    assert "Yes, delete it" in browser.get(delete_url).get_data(as_text=True)
    assert browser.post(delete_url, token_from=delete_url).status_code == 302
    assert db.session.query(Campaign).count() == 0


def test_enrolled_contacts_and_each_steps_messages_are_shown(browser, api, sendgrid, run_jobs):
    make_email(api)
    campaign_id = create(browser)
    add_step(browser, campaign_id)
    contact_id = api.post("/api/contacts/", json={"email": "jane@example.com", "first_name": "Jane"}).json["id"]
    api.post(f"/api/campaigns/{campaign_id}/enrollments/", json={"contact_id": contact_id})
    run_jobs()
    page = browser.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    assert f'href="/contacts/{contact_id}"' in page and "completed" in page
    assert "jane@example.com" in page and '<span class="badge sent">sent</span> 1' in page


def test_every_campaign_route_gives_404_for_another_organisation(app, browser, other_api):
    theirs = other_api.post("/api/campaigns/", json={"name": "Their campaign", "steps": [
        {"channel": "sms", "body": "Theirs"}]}).json
    step_id = theirs["steps"][0]["id"]
    rules = [r for r in app.url_map.iter_rules() if "campaign_id" in r.arguments and not r.endpoint.startswith("api.")]
    assert len(rules) >= 7
    token = csrf_token_from(browser.get("/account/password").get_data(as_text=True))
    for rule in rules:
        url = rule.rule.replace("<int:campaign_id>", str(theirs["id"])).replace("<int:step_id>", str(step_id))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token, "name": "stolen", "channel": "sms", "body": "x"} if method == "POST" else None
            response = browser.client.open(url, method=method, data=data)
            assert response.status_code == 404, (method, url, response.status_code)
            assert "Their campaign" not in response.get_data(as_text=True)
    db.session.expire_all()
    campaign = db.session.get(Campaign, theirs["id"])
    assert campaign.name == "Their campaign" and campaign.is_active and len(campaign.steps) == 1
    assert db.session.query(CampaignEnrollment).count() == 0
