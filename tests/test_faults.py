"""Faults with real processes: a worker killed in the middle of a bulk send loses nothing and
sends nothing twice; webhooks that arrive while Redis is stopped are all kept and processed."""
import time
from collections import Counter

import pytest
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

    # Once its timeout has passed, RQ finds the dead worker's batch abandoned and runs it again.
    from rq.registry import StartedJobRegistry

    from app.jobs.messages import BATCH_THREADS
    from app.queue import task_queue
    StartedJobRegistry(queue=task_queue()).cleanup(time.time() + 3600)
    for job_id in task_queue().scheduled_job_registry.get_job_ids():  # the retry waits 5 s: take it now
        task_queue().scheduled_job_registry.remove(job_id)
        task_queue().enqueue_job(task_queue().fetch_job(job_id))
    run_jobs()  # a new worker finishes what was queued
    db.session.expire_all()
    left_sending = db.session.query(Message).filter_by(status="sending").all()
    assert len(left_sending) <= BATCH_THREADS  # at most those the dead worker had in hand
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
    assert sum(1 for m in statuses.values() if m.status == "sent") >= BULK - BATCH_THREADS


def test_redis_stopped_while_webhooks_arrive(app, api, httpserver, monkeypatch, tmp_path, run_jobs):
    """A real Redis that stops and starts again: every webhook is answered and stored while it is
    down, and all are processed once it is back."""
    import shutil
    import socket
    import subprocess

    from redis import Redis

    from app.models import WebhookEvent
    from app.services import webhooks
    from tests.sendgrid_fake import EventWebhookSigner, events_body

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"

    def start():
        process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                Redis.from_url(url).ping()
                return process
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    redis_process = start()
    try:
        monkeypatch.setitem(app.config, "REDIS_URL", url)
        monkeypatch.delitem(app.extensions, "redis", raising=False)
        fake = FakeSendGrid(httpserver)
        point_at(app, monkeypatch, "SENDGRID_API_BASE", fake.url)
        signer = EventWebhookSigner()
        integration_id = make_email(api)
        api.post(f"/api/integrations/{integration_id}/configure/email/",
                 json={"webhook_verification_key": signer.public_key})
        message_id = api.post("/api/messages/", json={"channel": "email", "to": "jane@example.com",
                                                     "subject": "s", "body": "b"}).json["id"]
        run_jobs()
        path = api.get(f"/api/integrations/{integration_id}/").json["webhook_url"].replace(
            "https://switchboard.example.com", "")

        redis_process.terminate()  # Redis stops; the app's pooled connections break
        redis_process.wait(timeout=10)
        client = app.test_client()
        for n, kind in enumerate(("delivered", "open", "click")):
            body = events_body({"event": kind, "sg_event_id": f"down{n}", "sg_message_id": "sgmsg1.x",
                                "switchboard_message_id": message_id, "timestamp": int(time.time())})
            response = client.post(path, data=body, headers=signer.headers(body))
            assert response.status_code == 200 and response.json == {"status": "accepted"}
        db.session.expire_all()
        assert db.session.query(WebhookEvent).filter_by(status="pending").count() == 3

        redis_process = start()  # back, empty: nothing of the queue survived
        assert webhooks.sweep() == 3
        run_jobs()
        db.session.expire_all()
        assert db.session.query(WebhookEvent).filter_by(status="processed").count() == 3
        assert api.get(f"/api/messages/{message_id}/").json["status"] == "clicked"
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=10)
        app.extensions.pop("redis", None)
