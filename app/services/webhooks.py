"""Webhook intake and processing (DESIGN rule 1: verify, store, acknowledge, then process).

Intake verifies the raw request with the integration's secrets, stores it with a
de-duplication key under a unique constraint, commits, and only then answers; a job
processes it. If Redis is down the row waits as pending for the cron sweep.
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import parse_qsl

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Integration, Message, MessageEvent, WebhookEvent, utcnow
from ..providers.base import InboundWebhook, StatusEvent, WebhookRejected
from ..queue import redis_connection, task_queue
from . import integrations as svc
from .messaging import add_event

# Headers kept with every stored body, besides the ones each adapter names (its signatures).
KEPT_HEADERS = ("content-type", "user-agent", "authorization")
SECRET_HEADERS = ("authorization",)
MAX_PROCESSING_ATTEMPTS = 5
DRAIN_QUEUED_FLAG = "switchboard:webhooks:drain-queued"
DRAIN_FLAG_TTL = 300  # a lost drain job holds the flag at most this long; the sweep drains meanwhile
DRAIN_BATCH = 500
# A status may only move forward; bounces and failures end a message unless it was already opened or read.
PROGRESS = {"queued": 0, "scheduled": 0, "sending": 1, "sent": 2, "delivered": 3, "opened": 4, "read": 4,
            "clicked": 5}
FINAL_FAILURES = ("bounced", "failed")


class Answer:
    def __init__(self, status: int, body: dict[str, Any] | str):
        self.status, self.body = status, body


def inbound_from_request(request) -> InboundWebhook:
    body = request.get_data(cache=True)
    form: tuple = ()
    if request.mimetype == "application/x-www-form-urlencoded":
        try:
            form = tuple(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = ()
    query = request.query_string.decode("latin-1")
    url = current_app.config["PUBLIC_BASE_URL"] + request.path + (f"?{query}" if query else "")
    return InboundWebhook(method=request.method, url=url, headers={k.lower(): v for k, v in request.headers.items()},
                          body=body, form=form, query=tuple(parse_qsl(query, keep_blank_values=True)),
                          received_at=time.time())


# Built once: intake is the hot path, and a statement with bound parameters skips SQLAlchemy's
# per-call construction and cache-key work.
FIND_INTEGRATION = select(Integration).where(Integration.public_id == bindparam("public_id"),
                                             Integration.provider == bindparam("provider"))
STORE_EVENT = insert(WebhookEvent)


def find_integration(provider: str, public_id: str) -> Integration | None:
    if len(public_id) > 64:
        return None
    integration = db.session.scalar(FIND_INTEGRATION, {"public_id": public_id, "provider": provider})
    if integration is None or not svc.provider_of(integration).receives_webhooks:
        return None
    return integration


def intake(provider: str, public_id: str, inbound: InboundWebhook) -> Answer:
    integration = find_integration(provider, public_id)
    if integration is None:
        return Answer(404, {"error": "No integration receives webhooks at this address."})
    adapter = svc.adapter_for(integration)
    config, secrets = integration.config or {}, svc.get_secrets(integration)
    if inbound.method == "GET" and adapter.get_delivers_events:
        inbound = replace(inbound, form=inbound.query)  # events in the query string (Vonage's GET receipts)
    elif inbound.method in ("GET", "HEAD"):  # handshakes: Meta's hub.challenge, Mandrill's HEAD check
        try:
            reply = adapter.answer_webhook_get(config, secrets, inbound)
        except WebhookRejected as exc:
            return Answer(exc.status, {"error": exc.reason})
        return Answer(200, reply) if reply is not None else Answer(405, {"error": "This address takes POST."})
    try:
        adapter.verify_webhook(config, secrets, inbound)
        adapter.parse_webhook(config, inbound)  # a body that cannot be read is refused now, not stored
    except WebhookRejected as exc:
        current_app.logger.warning("webhook refused for integration %s (%s): %s", integration.id, provider, exc.reason)
        return Answer(exc.status, {"error": exc.reason})
    # A Core insert: intake is the hot path, and nothing here needs the ORM's unit of work.
    row = dict(organization_id=integration.organization_id, integration_id=integration.id, provider=provider,
               dedup_key=adapter.webhook_dedup_key(inbound)[:255], url=inbound.url,
               headers={k: v for k, v in inbound.headers.items()
                        if k in KEPT_HEADERS or k in adapter.webhook_headers},
               form=[list(pair) for pair in inbound.form], body=inbound.body, status="pending",
               received_at=utcnow(), attempts=0)
    try:
        db.session.execute(STORE_EVENT, row)
        db.session.commit()
    except IntegrityError:  # the provider's retry of a delivery we already hold
        db.session.rollback()
        return Answer(200, {"status": "duplicate"})
    signal_processing()
    return Answer(200, {"status": "accepted"})


def signal_processing() -> bool:
    """Make sure a drain job is queued. One flag in Redis stands for "a drain is queued", so a
    burst of webhooks costs one SET each, not one job each. False if Redis is down (the sweep drains)."""
    from ..jobs.webhooks import drain_webhook_events
    try:
        if redis_connection().set(DRAIN_QUEUED_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL):
            task_queue().enqueue(drain_webhook_events, result_ttl=0, failure_ttl=86400)
        return True
    except RedisError:
        current_app.logger.warning("Redis unavailable: webhook events wait for the sweep")
        return False


def drain(limit: int = DRAIN_BATCH) -> int:
    """Process pending webhook events, oldest first; returns how many."""
    try:
        redis_connection().delete(DRAIN_QUEUED_FLAG)  # events stored from now on queue another drain
    except RedisError:
        pass
    pending = db.session.scalars(select(WebhookEvent.id).where(WebhookEvent.status == "pending")
                                 .order_by(WebhookEvent.id).limit(limit)).all()
    for event_id in pending:
        process(event_id)
    if len(pending) == limit:
        signal_processing()
    return len(pending)


def stored_request(row: WebhookEvent) -> InboundWebhook:
    return InboundWebhook(method="POST", url=row.url, headers=dict(row.headers or {}), body=row.body,
                          form=tuple(tuple(pair) for pair in row.form or []),
                          query=tuple(parse_qsl(row.url.partition("?")[2], keep_blank_values=True)),
                          received_at=row.received_at.replace(tzinfo=UTC).timestamp())


def process(event_id: int) -> str:
    claimed = db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id,
                                                            WebhookEvent.status == "pending")
                                 .values(status="processing", attempts=WebhookEvent.attempts + 1,
                                         processed_at=utcnow())).rowcount
    db.session.commit()
    if claimed != 1:
        return "nothing to do"  # processed, or in another worker's hands
    row = db.session.get(WebhookEvent, event_id)
    if row.meta_app_id is not None:  # posted to the organisation's Meta app address: conversations and statuses
        from . import meta_webhooks
        return meta_webhooks.process(row)
    integration = db.session.get(Integration, row.integration_id)
    adapter = svc.adapter_for(integration)
    config = integration.config or {}
    try:
        events = adapter.parse_webhook(config, stored_request(row))
        unmatched = []
        for event in events:
            adapter.act_on_event(config, svc.get_secrets(integration), event)
            if not apply(integration, event):
                unmatched.append(event)
    except WebhookRejected as exc:
        db.session.rollback()
        row = db.session.get(WebhookEvent, event_id)
        if exc.status >= 500 and row.attempts < MAX_PROCESSING_ATTEMPTS:  # the other side is down for now
            row.status, row.error = "pending", f"{exc.reason} Will try again."
            db.session.commit()
            return "pending"
        row.status, row.error, row.processed_at = "failed", exc.reason, utcnow()
        db.session.commit()
        return "failed"
    except Exception:
        db.session.rollback()
        current_app.logger.exception("processing webhook event %s crashed", event_id)
        row = db.session.get(WebhookEvent, event_id)
        row.status, row.error = "failed", "Processing failed unexpectedly inside Switchboard; the error was logged."
        db.session.commit()
        return "failed"
    if unmatched and row.attempts < MAX_PROCESSING_ATTEMPTS:
        # A status can arrive before the send that caused it is recorded: the sweep tries again.
        row.status, row.error = "pending", f"No message matches {describe(unmatched)} yet; will try again."
    else:
        row.status, row.processed_at = "processed", utcnow()
        row.error = f"No message matches {describe(unmatched)}." if unmatched else None
    db.session.commit()
    return row.status


def describe(events: list[StatusEvent]) -> str:
    ids = sorted({e.message_id or e.provider_message_id or "?" for e in events})
    return ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


def apply(integration: Integration, event: StatusEvent) -> bool:
    """Record the event on its message's timeline and move its status; False if no message matches."""
    if event.message_id is None and event.provider_message_id is None:
        return True  # an event about no message (a subscription confirmation, a test ping)
    match = [Message.id == event.message_id] if event.message_id else []
    if event.provider_message_id:
        match.append(Message.provider_message_id == event.provider_message_id)
    message = db.session.scalar(select(Message).where(Message.organization_id == integration.organization_id,
                                                      or_(*match)).limit(1))
    if message is None:
        return False
    seen = db.session.scalar(select(MessageEvent.id).where(MessageEvent.message_id == message.id,
                                                           MessageEvent.dedup_key == event.dedup_key))
    if seen:
        return True
    # A failure we inferred without the provider's word (an interrupted send) yields to what the provider says.
    unconfirmed_failure = message.status in FINAL_FAILURES and message.provider_message_id is None
    if event.provider_message_id and not message.provider_message_id:
        message.provider_message_id = event.provider_message_id
    moment = (utcnow() if event.occurred_at is None
              else utcnow() - timedelta(seconds=max(0.0, time.time() - event.occurred_at)))
    add_event(message, event.status or "info", event.description, integration_id=integration.id,
              dedup_key=event.dedup_key[:255], occurred_at=moment)
    current = "sending" if unconfirmed_failure else message.status
    if event.status and message.status != "sandboxed" and moves_forward(current, event.status):
        message.status = event.status
        if event.status in FINAL_FAILURES:
            message.last_error = event.description
    return True


def moves_forward(current: str, new: str) -> bool:
    if new in FINAL_FAILURES:
        return current not in ("opened", "clicked", "read") and current not in FINAL_FAILURES
    if current in FINAL_FAILURES:
        return False
    return PROGRESS.get(new, 0) > PROGRESS.get(current, 0)


def replay(row: WebhookEvent) -> None:
    row.status, row.error = "pending", None
    db.session.commit()
    signal_processing()


def redacted_payload(row: WebhookEvent) -> str:
    """The stored body for the inspector, with secrets and signatures masked."""
    text = row.body.decode("utf-8", "replace")
    for name in SECRET_HEADERS:
        value = (row.headers or {}).get(name)
        if value:
            text = text.replace(value, "[redacted]")
    return text


def sweep() -> int:
    """Every minute: events a crashed drain left half-done go back in line, then a drain takes
    every pending event (those stored while Redis was down, and those waiting for their message)."""
    db.session.execute(update(WebhookEvent).where(WebhookEvent.status == "processing",
                                                  WebhookEvent.processed_at < utcnow() - timedelta(minutes=10))
                       .values(status="pending"))
    db.session.commit()
    return drain()
