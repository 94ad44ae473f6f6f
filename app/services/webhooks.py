"""Webhook intake and processing (DESIGN rule 1: verify, store, acknowledge, then process).

Intake verifies the raw request with the integration's secrets, stores it with a
de-duplication key under a unique constraint, commits, and only then answers; a job
processes it. If Redis is down the row waits as pending for the cron sweep.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from flask import current_app
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..crypto import vault
from ..extensions import db
from ..models import Integration, Message, MessageEvent, WebhookEvent, utcnow
from ..providers import provider_class
from ..providers.base import InboundWebhook, LeadEvent, Provider, StatusEvent, WebhookRejected
from ..queue import drain_signal
from . import integrations as svc
from . import leads
from .intake_store import Answer, Copies, intake_database
from .messaging import add_event

# Headers kept with every stored body, besides the ones each adapter names (its signatures).
KEPT_HEADERS = ("content-type", "user-agent", "authorization")
SECRET_HEADERS = ("authorization",)
MAX_PROCESSING_ATTEMPTS = 5
DRAIN_QUEUED_FLAG = "switchboard:webhooks:drain-queued"
DRAIN_BATCH = 500
# A status may only move forward; bounces and failures end a message unless it was already opened or read.
PROGRESS = {"queued": 0, "scheduled": 0, "sending": 1, "sent": 2, "delivered": 3, "opened": 4, "read": 4,
            "clicked": 5}
FINAL_FAILURES = ("bounced", "failed")
NO_RECEIVER = {"error": "No integration receives webhooks at this address."}


def inbound_from_environ(environ: dict, body: bytes) -> InboundWebhook:
    """The request as intake examines and keeps it, read straight from WSGI: header names as
    werkzeug's would be (lower-cased), the public URL the provider called, form fields when form-encoded."""
    headers = {name[5:].replace("_", "-").lower(): value for name, value in environ.items()
               if name.startswith("HTTP_") and name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH")}
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    form: tuple = ()
    if headers.get("content-type", "").partition(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            form = tuple(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = ()
    path = "/" + environ.get("PATH_INFO", "").encode("latin-1").decode(errors="replace").lstrip("/")
    query = environ.get("QUERY_STRING", "")
    url = current_app.config["PUBLIC_BASE_URL"] + path + (f"?{query}" if query else "")
    return InboundWebhook(method=environ["REQUEST_METHOD"], url=url, headers=headers, body=body, form=form,
                          query=tuple(parse_qsl(query, keep_blank_values=True)) if query else (),
                          received_at=time.time())


@dataclass(frozen=True)
class Receiver:
    """An integration as intake needs it, read when its row's updated_at was `version`. Every change
    to the row moves updated_at (configure() sets it; the model's onupdate covers any other UPDATE)."""

    integration_id: int
    adapter_class: type[Provider]
    config: dict[str, Any]
    secrets: dict[str, str]
    version: datetime


# Intake is the hot path: Core statements built once, no ORM unit of work, and each integration's
# decrypted secrets kept per process for a while. The copy is never trusted on its own: the INSERT
# stores the event only if the integration's row is still at the copy's version, and any other answer
# is given only after the version is read again, so a changed secret takes effect at once.
integrations, webhook_events = Integration.__table__, WebhookEvent.__table__
RECEIVER = select(integrations.c.id, integrations.c.integration_type, integrations.c.provider, integrations.c.config,
                  integrations.c.secrets_ciphertext, integrations.c.updated_at).where(
    integrations.c.public_id == bindparam("public_id"), integrations.c.provider == bindparam("provider"))
RECEIVER_VERSION = select(integrations.c.updated_at).where(integrations.c.id == bindparam("integration_id"))
EVENT_FIELDS = ("provider", "dedup_key", "url", "headers", "form", "body", "status", "received_at", "attempts")
STORE_IF_CURRENT = insert(webhook_events).from_select(
    ["organization_id", "integration_id", *EVENT_FIELDS],
    select(integrations.c.organization_id, integrations.c.id,
           *(bindparam(name, type_=webhook_events.c[name].type) for name in EVENT_FIELDS))
    .where(integrations.c.id == bindparam("integration_id"), integrations.c.updated_at == bindparam("version")))
RECEIVER_TTL = 60.0  # seconds a decrypted copy is used and kept, however often its version is confirmed
MAX_RECEIVERS = 1000
INTAKE_ATTEMPTS = 3  # reads of an integration that keeps changing under one request before it is answered 503


class ReceiverCache:
    """Receivers by (provider, public_id), per process and app."""

    def __init__(self):
        self.copies = Copies(RECEIVER_TTL, MAX_RECEIVERS)

    def get(self, provider: str, public_id: str) -> Receiver | None:
        return self.copies.get((provider, public_id))

    def load(self, provider: str, public_id: str) -> Receiver | None:
        """Read the integration now; None if none at this address receives webhooks."""
        with intake_database().engine.connect() as connection:
            row = connection.execute(RECEIVER, {"public_id": public_id, "provider": provider}).one_or_none()
        adapter_class = provider_class(row.integration_type, row.provider) if row else None
        receiver = None
        if adapter_class is not None and adapter_class.receives_webhooks:
            receiver = Receiver(integration_id=row.id, adapter_class=adapter_class, config=row.config or {},
                                secrets=vault().decrypt_json(row.secrets_ciphertext), version=row.updated_at)
        self.copies.put((provider, public_id), receiver)
        return receiver

    @staticmethod
    def is_current(receiver: Receiver) -> bool:
        with intake_database().engine.connect() as connection:
            version = connection.scalar(RECEIVER_VERSION, {"integration_id": receiver.integration_id})
        return version == receiver.version


def receivers() -> ReceiverCache:
    extensions = current_app.extensions
    if "webhook_receivers" not in extensions:
        extensions["webhook_receivers"] = ReceiverCache()
    return extensions["webhook_receivers"]


# Public ids are token_urlsafe: anything else (a NUL, which PostgreSQL refuses, or a long string) is no address.
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def intake(provider: str, public_id: str, inbound: InboundWebhook) -> Answer:
    if not PUBLIC_ID.fullmatch(public_id):
        return Answer(404, NO_RECEIVER)
    cache = receivers()
    receiver = cache.get(provider, public_id) or cache.load(provider, public_id)
    for _ in range(INTAKE_ATTEMPTS):
        if receiver is None:
            return Answer(404, NO_RECEIVER)
        answer, row = examine(receiver, provider, inbound)
        if row is not None:
            try:
                if intake_database().run(STORE_IF_CURRENT, row) == 1:  # still at the copy's version
                    break
            except IntegrityError:  # the provider's retry of a delivery we already hold (checked current)
                return Answer(200, {"status": "duplicate"})
        elif cache.is_current(receiver):
            if answer.status >= 400:
                current_app.logger.warning("webhook refused for integration %s (%s): %s",
                                           receiver.integration_id, provider, answer.body)
            return answer
        receiver = cache.load(provider, public_id)  # the row changed since the copy was read
    else:
        return Answer(503, {"error": "This integration is being changed; send the webhook again."})
    signal_processing()
    return Answer(200, {"status": "accepted"})


def examine(receiver: Receiver, provider: str, inbound: InboundWebhook) -> tuple[Answer | None, dict | None]:
    """The answer to give, or the row to store: verify on the raw request first, then make sure it parses."""
    adapter = receiver.adapter_class(svc.provider_settings())
    config, secrets = receiver.config, receiver.secrets
    if inbound.method == "GET" and adapter.get_delivers_events:
        inbound = replace(inbound, form=inbound.query)  # events in the query string (Vonage's GET receipts)
    elif inbound.method in ("GET", "HEAD"):  # handshakes: Meta's hub.challenge, Mandrill's HEAD check
        try:
            reply = adapter.answer_webhook_get(config, secrets, inbound)
        except WebhookRejected as exc:
            return Answer(exc.status, {"error": exc.reason}), None
        return (Answer(200, reply) if reply is not None else Answer(405, {"error": "This address takes POST."})), None
    try:
        adapter.verify_webhook(config, secrets, inbound)
        adapter.parse_webhook(config, inbound)  # a body that cannot be read is refused now, not stored
    except WebhookRejected as exc:
        return Answer(exc.status, {"error": exc.reason}), None
    return None, dict(integration_id=receiver.integration_id, version=receiver.version, provider=provider,
                      dedup_key=adapter.webhook_dedup_key(inbound)[:255], url=inbound.url,
                      headers={k: v for k, v in inbound.headers.items()
                               if k in KEPT_HEADERS or k in adapter.webhook_headers},
                      form=[list(pair) for pair in inbound.form], body=inbound.body, status="pending",
                      received_at=utcnow(), attempts=0)


def _drain_signal():
    return drain_signal(DRAIN_QUEUED_FLAG, "app.jobs.webhooks.drain_webhook_events", "webhook events")


def signal_processing() -> bool:
    """Make sure a drain job will read the events stored so far. False if Redis is down (the sweep drains)."""
    return _drain_signal().send()


def drain(limit: int = DRAIN_BATCH) -> int:
    """Process pending webhook events, oldest first; returns how many."""
    _drain_signal().take_down()
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
        lead_notes = leads.receive(integration, [e for e in events if isinstance(e, LeadEvent)])
        unmatched = []
        for event in (e for e in events if isinstance(e, StatusEvent)):
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
        row.error = f"No message matches {describe(unmatched)}." if unmatched else lead_notes
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
