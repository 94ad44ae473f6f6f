"""Test connection: queue an RQ job, run the adapter's check, record the outcome."""
from __future__ import annotations

import uuid
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError

from ..extensions import db
from ..models import ConnectionTest, Integration, User, utcnow
from ..providers.base import GiveUp, ProviderError
from ..queue import task_queue
from . import integrations as svc
from . import meta_app

JOB_TIMEOUT_SECONDS = 120


class QueueUnavailable(RuntimeError):
    pass


def request_test(integration: Integration, user: User | None) -> ConnectionTest:
    """Record a queued test and put its job on the queue (after commit, so the worker sees the row)."""
    test = ConnectionTest(id=uuid.uuid4().hex, organization_id=integration.organization_id,
                          integration_id=integration.id, status="queued",
                          requested_by_id=user.id if user else None)
    db.session.add(test)
    svc.log_event(integration, "test_queued", f"{user.email if user else 'The system'} started a connection test.",
                  user=user)
    db.session.commit()
    try:
        task_queue().enqueue("app.jobs.connection_tests.run_connection_test", test.id, job_id=test.id,
                             job_timeout=JOB_TIMEOUT_SECONDS, result_ttl=3600, failure_ttl=86400)
    except RedisError:
        test.status, test.message, test.finished_at = "failed", "The job queue (Redis) is not reachable.", utcnow()
        db.session.commit()
        raise QueueUnavailable(test.message) from None
    return test


def get_test(organization_id: int, integration_id: int, test_id: str) -> ConnectionTest | None:
    return db.session.scalar(db.select(ConnectionTest).where(
        ConnectionTest.id == test_id, ConnectionTest.organization_id == organization_id,
        ConnectionTest.integration_id == integration_id))


def run_test(test_id: str) -> str:
    """The job's body. Outcomes are recorded on the test, the integration and its log."""
    test = db.session.get(ConnectionTest, test_id)
    if test is None or test.done:
        return "gone"
    integration = db.session.get(Integration, test.integration_id)
    if integration is None:
        return "gone"
    test.status = "running"
    db.session.commit()

    secrets = svc.get_secrets(integration)
    missing = svc.missing_required(integration, secrets)
    try:
        if missing:
            raise GiveUp(f"Fill in {', '.join(missing)} before testing the connection.")
        config, secrets = meta_app.with_app_credentials(integration, integration.config or {}, secrets)
        message = svc.adapter_for(integration).check(config, secrets)
        passed = True
    except ProviderError as exc:
        message, passed = exc.reason, False
    except Exception:  # a bug of ours must still end the test with words, not a traceback
        current_app.logger.exception("connection test %s crashed", test_id)
        message, passed = "The test failed unexpectedly inside Switchboard; the error was logged for the team.", False

    now = utcnow()
    test.status, test.message, test.finished_at = ("passed" if passed else "failed"), message, now
    integration.last_tested_at = now
    if passed:
        integration.error_count, integration.last_error = 0, None
        svc.log_event(integration, "test_passed", f"Connection test passed: {message}")
        if integration.is_active:
            svc.set_status(integration, "active", "the connection test passed")
    else:
        integration.error_count += 1
        integration.last_error = message
        svc.log_event(integration, "test_failed", f"Connection test failed: {message}", level="error")
        if integration.is_active:
            svc.set_status(integration, "error", "the connection test failed")
    db.session.commit()
    return test.status


def serialize_test(test: ConnectionTest) -> dict:
    return {"job_id": test.id, "status": test.status, "message": test.message,
            "created_at": svc.isoformat(test.created_at), "finished_at": svc.isoformat(test.finished_at)}


def latest_test(integration: Integration) -> ConnectionTest | None:
    return db.session.scalar(db.select(ConnectionTest).where(ConnectionTest.integration_id == integration.id)
                             .order_by(ConnectionTest.created_at.desc()).limit(1))


STUCK_AFTER_SECONDS = 2 * JOB_TIMEOUT_SECONDS


def expire_stuck_tests() -> int:
    """Fail tests whose job can no longer finish (a worker died, Redis lost the job).

    Without this the page would poll a test that never ends.
    """
    cutoff = utcnow() - timedelta(seconds=STUCK_AFTER_SECONDS)
    stuck = db.session.scalars(db.select(ConnectionTest).where(ConnectionTest.status.in_(("queued", "running")),
                                                               ConnectionTest.created_at < cutoff)).all()
    for test in stuck:
        test.status, test.finished_at = "failed", utcnow()
        test.message = "The test did not finish: no worker picked it up in time. Check that the worker is running."
    db.session.commit()
    return len(stuck)
