"""Importing contacts from CSV: the file is checked before anything is stored, a job (a real RQ worker)
upserts each row like any other way in, the page shows progress and the refused rows, and imports are
the organisation's own."""
import io
from datetime import timedelta

from redis import Redis
from rq import Queue
from sqlalchemy import update

from app.extensions import db
from app.jobs import maintenance
from app.models import Contact, ContactImport, utcnow
from app.services import contact_imports
from tests.conftest import Browser

FILE = ("Full Name,E-mail,Mobile,Tags,Company\n"
        "Jane Doe,jane@example.com,(415) 555-2671,VIP; Newsletter,Acme\n"
        "John Roe,john@example.com,,,\n"
        "Jane again,,4155552671,Returning,Acme Bakery\n"
        "Broken,not-an-email,,,\n"
        ",,,,\n")


def upload(browser, content, filename="contacts.csv", tag="Imported"):
    data = {"file": (io.BytesIO(content if isinstance(content, bytes) else content.encode()), filename), "tag": tag}
    return browser.post("/contacts/import", data, token_from="/contacts/import", content_type="multipart/form-data")


def test_a_file_is_imported_by_a_job_with_progress_and_refused_rows(app, browser, api, run_jobs):
    assert api.post("/api/contacts/", json={"email": "john@example.com", "first_name": "Johnny"}).status_code == 201
    started = upload(browser, "\ufeff" + FILE)
    assert started.status_code == 302
    job = db.session.query(ContactImport).one()
    assert (job.status, job.total_rows) == ("queued", 4)
    page = browser.get(f"/contacts/imports/{job.id}").get_data(as_text=True)
    assert "Waiting for a worker" in page and 'hx-trigger="every 1s"' in page

    run_jobs()
    job = db.session.query(ContactImport).one()
    assert (job.status, job.created, job.updated, job.failed, job.content) == ("done", 1, 2, 1, None)
    assert job.problems == [{"row": 5, "errors": {"email": [job.problems[0]["errors"]["email"][0]]}}]
    jane = db.session.query(Contact).filter_by(email="jane@example.com").one()
    assert (jane.name, jane.phone, jane.source, jane.fields) == ("Jane Doe", "+14155552671", "import", {"Company": "Acme Bakery"})  # latest wins
    assert sorted(t.name for t in jane.tags) == ["Imported", "Newsletter", "Returning", "VIP"]
    john = db.session.query(Contact).filter_by(email="john@example.com").one()
    assert john.first_name == "Johnny" and [t.name for t in john.tags] == ["Imported"]  # filled, not overwritten
    assert db.session.query(Contact).count() == 2

    fragment = browser.get(f"/contacts/imports/{job.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section class="card" id="import-status" data-status="done"')
    assert "hx-trigger" not in fragment and 'id="import-created">1<' in fragment and 'id="import-problems"' in fragment
    assert "contacts.csv" in browser.get("/contacts/import").get_data(as_text=True)


def test_an_import_whose_worker_died_goes_on_from_its_last_committed_row(app, browser, run_jobs):
    assert upload(browser, "email;phone\na@example.com;+14155550101\nb@example.com;\n", tag="").status_code == 302
    job = db.session.query(ContactImport).one()
    # A worker took it, committed the first row's progress and died: its job is gone from the queue.
    Queue(app.config["RQ_QUEUE"], connection=Redis.from_url(app.config["REDIS_URL"])).empty()
    job.status, job.processed = "running", 1
    db.session.commit()
    assert maintenance.sweep()["contact_imports"] == 0  # not stalled yet: a slow row is not a dead worker
    db.session.execute(update(ContactImport).values(updated_at=utcnow() - timedelta(minutes=11)))
    db.session.commit()
    assert maintenance.sweep()["contact_imports"] == 1
    run_jobs()
    job = db.session.query(ContactImport).one()
    assert (job.status, job.created) == ("done", 1)  # only the second row was left
    assert [c.email for c in db.session.query(Contact)] == ["b@example.com"]


def test_an_import_whose_queued_job_was_lost_is_queued_again_and_runs_once(app, browser, run_jobs):
    assert upload(browser, "email\na@example.com\nb@example.com\n", tag="").status_code == 302
    job_id = db.session.query(ContactImport).one().id
    queue = Queue(app.config["RQ_QUEUE"], connection=Redis.from_url(app.config["REDIS_URL"]))
    db.session.execute(update(ContactImport).values(updated_at=utcnow() - timedelta(minutes=3)))
    db.session.commit()
    assert maintenance.sweep()["contact_imports"] == 0 and queue.count == 1  # still waiting in the queue: left alone

    queue.empty()  # Redis restarted without its data
    assert maintenance.sweep()["contact_imports"] == 1 and queue.count == 1
    assert maintenance.sweep()["contact_imports"] == 0  # queued again just now

    # Another worker has taken it meanwhile: this copy of the job leaves it alone.
    db.session.execute(update(ContactImport).values(status="running"))
    db.session.commit()
    assert contact_imports.run(job_id) == "taken or gone"
    assert db.session.get(ContactImport, job_id, populate_existing=True).processed == 0
    db.session.execute(update(ContactImport).values(status="queued"))
    db.session.commit()
    run_jobs()
    job = db.session.get(ContactImport, job_id, populate_existing=True)
    assert (job.status, job.created, job.updated) == ("done", 2, 0)


def test_files_that_cannot_be_imported_are_refused_with_words_and_store_nothing(app, browser):
    cases = [("", "Choose a CSV file."),
             ("name,company\nJane,Acme\n", "one for email or phone"),
             ("email\n", "no contacts"),
             ("\xff\xfeb\x00a\x00d\x00".encode("latin-1"), "not UTF-8"),
             ("email\n" + "x@example.com\n" * 2, None)]
    for content, words in cases[:4]:
        response = upload(browser, content)
        assert response.status_code == 400 and words in response.get_data(as_text=True), words
    response = upload(browser, cases[4][0], tag="x" * 101)
    assert response.status_code == 400 and 'id="tag-error"' in response.get_data(as_text=True)
    assert db.session.query(ContactImport).count() == 0


def test_size_and_row_limits(app, browser, monkeypatch):
    monkeypatch.setattr(contact_imports, "MAX_ROWS", 3)
    response = upload(browser, "email\n" + "".join(f"p{n}@example.com\n" for n in range(4)))
    assert response.status_code == 400 and "at most 3 contacts" in response.get_data(as_text=True)
    monkeypatch.setattr(contact_imports, "MAX_BYTES", 1000)
    response = upload(browser, "email\n" + "a@example.com\n" * 200)
    assert response.status_code == 400 and "at most" in response.get_data(as_text=True)
    assert upload(browser, "email\n" + "a@example.com\n" * 20000).status_code == 413  # past the request's limit
    assert db.session.query(ContactImport).count() == 0


def test_imports_are_the_organisations_own(app, browser, other_admin, run_jobs):
    upload(browser, "email\na@example.com\n")
    job_id = db.session.query(ContactImport).one().id
    outsider = Browser(app.test_client()).login(other_admin.email)
    assert outsider.get(f"/contacts/imports/{job_id}").status_code == 404
    assert "contacts.csv" not in outsider.get("/contacts/import").get_data(as_text=True)
    assert app.test_client().get("/contacts/import").status_code == 302


def test_a_file_over_the_apps_usual_body_limit_is_taken_and_the_form_token_is_still_checked(app, browser, run_jobs):
    big = "email,notes\n" + "".join(f"p{n}@example.com,{'x' * 500}\n" for n in range(2500))  # about 1.3 MB
    assert len(big) > app.config["MAX_CONTENT_LENGTH"]
    assert upload(browser, big).status_code == 302
    assert db.session.query(ContactImport).one().total_rows == 2500
    forged = browser.client.post("/contacts/import", data={"file": (io.BytesIO(b"email\na@example.com\n"), "a.csv")},
                                 content_type="multipart/form-data")
    assert forged.status_code == 400 and db.session.query(ContactImport).count() == 1
