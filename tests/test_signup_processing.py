"""Processing sign-up submissions in a real RQ worker: one contact per person however the email or
phone is written, even when the same person arrives many times at once; the tag, the campaign's
first message and the timeline; nothing processed twice; nothing lost while Redis is down."""
import threading

from app.extensions import db
from app.jobs.maintenance import sweep
from app.models import CampaignEnrollment, Contact, Integration, Message, SignupSubmission, contact_tags
from app.services import signups
from tests.signup_helpers import api_post, create_key, hosted_post, make_page, signup_settings  # noqa: F401
from tests.test_outbound import make_email, sendgrid  # noqa: F401  (fixture)


def make_campaign(api, name="Welcome"):
    response = api.post("/api/campaigns/", json={"name": name, "steps": [
        {"channel": "email", "subject": "Welcome, {{first_name|friend}}", "body": "Glad you signed up."}]})
    assert response.status_code == 201, response.json
    return response.json


def rows():
    db.session.expire_all()
    return db.session.query(SignupSubmission).order_by(SignupSubmission.received_at).all()


def test_stored_first_then_processed_once_into_a_tagged_enrolled_contact(app, api, sendgrid, run_jobs):
    make_email(api)
    make_campaign(api)
    page = make_page(api, apply_tag="Newsletter", trigger_campaign="welcome")
    key = create_key(api, page)
    response = api_post(app.test_client(), page, {"email": "Jane@Example.com", "first_name": "Jane", "terms": True},
                        key)
    assert response.status_code == 201
    submission_id = response.json["submission_id"]
    assert rows()[0].status == "pending" and db.session.query(Contact).count() == 0

    run_jobs()  # the drain, then the campaign's first step, then its send
    submission = db.session.get(SignupSubmission, submission_id)
    contact = db.session.query(Contact).one()
    assert (submission.status, submission.contact_id, submission.attempts) == ("processed", contact.id, 1)
    assert submission.processed_at is not None
    assert (contact.email, contact.first_name, contact.source) == ("jane@example.com", "Jane",
                                                                  "Sign-up page Newsletter")
    assert contact.fields == {"terms": True}
    assert [t.name for t in contact.tags] == ["Newsletter"]
    kinds = [e.kind for e in contact.events]
    assert kinds[:2] == ["created", "submission"] and "tagged" in kinds and "enrolled" in kinds
    submission_event = next(e for e in contact.events if e.kind == "submission")
    assert submission_event.data["submission_id"] == submission_id and "Newsletter (api)" in submission_event.description
    message = db.session.query(Message).one()
    assert (message.contact_id, message.recipient, message.subject) == (contact.id, "jane@example.com",
                                                                       "Welcome, Jane")
    assert sendgrid.recipients() == ["jane@example.com"]

    # Running it again finds the row taken; even a row put back finds the contact and the enrolment.
    assert signups.process(submission_id) == "nothing to do"
    db.session.get(SignupSubmission, submission_id).status = "pending"
    db.session.commit()
    assert signups.process(submission_id) == "processed"
    run_jobs()
    assert db.session.query(Contact).count() == 1
    assert db.session.query(CampaignEnrollment).count() == 1
    assert db.session.query(contact_tags).count() == 1
    assert db.session.query(Message).count() == 1 and len(sendgrid.sent) == 1


def test_email_and_phone_in_other_formats_are_one_contact(app, api, run_jobs):
    page = make_page(api, apply_tag="lead")
    key = create_key(api, page)
    client = app.test_client()
    for body in ({"email": "Jane@Example.com", "phone": "+1 (415) 555-2671", "terms": True},
                 {"phone": "4155552671", "first_name": "Jane", "terms": True},
                 {"phone": "415.555.2671", "terms": True},
                 {"email": "jane@example.com", "plan": "Pro", "terms": True}):
        assert api_post(client, page, body, key).status_code == 201
    hosted_post(client, page, {"phone": "(415) 555 2671", "terms": "on"})
    run_jobs()
    contact = db.session.query(Contact).one()
    assert (contact.email, contact.phone, contact.first_name) == ("jane@example.com", "+14155552671", "Jane")
    assert contact.fields == {"terms": True, "plan": "Pro"}
    assert {r.contact_id for r in rows()} == {contact.id} and {r.status for r in rows()} == {"processed"}
    assert [e.kind for e in contact.events].count("submission") == 5


def test_the_same_person_many_times_at_once_is_one_contact_one_tag_one_enrolment(app, api, run_jobs):
    make_campaign(api)
    page = make_page(api, apply_tag="lead", trigger_campaign="Welcome")
    key = create_key(api, page)
    variants = [{"email": "JANE@example.com"}, {"email": "jane@example.com", "phone": "+14155552671"},
                {"phone": "4155552671", "email": "jane@EXAMPLE.com"}, {"email": "jane@example.com"}] * 3
    start = threading.Barrier(len(variants))
    answers = []

    def post(body):
        client = app.test_client()
        start.wait()
        answers.append(api_post(client, page, {**body, "terms": True}, key).status_code)

    threads = [threading.Thread(target=post, args=(body,)) for body in variants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [201] * len(variants)
    pending = [r.id for r in rows()]
    db.session.remove()

    # Several workers at once, each its own session: the claims and the unique constraints decide.
    go = threading.Barrier(len(pending))
    outcomes = []

    def work(submission_id):
        with app.app_context():
            go.wait()
            outcomes.append(signups.process(submission_id))

    workers = [threading.Thread(target=work, args=(i,)) for i in pending]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert outcomes == ["processed"] * len(pending)
    run_jobs()  # the drain that intake queued finds nothing left to do
    contact = db.session.query(Contact).one()
    assert contact.phone == "+14155552671"
    assert db.session.query(contact_tags).count() == 1
    assert db.session.query(CampaignEnrollment).count() == 1
    assert {r.contact_id for r in rows()} == {contact.id}


def test_a_page_that_creates_no_contacts_stores_and_counts_only(app, api, run_jobs):
    make_campaign(api)
    page = make_page(api, auto_create_contact=False, apply_tag="lead", trigger_campaign="Welcome")
    key = create_key(api, page)
    assert api_post(app.test_client(), page, {"email": "jane@example.com", "terms": True}, key).status_code == 201
    run_jobs()
    row = rows()[0]
    assert (row.status, row.contact_id) == ("processed", None)
    assert db.session.query(Contact).count() == 0 and db.session.query(CampaignEnrollment).count() == 0
    assert signups.page_stats(db.session.get(Integration, page["id"])).totals.count("processed") == 1


def test_a_missing_campaign_leaves_a_note_and_the_contact(app, api, run_jobs):
    page = make_page(api, trigger_campaign="Does not exist")
    key = create_key(api, page)
    api_post(app.test_client(), page, {"email": "jane@example.com", "terms": True}, key)
    run_jobs()
    contact = db.session.query(Contact).one()
    assert any(e.kind == "note" and "Does not exist" in e.description for e in contact.events)
    assert rows()[0].status == "processed"


def test_submissions_taken_while_redis_is_down_wait_for_the_sweep(app, api, monkeypatch, run_jobs):
    page = make_page(api)
    key = create_key(api, page)
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.delitem(app.extensions, "redis", raising=False)
    response = api_post(app.test_client(), page, {"email": "jane@example.com", "terms": True}, key)
    assert response.status_code == 201
    assert rows()[0].status == "pending"
    monkeypatch.undo()
    app.extensions.pop("redis", None)
    run_jobs()
    assert rows()[0].status == "pending"  # no job was queued: nothing ran
    assert sweep()["signup_submissions"] == 1
    assert rows()[0].status == "processed" and db.session.query(Contact).count() == 1


def test_a_tag_that_cannot_be_applied_is_noted_and_the_contact_kept(app, api, run_jobs):
    page = make_page(api, apply_tag="x" * 150)  # longer than a tag may be: noted, not applied
    key = create_key(api, page)
    api_post(app.test_client(), page, {"email": "jane@example.com", "terms": True}, key)
    run_jobs()
    contact = db.session.query(Contact).one()
    assert contact.tags == [] and any("tag was not applied" in e.description for e in contact.events)
    assert rows()[0].status == "processed"
