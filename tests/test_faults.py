"""Faults with real processes: a worker killed in the middle of a bulk send loses nothing and
sends nothing twice."""
import time
from collections import Counter
from datetime import timedelta

from app.extensions import db
from app.jobs.maintenance import sweep
from app.models import Message, utcnow
from tests.conftest import REDIS_URL, TEST_KEY, point_at
from tests.live_server import WorkerProcess
from tests.sendgrid_fake import FakeSendGrid
from tests.test_outbound import make_email

BULK = 40


def test_a_worker_killed_mid_bulk_loses_nothing_and_sends_nothing_twice(app, api, httpserver, monkeypatch, tmp_path,
                                                                       run_jobs):
    fake = FakeSendGrid(httpserver, latency=0.05)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", fake.url)
    make_email(api)
    response = api.post("/api/messages/bulk/", json={"channel": "email", "messages": [
        {"to": f"customer{n}@example.com", "subject": "Sale", "body": "Hi"} for n in range(BULK)]})
    ids = response.json["ids"]
    env = {"APP_ENV": "testing", "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": REDIS_URL,
           "RQ_QUEUE": app.config["RQ_QUEUE"], "SECRET_KEY": app.config["SECRET_KEY"], "ENCRYPTION_KEYS": TEST_KEY,
           "SENDGRID_API_BASE": fake.url, "INSTANCE_PATH": str(tmp_path / "instance")}
    with WorkerProcess(env, tmp_path / "worker.log", redis_url=REDIS_URL, queue=app.config["RQ_QUEUE"]) as worker:
        deadline = time.monotonic() + 30
        while len(fake.sent) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.process.kill()  # SIGKILL: no warm shutdown, possibly in the middle of a send
        worker.process.wait(timeout=10)
    assert 8 <= len(fake.sent) < BULK, "the worker should have been killed part-way"

    run_jobs()  # a new worker finishes what was queued
    db.session.expire_all()
    left_sending = db.session.query(Message).filter_by(status="sending").all()
    assert len(left_sending) <= 1  # at most the one the dead worker had in hand
    for message in left_sending:
        message.sending_started_at = utcnow() - timedelta(minutes=11)
    db.session.commit()
    sweep()
    run_jobs()
    db.session.expire_all()

    statuses = {m.id: m for m in db.session.query(Message).filter(Message.id.in_(ids))}
    received = Counter(fake.message_ids())
    assert max(received.values()) == 1, "a message was sent twice"
    for message_id in ids:
        message = statuses[message_id]
        if message.status == "sent":
            assert received[message_id] == 1
        else:  # the one interrupted in flight: ended, not resent
            assert message.status == "failed" and "not sent again" in message.last_error
            assert received[message_id] <= 1
    assert sum(1 for m in statuses.values() if m.status == "sent") >= BULK - 1
