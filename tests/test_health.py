"""GET /healthz as a monitor sees it: 200 "ok" when the database, Redis and a worker answer and nothing
waits too long; "degraded" (still 200) when Redis, the workers or the backlog need attention; 503 when
the database cannot be reached. No sign-in, and no first-run redirect."""
from datetime import timedelta

from rq import Worker

from app import create_app
from app.extensions import db
from app.models import WebhookEvent, utcnow
from app.queue import redis_connection, task_queue
from tests.test_signup_intake import CONFIG_OF_THE_TEST_APP


def other_app(app, **overrides):
    variant = create_app({**{name: app.config[name] for name in CONFIG_OF_THE_TEST_APP}, **overrides})
    variant.test_client_class = type(app.test_client())
    return variant


def test_healthy_when_the_database_redis_and_a_worker_answer(app, admin):
    worker = Worker([task_queue()], connection=redis_connection(), name="health-test-worker")
    worker.register_birth()
    try:
        response = app.test_client().get("/healthz")
    finally:
        worker.register_death()
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert response.json == {"status": "ok", "database": "ok", "redis": "ok", "workers": 1,
                             "oldest_pending_webhooks_seconds": 0, "oldest_pending_signups_seconds": 0}


def test_no_worker_or_an_old_backlog_is_degraded(app, api, admin):
    assert app.test_client().get("/healthz").json["status"] == "degraded"  # nobody listens on the queue
    integration = api.post("/api/integrations/", json={"integration_type": "sms", "name": "Texts",
                                                       "provider": "twilio"}).json
    db.session.add(WebhookEvent(organization_id=admin.organization_id, integration_id=integration["id"], provider="twilio",
                                dedup_key="old", url="https://switchboard.example.com/x", body=b"x",
                                received_at=utcnow() - timedelta(minutes=10)))
    db.session.commit()
    worker = Worker([task_queue()], connection=redis_connection(), name="health-test-worker")
    worker.register_birth()
    try:
        report = app.test_client().get("/healthz").json
    finally:
        worker.register_death()
    assert report["status"] == "degraded" and report["oldest_pending_webhooks_seconds"] >= 600


def test_redis_down_is_degraded_and_the_database_down_is_503(app, tmp_path):
    no_redis = other_app(app, REDIS_URL="redis://127.0.0.1:1/0")
    with no_redis.app_context():
        response = no_redis.test_client().get("/healthz")
    assert response.status_code == 200
    assert (response.json["status"], response.json["redis"], response.json["workers"]) == ("degraded", "unavailable", None)

    no_database = other_app(app, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/missing-folder/none.db")
    with no_database.app_context():
        response = no_database.test_client().get("/healthz")
        db.engine.dispose()
    assert response.status_code == 503 and response.json == {"status": "unavailable", "database": "unavailable"}


def test_a_fresh_install_answers_without_sending_to_the_first_run_page(app):
    response = app.test_client().get("/healthz")  # no user yet
    assert response.status_code == 200 and response.json["database"] == "ok"
