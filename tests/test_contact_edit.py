"""Correcting and deleting a contact, from its page and through the JSON API: values checked as on
intake, one owner per email and phone, the timeline says who changed what, and a deleted contact takes
its tags, timeline and enrolments with it while the records that concern them stay."""
from sqlalchemy import update

from app.extensions import db
from app.models import CampaignEnrollment, Contact, ContactEvent, Message, SignupSubmission, Tag
from app.services import campaigns
from app.services import contacts as svc
from tests.conftest import Browser


def new_contact(api, **data) -> int:
    response = api.post("/api/contacts/", json={"email": "jane@example.com", "first_name": "Jane", **data})
    assert response.status_code == 201, response.json
    return response.json["id"]


def edit_form(contact_id, **values) -> dict:
    return {"name": "Jane Doe", "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com", "phone": "",
            "fields": "{}", **values}


def test_staff_correct_a_contact_and_the_timeline_says_who_changed_what(browser, api, admin):
    contact_id = new_contact(api, fields={"company": "Acme"})
    page = browser.get(f"/contacts/{contact_id}/edit").get_data(as_text=True)
    assert 'value="jane@example.com"' in page and "&#34;company&#34;: &#34;Acme&#34;" in page
    saved = browser.post(f"/contacts/{contact_id}/edit", edit_form(
        contact_id, email="Jane.Doe@Example.com", phone="(415) 555-2671", fields='{"company": "Acme Bakery"}'),
        token_from=f"/contacts/{contact_id}/edit")
    assert saved.status_code == 302
    contact = db.session.get(Contact, contact_id)
    assert (contact.name, contact.last_name, contact.email, contact.phone, contact.fields) == (
        "Jane Doe", "Doe", "jane.doe@example.com", "+14155552671", {"company": "Acme Bakery"})
    detail = browser.get(f"/contacts/{contact_id}").get_data(as_text=True)
    assert f"Edited by {admin.email}: name, last_name, email, phone, fields." in detail
    assert 'id="edit-contact"' in detail and 'id="delete-contact"' in detail
    # Saving the same values again changes nothing and records nothing.
    browser.post(f"/contacts/{contact_id}/edit", edit_form(contact_id, email="jane.doe@example.com",
                                                           phone="+14155552671", fields='{"company": "Acme Bakery"}'))
    assert db.session.query(ContactEvent).filter_by(contact_id=contact_id, kind="updated").count() == 1


def test_bad_values_are_shown_by_field_and_change_nothing(browser, api):
    contact_id = new_contact(api)
    new_contact(api, email="john@example.com", first_name="John", phone="+14155552672")
    cases = [({"email": "not an email"}, "email", "Not a valid email address"),
             ({"phone": "+1 415 555 2672"}, "phone", "Another contact already has this phone number."),
             ({"email": "JOHN@example.com"}, "email", "Another contact already has this email address."),
             ({"email": "", "phone": ""}, "email", "Give an email address or a phone number."),
             ({"fields": "{company: Acme}"}, "fields", "This is not valid JSON"),
             ({"fields": "[1, 2]"}, "fields", ""),
             ({"name": "x" * 201}, "name", "Keep this under 200 characters.")]
    for values, field, words in cases:
        response = browser.post(f"/contacts/{contact_id}/edit", edit_form(contact_id, **values),
                                token_from=f"/contacts/{contact_id}/edit")
        html = response.get_data(as_text=True)
        assert response.status_code == 400, values
        assert f'id="{field}-error"' in html and words in html, (values, html[html.find('class="error"'):][:300])
    db.session.expire_all()
    contact = db.session.get(Contact, contact_id)
    assert (contact.email, contact.phone, contact.name) == ("jane@example.com", None, "Jane")


def test_a_contact_changed_meanwhile_is_not_overwritten(app, api, admin):
    contact_id = new_contact(api)
    contact = db.session.get(Contact, contact_id)
    # A sign-up updates the row after this page read it (the version moves; this object does not see it).
    db.session.execute(update(Contact).where(Contact.id == contact_id).values(version=Contact.version + 1)
                       .execution_options(synchronize_session=False))
    errors = svc.edit_contact(contact, {"name": "Janet"}, admin.email)
    assert errors == {"body": ["This contact was changed meanwhile. Reload it and make your change again."]}
    db.session.rollback()
    assert db.session.get(Contact, contact_id).name == "Jane"


def test_the_api_corrects_only_what_it_is_given_and_refuses_the_rest(api, other_api):
    contact_id = new_contact(api, phone="+14155552671", fields={"company": "Acme"})
    edited = api.put(f"/api/contacts/{contact_id}/", json={"phone": "4155552672", "last_name": "Doe"})
    assert edited.status_code == 200, edited.json
    assert (edited.json["phone"], edited.json["email"], edited.json["fields"]) == ("+14155552672", "jane@example.com",
                                                                                  {"company": "Acme"})
    assert api.put(f"/api/contacts/{contact_id}/", json={"email": None}).json["email"] is None  # a phone remains
    refused = api.put(f"/api/contacts/{contact_id}/", json={"phone": "", "tags": ["x"], "source": "me", "age": 3})
    assert refused.status_code == 400
    assert refused.json["errors"] == {"age": ["Unknown field."], "source": ["This field cannot be edited here."],
                                      "tags": ["This field cannot be edited here."]}
    assert api.put(f"/api/contacts/{contact_id}/", json={"phone": ""}).json["errors"] == {
        "email": ["Give an email address or a phone number."]}
    assert api.put(f"/api/contacts/{contact_id}/", json=["phone"]).status_code == 400
    assert api.put(f"/api/contacts/{contact_id}/", data="{", content_type="application/json").status_code == 400
    assert other_api.put(f"/api/contacts/{contact_id}/", json={"name": "Mallory"}).status_code == 404
    assert other_api.delete(f"/api/contacts/{contact_id}/").status_code == 404
    contact = api.get(f"/api/contacts/{contact_id}/").json
    assert contact["name"] == "Jane Doe" and contact["phone"] == "+14155552672"
    assert api.delete(f"/api/contacts/{contact_id}/").status_code == 204
    assert api.get(f"/api/contacts/{contact_id}/").status_code == 404
    assert api.delete(f"/api/contacts/{contact_id}/").status_code == 404


def test_deleting_asks_first_then_takes_tags_timeline_and_enrolments_and_keeps_the_records(app, api, browser, admin):
    contact_id = new_contact(api, tags=["Newsletter"])
    kept_id = new_contact(api, email="john@example.com", tags=["Newsletter"])
    signup_page = api.post("/api/integrations/", json={"integration_type": "signup_page", "name": "Newsletter"}).json
    campaign, _ = campaigns.create(admin.organization_id, {"name": "Welcome", "steps": [
        {"channel": "email", "delay_minutes": 60, "subject": "Hi", "body": "Hello"}]})
    contact = db.session.get(Contact, contact_id)
    enrollment, _ = campaigns.enroll(contact, campaign)
    message = Message(organization_id=admin.organization_id, channel="email", recipient="jane@example.com", body="Hi",
                      status="sent", contact_id=contact_id)
    submission = SignupSubmission(organization_id=admin.organization_id, integration_id=signup_page["id"],
                                  source="api", fields={"email": "jane@example.com"}, status="processed",
                                  contact_id=contact_id)
    db.session.add_all([message, submission])
    db.session.commit()
    enrollment_id, message_id, submission_id = enrollment.id, message.id, submission.id

    question = browser.get(f"/contacts/{contact_id}/delete").get_data(as_text=True)
    assert "This cannot be undone" in question and 'id="confirm-delete"' in question
    assert db.session.get(Contact, contact_id) is not None  # asking deletes nothing
    assert Browser(app.test_client()).login(admin.email).client.post(f"/contacts/{contact_id}/delete").status_code == 400
    done = browser.post(f"/contacts/{contact_id}/delete", token_from=f"/contacts/{contact_id}/delete")
    assert done.status_code == 302 and done.headers["Location"].endswith("/contacts")
    db.session.expire_all()
    assert db.session.get(Contact, contact_id) is None
    assert db.session.query(ContactEvent).filter_by(contact_id=contact_id).count() == 0
    assert db.session.get(CampaignEnrollment, enrollment_id) is None
    assert campaigns.run_step(enrollment_id, 0) == "nothing to do"  # its queued step finds nothing to send
    assert db.session.get(Message, message_id).contact_id is None
    assert db.session.get(SignupSubmission, submission_id).contact_id is None
    tag = db.session.query(Tag).one()
    assert [c.id for c in tag.contacts] == [kept_id]
    assert browser.get(f"/contacts/{contact_id}").status_code == 404


def test_other_organisations_contacts_cannot_be_edited_or_deleted(app, api, other_admin):
    contact_id = new_contact(api)
    outsider = Browser(app.test_client()).login(other_admin.email)
    for path in (f"/contacts/{contact_id}/edit", f"/contacts/{contact_id}/delete"):
        assert outsider.get(path).status_code == 404
        assert outsider.post(path, edit_form(contact_id, name="Mallory"), token_from="/contacts").status_code == 404
    assert db.session.get(Contact, contact_id).name == "Jane"
