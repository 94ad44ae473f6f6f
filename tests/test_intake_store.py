"""Intake's store on SQLite (app/services/intake_store.py): a request's INSERT waits for a write lock
held elsewhere in short steps, gives up with the app's busy timeout, and never checkpoints; a thread
of the process checkpoints intake's writes, and ends when intake stops writing."""
import os
import sqlite3
import threading
import time

import pytest

from app.extensions import db
from app.models import SignupSubmission, WebhookEvent
from app.services import intake_store
from tests.providers.test_send_whatsapp import configure, notification, post_webhook, status
from tests.signup_helpers import api_post, create_key, make_page, signup_settings  # noqa: F401  (fixture)


@pytest.fixture
def sqlite_file(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock and write-ahead log")
    return db.engine.url.database


def stored(integration) -> int:
    db.session.expire_all()
    return db.session.query(WebhookEvent).filter_by(integration_id=integration["id"]).count()


def checkpoint_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "intake checkpoint"]


def test_a_webhook_waits_for_a_write_lock_held_elsewhere_and_is_stored_once_it_is_free(app, api, sqlite_file):
    wa = configure(api)
    assert post_webhook(app, wa, notification(status("wamid.lock0", "delivered"))).status_code == 200
    holder = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    releases = threading.Timer(0.4, lambda: holder.execute("COMMIT"))
    started = time.monotonic()
    releases.start()
    try:
        response = post_webhook(app, wa, notification(status("wamid.lock1", "delivered")))
    finally:
        releases.join()
        holder.close()
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    assert 0.4 <= time.monotonic() - started < 2  # it tried again soon after the lock was free
    assert stored(wa) == 2


def test_a_write_lock_held_past_the_busy_timeout_is_a_503_and_stores_nothing(app, api, sqlite_file,
                                                                                      monkeypatch, caplog):
    wa = configure(api)
    page = make_page(api)
    key = create_key(api, page)
    assert post_webhook(app, wa, notification(status("wamid.held0", "delivered"))).status_code == 200
    jane = {"email": "jane@example.com", "terms": True}
    assert api_post(app.test_client(), page, jane, key).status_code == 201
    monkeypatch.setattr(intake_store, "SQLITE_BUSY_TIMEOUT", 0.3)
    holder = sqlite3.connect(sqlite_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        response = post_webhook(app, wa, notification(status("wamid.held1", "delivered")))
        signup = api_post(app.test_client(), page, jane, key)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_code == 503 and "Nothing was stored" in response.json["error"]  # the provider sends it again
    assert response.headers["Retry-After"] == "10"
    assert signup.status_code == 503 and signup.headers["Retry-After"] == "10"
    assert 0.6 <= time.monotonic() - started < 4
    assert "database is locked" in caplog.text
    assert db.session.query(SignupSubmission).count() == 1
    assert stored(wa) == 1
    assert post_webhook(app, wa, notification(status("wamid.held1", "delivered"))).status_code == 200
    assert stored(wa) == 2


def test_intakes_writes_reach_the_database_file_through_a_checkpoint_of_its_own(app, api, sqlite_file, monkeypatch):
    monkeypatch.setattr(intake_store, "CHECKPOINTER_IDLE_ROUNDS", 3)
    wa = configure(api)
    db.session.remove()  # the page's own connections are back in the pool and write nothing more
    written_before = os.stat(sqlite_file).st_mtime_ns
    for n in range(5):  # far fewer pages than SQLite's automatic checkpoint waits for
        assert post_webhook(app, wa, notification(status(f"wamid.ckpt{n}", "delivered"))).status_code == 200
    assert checkpoint_threads()
    deadline = time.monotonic() + 5
    while os.stat(sqlite_file).st_mtime_ns == written_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.stat(sqlite_file).st_mtime_ns != written_before  # the pages were copied into the file
    with sqlite3.connect(sqlite_file) as reader:  # and nothing is left in the log to copy
        busy, log_frames, checkpointed = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and log_frames == checkpointed

    deadline = time.monotonic() + 5
    while checkpoint_threads() and time.monotonic() < deadline:  # no writes: the thread ends
        time.sleep(0.05)
    assert not checkpoint_threads()
    assert post_webhook(app, wa, notification(status("wamid.ckpt-again", "delivered"))).status_code == 200
    assert checkpoint_threads()  # and a write starts it again
    assert stored(wa) == 6
