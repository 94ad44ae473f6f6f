"""The organisation's Meta webhook address, /api/webhooks/meta/<meta app public id>/: one URL for
every Page, Instagram account and WhatsApp number connected through the organisation's Meta app.

Intake (DESIGN rule 1 and 2): Meta's GET handshake is answered with the app's verify token; a POST
is verified with X-Hub-Signature-256 against that organisation's app secret on the raw body before
anything else, read (a body that is no notification is refused, as is one older than Meta's
longest retry), stored as a WebhookEvent of the Meta app with the body's hash as de-duplication
key (Meta's retry of a delivery is stored once), committed, and only then answered; the drain job
of services/webhooks.py hands it to `process` here. Messages are de-duplicated by their mid/wamid
(ConversationMessage's unique constraint), so the same message in another delivery adds nothing.

Processing finds each entry's account by the id Meta names (Page id, Instagram account id,
WhatsApp phone_number_id) within the app's organisation: an account that is not connected is
noted as ignored, not an error. WhatsApp statuses move both the inbox message and the outbound
Message (issue 3's pipeline) with that wamid; a status for a message not recorded yet keeps the
event pending for the sweep, a few times.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import timedelta

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..crypto import vault
from ..extensions import db
from ..models import Integration, MetaApp, WebhookEvent, utcnow
from ..providers import meta as verification
from ..providers import meta_messaging as meta
from ..providers.base import InboundWebhook, WebhookRejected
from ..providers.facebook.graph_api import lead_event
from . import inbox, leads
from . import webhooks
from .intake_store import Answer

PROVIDER = "meta"
# Meta retries a notification for at most 7 days (WhatsApp); anything older is a replay.
NO_APP_SECRET = ("This organisation's Meta app has no app secret yet: save the App Secret on the settings page "
                 "so Meta's webhooks can be verified.")
MAX_AGE = timedelta(days=7)
KEPT_HEADERS = ("content-type", "user-agent", "x-hub-signature-256", "x-hub-signature")


def find_app(public_id: str) -> MetaApp | None:
    if not public_id or len(public_id) > 64:
        return None
    return db.session.scalar(select(MetaApp).where(MetaApp.public_id == public_id))


def app_secret(meta_app: MetaApp) -> str:
    return vault().decrypt_json(meta_app.secrets_ciphertext).get("app_secret") or ""


def intake(public_id: str, inbound: InboundWebhook) -> Answer:
    meta_app = find_app(public_id)
    if meta_app is None:
        return Answer(404, {"error": "No Meta app receives webhooks at this address."})
    try:
        if inbound.method in ("GET", "HEAD"):
            challenge = verification.answer_verification(inbound, meta_app.verify_token)
            if challenge is None:
                return Answer(405, {"error": "This address takes Meta's verification GET and signed POSTs."})
            return Answer(200, challenge)
        try:
            secret = app_secret(meta_app)
        except RuntimeError:  # ENCRYPTION_KEYS lost the key: Meta retries while it is put back
            current_app.logger.error("the app secret of Meta app %s cannot be decrypted", meta_app.id)
            return Answer(503, {"error": "The app secret cannot be read right now; try again later."})
        verification.verify_signature(inbound, secret, missing=NO_APP_SECRET)
        notification = meta.parse_notification(inbound.body)
        if notification.newest and notification.newest < inbound.received_at - MAX_AGE.total_seconds():
            raise WebhookRejected("The notification is older than 7 days, longer than Meta retries: refused as a "
                                  "replay.")
    except WebhookRejected as exc:
        current_app.logger.warning("Meta webhook refused for Meta app %s: %s", meta_app.id, exc.reason)
        return Answer(exc.status, {"error": exc.reason})
    row = dict(organization_id=meta_app.organization_id, integration_id=None, meta_app_id=meta_app.id,
               provider=PROVIDER, dedup_key="sha256:" + hashlib.sha256(inbound.body).hexdigest(), url=inbound.url,
               headers={k: v for k, v in inbound.headers.items() if k in KEPT_HEADERS}, form=[],
               body=inbound.body, status="pending", received_at=utcnow(), attempts=0)
    try:
        db.session.execute(insert(WebhookEvent), row)
        db.session.commit()
    except IntegrityError:  # Meta's retry of a delivery we already hold
        db.session.rollback()
        return Answer(200, {"status": "duplicate"})
    webhooks.signal_processing()
    return Answer(200, {"status": "accepted"})


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # wamids of statuses no message has yet
    followups: inbox.Followups = field(default_factory=inbox.Followups)


def process(row: WebhookEvent) -> str:
    """Turn a claimed event (status "processing") into conversations; its new status."""
    event_id = row.id
    meta_app = db.session.get(MetaApp, row.meta_app_id)
    try:
        outcome = apply(meta_app, meta.parse_notification(row.body))
    except WebhookRejected as exc:
        db.session.rollback()
        if exc.status >= 500 and row.attempts < webhooks.MAX_PROCESSING_ATTEMPTS:  # Meta asked us to wait
            return finish(event_id, "pending", f"{exc.reason} Will try again.")
        return finish(event_id, "failed", exc.reason)
    except Exception:
        db.session.rollback()
        current_app.logger.exception("processing Meta webhook event %s crashed", event_id)
        return finish(event_id, "failed", "Processing failed unexpectedly inside Switchboard; the error was logged.")
    row = db.session.get(WebhookEvent, event_id)
    if outcome.unmatched and row.attempts < webhooks.MAX_PROCESSING_ATTEMPTS:
        # A status can arrive before the send that caused it is recorded: the sweep tries again.
        status = "pending"
        note = f"No message matches {summary(outcome.unmatched)} yet; will try again."
    else:
        status = "processed"
        note = " ".join(outcome.notes + ([f"No message matches {summary(outcome.unmatched)}."]
                                         if outcome.unmatched else [])) or None
    finish(event_id, status, note)
    inbox.queue_followups(outcome.followups)
    return status


def finish(event_id: int, status: str, note: str | None) -> str:
    row = db.session.get(WebhookEvent, event_id)
    row.status, row.error = status, note
    if status != "pending":
        row.processed_at = utcnow()
    db.session.commit()
    return status


def summary(items: list[str]) -> str:
    unique = sorted(set(items))
    return ", ".join(unique[:3]) + (f" and {len(unique) - 3} more" if len(unique) > 3 else "")


def apply(meta_app: MetaApp, notification: meta.Notification) -> Outcome:
    outcome = Outcome()
    accounts: dict[tuple[str, str], Integration | None] = {}
    ignored: set[str] = set()
    leadgen: list[meta.LeadgenChange] = []
    for event in notification.events:
        if isinstance(event, meta.LeadgenChange):
            leadgen.append(event)  # after the messages: Lead Ads commits each lead before asking Meta for it
            continue
        if isinstance(event, meta.Skipped):
            outcome.notes.append(f"Skipped {event.what}.")
            continue
        platform = "whatsapp" if isinstance(event, meta.WhatsAppStatus) else event.platform
        key = (platform, event.account_id)
        if key not in accounts:
            accounts[key] = inbox.account_for(meta_app.organization_id, platform, event.account_id)
        integration = accounts[key]
        if integration is None:
            ignored.add(f"{inbox.PLATFORM_NAMES[platform]} account {event.account_id or '(no id)'}")
            continue
        if isinstance(event, meta.ChatMessage):
            if event.direction == "in":
                inbox.receive(integration, event, outcome.followups)
            else:
                inbox.record_echo(integration, event, outcome.followups)
        elif isinstance(event, meta.MessageDeleted):
            inbox.record_deleted(integration, event)
        elif isinstance(event, meta.Delivered):
            inbox.mark_delivered(integration, event)
        elif isinstance(event, meta.Seen):
            inbox.mark_seen(integration, event)
        elif isinstance(event, meta.WhatsAppStatus):
            if not apply_status(integration, event):
                outcome.unmatched.append(event.event.provider_message_id)
    for page_id, changes in group_by_page(leadgen).items():
        page = inbox.account_for(meta_app.organization_id, "messenger", page_id)
        if page is None:
            ignored.add(f"Page {page_id or '(no id)'}")
            continue
        note = leads.receive(page, [lead_event(change.value, page_id) for change in changes])
        if note:
            outcome.notes.append(note)
    if ignored:
        outcome.notes.append(f"Ignored: {', '.join(sorted(ignored))} is not connected.")
    return outcome


def group_by_page(changes: list[meta.LeadgenChange]) -> dict[str, list[meta.LeadgenChange]]:
    pages: dict[str, list[meta.LeadgenChange]] = {}
    for change in changes:
        pages.setdefault(change.account_id, []).append(change)
    return pages


def apply_status(integration: Integration, event: meta.WhatsAppStatus) -> bool:
    """Move the inbox message and the outbound Message with this wamid; False when neither exists."""
    in_inbox = inbox.apply_whatsapp_status(integration, event)
    status = event.event
    if status.message_id and status.message_id.startswith("inbox-"):
        status = replace(status, message_id=None)  # our inbox reference names no outbound Message
    in_outbox = webhooks.apply(integration, status)
    return in_inbox or in_outbox
