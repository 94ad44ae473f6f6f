"""The app's health for a monitor or a load balancer (GET /healthz): can it store what arrives (the
database), can it hand work to workers (Redis, a worker listening), and is stored work waiting longer
than it should (the oldest pending webhook and sign-up)."""
from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import SignupSubmission, WebhookEvent, utcnow
from ..queue import redis_connection, task_queue

BACKLOG_LIMIT_SECONDS = 300  # the sweep runs every minute: a pending row older than this means work is stuck


def check() -> tuple[int, dict[str, Any]]:
    """(HTTP status, report): 503 when the database cannot be reached (nothing could be stored), 200
    otherwise, with status "degraded" when Redis, the workers or the backlog need attention."""
    report: dict[str, Any] = {"status": "ok"}
    try:
        db.session.execute(select(1))
        now = utcnow()
        for name, model in (("webhooks", WebhookEvent), ("signups", SignupSubmission)):
            oldest = db.session.scalar(select(func.min(model.received_at)).where(model.status == "pending"))
            report[f"oldest_pending_{name}_seconds"] = round((now - oldest).total_seconds()) if oldest else 0
        report["database"] = "ok"
    except SQLAlchemyError:
        db.session.rollback()
        return 503, {"status": "unavailable", "database": "unavailable"}
    try:
        redis_connection().ping()
        report["redis"] = "ok"
        report["workers"] = Worker.count(connection=redis_connection(), queue=task_queue())
    except RedisError:
        report["redis"], report["workers"] = "unavailable", None
    backlog = max(report["oldest_pending_webhooks_seconds"], report["oldest_pending_signups_seconds"])
    if report["redis"] != "ok" or not report["workers"] or backlog > BACKLOG_LIMIT_SECONDS:
        report["status"] = "degraded"
    return 200, report
