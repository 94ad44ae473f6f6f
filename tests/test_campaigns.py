"""Campaigns: steps as scheduled jobs through the outbound pipeline, once per contact, with
placeholders filled from the contact; a real Redis, real RQ worker, SendGrid on loopback."""
import threading
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import CampaignEnrollment, Contact, Message, utcnow
from app.services import campaigns
from tests.test_outbound import make_email, sendgrid  # noqa: F401  (fixture)


def create_campaign(api, **body):
    response = api.post("/api/campaigns/", json={"name": "Welcome", **body})
    assert response.status_code == 201, response.json
    return response.json


def new_contact(api, **data):
    response = api.post("/api/contacts/", json={"email": "jane@example.com", "first_name": "Jane", **data})
    assert response.status_code == 201, response.json
    return response.json["id"]


def enroll(api, campaign_id, contact_id):
    return api.post(f"/api/campaigns/{campaign_id}/enrollments/", json={"contact_id": contact_id})


def test_first_step_sends_with_placeholders_then_later_steps_wait_their_delay(api, sendgrid, run_jobs):
    make_email(api)
    campaign = create_campaign(api, steps=[
        {"channel": "email", "subject": "Welcome, {{first_name}}", "body": "Hi {{ first_name }} of {{company|your team}}"},
        {"channel": "email", "delay_minutes": 60 * 24, "subject": "Day two", "body": "Still there, {{name}}?"}])
    contact_id = new_contact(api, fields={"company": "Acme"})
    assert enroll(api, campaign["id"], contact_id).status_code == 201
    run_jobs()
    assert sendgrid.recipients() == ["jane@example.com"]
    sent = sendgrid.sent[0]
    assert sent["subject"] == "Welcome, Jane"
    assert "Hi Jane of Acme" in sent["content"][0]["value"]
    enrollment = db.session.query(CampaignEnrollment).one()
    assert enrollment.status == "active" and enrollment.next_position == 1
    assert enrollment.next_run_at > utcnow() + timedelta(hours=23)
    detail = api.get(f"/api/campaigns/{campaign['id']}/").json
    assert detail["steps"][0]["messages"] == {"sent": 1} and detail["steps"][1]["messages"] == {}
    message = db.session.query(Message).one()
    assert message.contact_id == contact_id and message.campaign_step_id == campaign["steps"][0]["id"]
    timeline = [e["kind"] for e in api.get(f"/api/contacts/{contact_id}/").json["timeline"]]
    assert "enrolled" in timeline and "message" in timeline


def test_due_step_runs_and_the_last_one_completes_the_enrolment(api, sendgrid, run_jobs):
    make_email(api)
    campaign = create_campaign(api, steps=[{"channel": "email", "subject": "One", "body": "1"},
                                           {"channel": "email", "delay_minutes": 5, "subject": "Two", "body": "2"}])
    enroll(api, campaign["id"], new_contact(api))
    run_jobs()
    enrollment = db.session.query(CampaignEnrollment).one()
    enrollment.next_run_at = utcnow() - timedelta(minutes=5)  # the delay has passed
    db.session.commit()
    assert campaigns.sweep() == 1  # as if the scheduled job had been lost
    run_jobs()
    assert [m["subject"] for m in sendgrid.sent] == ["One", "Two"]
    enrollment = db.session.query(CampaignEnrollment).one()
    assert enrollment.status == "completed" and enrollment.next_run_at is None


def test_enrolling_twice_does_nothing(api, sendgrid, run_jobs):
    make_email(api)
    campaign = create_campaign(api, steps=[{"channel": "email", "subject": "One", "body": "1"}])
    contact_id = new_contact(api)
    assert enroll(api, campaign["id"], contact_id).status_code == 201
    assert enroll(api, campaign["id"], contact_id).status_code == 200
    run_jobs()
    assert len(sendgrid.sent) == 1
    assert db.session.query(CampaignEnrollment).count() == 1


def test_simultaneous_enrolments_of_one_contact_make_one(app, api):
    campaign_id = create_campaign(api)["id"]
    contact_id = new_contact(api)
    barrier = threading.Barrier(6)
    results = []

    def work():
        with app.app_context():
            contact = db.session.get(Contact, contact_id)
            campaign = campaigns.get_for_org(contact.organization_id, campaign_id)
            barrier.wait()
            _, created = campaigns.enroll(contact, campaign)
            db.session.commit()
            results.append(created)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert db.session.query(CampaignEnrollment).count() == 1


def test_a_duplicated_step_job_sends_once(api, sendgrid, run_jobs):
    make_email(api)
    campaign = create_campaign(api, steps=[{"channel": "email", "subject": "One", "body": "1"}])
    enroll(api, campaign["id"], new_contact(api))
    enrollment = db.session.query(CampaignEnrollment).one()
    assert campaigns.run_step(enrollment.id, 0) == "sent"
    assert campaigns.run_step(enrollment.id, 0) == "nothing to do"
    run_jobs()
    assert len(sendgrid.sent) == 1


def test_a_step_the_contact_cannot_receive_is_skipped_with_a_note(api, sendgrid, run_jobs):
    make_email(api)
    campaign = create_campaign(api, steps=[{"channel": "sms", "body": "Hi {{first_name}}"},
                                           {"channel": "email", "subject": "Mail", "body": "2"}])
    contact_id = new_contact(api)  # an email address, no phone
    enroll(api, campaign["id"], contact_id)
    run_jobs()
    assert [m["subject"] for m in sendgrid.sent] == ["Mail"]  # the next step still runs
    assert db.session.query(CampaignEnrollment).one().status == "completed"
    notes = [e["description"] for e in api.get(f"/api/contacts/{contact_id}/").json["timeline"]]
    assert any("skipped: the contact has no phone number" in n for n in notes)


def test_paused_campaign_holds_due_steps_until_resumed(api, sendgrid, run_jobs):
    make_email(api)
    campaign = create_campaign(api, is_active=False, steps=[{"channel": "email", "subject": "One", "body": "1"}])
    enroll(api, campaign["id"], new_contact(api))
    run_jobs()
    assert sendgrid.sent == []
    row = campaigns.get_for_org(db.session.query(CampaignEnrollment).one().organization_id, campaign["id"])
    assert campaigns.update_details(row, {"is_active": True}) == {}
    db.session.commit()
    db.session.query(CampaignEnrollment).update({"next_run_at": utcnow() - timedelta(minutes=3)})
    db.session.commit()
    campaigns.sweep()
    run_jobs()
    assert len(sendgrid.sent) == 1


def test_enrol_by_name_is_case_insensitive_and_notes_a_missing_campaign(api):
    create_campaign(api, name="Spring Offer")
    contact_id = new_contact(api)
    contact = db.session.get(Contact, contact_id)
    enrollment, created = campaigns.enroll_by_name(contact, "  spring   OFFER ", source="sign-up page")
    assert created and enrollment.source == "sign-up page"
    assert campaigns.enroll_by_name(contact, "Nope") == (None, False)
    db.session.commit()
    assert any("does not exist" in e.description for e in contact.events)


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": " "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "A", "steps": "no"}, "steps"),
    ({"name": "A", "steps": [{"channel": "fax"}]}, "steps[0].channel"),
    ({"name": "A", "steps": [{"channel": "email", "body": "b"}]}, "steps[0].subject"),
    ({"name": "A", "steps": [{"channel": "sms", "body": "b", "delay_minutes": -1}]}, "steps[0].delay_minutes"),
    ({"name": "A", "steps": [{"channel": "whatsapp", "template": {"language": "en"}}]}, "steps[0].template"),
    ({"name": "A", "steps": [{"integration_id": 999999, "body": "b"}]}, "steps[0].integration_id"),
    ({"name": "A", "colour": "red"}, "colour"),
])
def test_campaign_errors_by_field_store_nothing(api, body, field):
    response = api.post("/api/campaigns/", json=body)
    assert response.status_code == 400 and field in response.json["errors"], response.json
    assert api.get("/api/campaigns/").json == []


def test_campaign_names_are_unique_per_organisation(api, other_api):
    create_campaign(api, name="Welcome")
    assert api.post("/api/campaigns/", json={"name": "WELCOME"}).status_code == 400
    assert other_api.post("/api/campaigns/", json={"name": "Welcome"}).status_code == 201


def test_other_organisations_campaigns_and_contacts_are_404(api, other_api):
    campaign_id = create_campaign(api)["id"]
    contact_id = new_contact(api)
    assert other_api.get(f"/api/campaigns/{campaign_id}/").status_code == 404
    assert other_api.get(f"/api/campaigns/{campaign_id}/enrollments/").status_code == 404
    assert enroll(other_api, campaign_id, contact_id).status_code == 404
    theirs = other_api.post("/api/campaigns/", json={"name": "Theirs"}).json["id"]
    assert enroll(other_api, theirs, contact_id).status_code == 400  # our contact is not theirs
    assert db.session.query(CampaignEnrollment).count() == 0

