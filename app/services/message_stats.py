"""What the integration pages show of outbound work: the outbox, a message's timeline, the
webhook inspector's rows, and delivery rates by day.

Everything here reads; sending is app/services/messaging.py and webhook processing
app/services/webhooks.py. Every query starts from an integration the caller already scoped
to the organisation (views use `_owned`), so the integration's id alone selects.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Iterable
from urllib.parse import parse_qsl

from sqlalchemy import Date, func, select

from ..extensions import db
from ..models import MESSAGE_STATUSES, WEBHOOK_STATUSES, Integration, Message, MessageEvent, WebhookEvent, utcnow

# Pages showing messages refresh themselves while a message may still change: every 2 s while
# the job has it (queued, sending) or its delivery receipt is due (sent in the last few minutes),
# every 15 s while it may change later but not soon (a scheduled send, a receipt that is late, an
# email not yet opened or clicked, a WhatsApp message not yet read), and not at all once every
# shown message is final. Without status webhooks (SMTP) nothing changes after sent.
FAST_POLL_SECONDS = 2
SLOW_POLL_SECONDS = 15
RECEIPT_EXPECTED_WITHIN = timedelta(minutes=10)
LATER_CHANGES = {"email": ("delivered", "opened"), "sms": (), "whatsapp": ("delivered",)}

# Rates (see RATE_DEFINITIONS for the words on the page). Statuses only move forward
# (webhooks.moves_forward), so a message's current status says how far it got.
DELIVERED_OR_BEYOND = ("delivered", "opened", "clicked", "read")
OPENED_OR_BEYOND = ("opened", "clicked", "read")
CLICKED = ("clicked",)
BOUNCED = ("bounced",)
RATE_DEFINITIONS = {
    "delivery": "delivered ÷ accepted: messages the provider confirmed as delivered (or later opened, read or "
                "clicked) out of the messages it accepted.",
    "open": "opened ÷ delivered: delivered messages later opened (email) or read (WhatsApp).",
    "click": "clicked ÷ delivered: delivered messages with at least one tracked link click.",
    "bounce": "bounced ÷ accepted: accepted messages the recipient's server or network sent back.",
}
STATS_DAYS = 14
RATES = ("delivery", "open", "click", "bounce")
# What each channel can report: an SMS is never opened or clicked as far as any provider
# says, and WhatsApp reports reads (counted as opens) but no clicks.
TRACKED_RATES = {"email": RATES, "sms": ("delivery", "bounce"), "whatsapp": ("delivery", "open", "bounce")}


def poll_seconds(messages: Iterable[Message], *, receipts: bool = True) -> int | None:
    """How often a page showing these messages refreshes; None: it need not, all are final.
    `receipts`: the integration's provider reports statuses through webhooks."""
    now, interval = utcnow(), None
    for message in messages:
        status = message.status
        if status in ("queued", "sending"):
            return FAST_POLL_SECONDS
        if status == "sent" and receipts:
            if message.sent_at is not None and now - message.sent_at < RECEIPT_EXPECTED_WITHIN:
                return FAST_POLL_SECONDS
            interval = SLOW_POLL_SECONDS
        elif status == "scheduled" or (receipts and status in LATER_CHANGES.get(message.channel, ())):
            interval = SLOW_POLL_SECONDS
    return interval


def is_sending_integration(integration: Integration) -> bool:
    from .integrations import SENDING_TYPES
    return integration.integration_type in SENDING_TYPES


# ---- the outbox -------------------------------------------------------------------------

OUTBOX_SIZE = 10


def messages_query(integration: Integration, status: str | None = None):
    """The integration's messages, newest first (served by ix_messages_integration_created)."""
    query = select(Message).where(Message.integration_id == integration.id)
    if status in MESSAGE_STATUSES:
        query = query.where(Message.status == status)
    return query.order_by(Message.created_at.desc(), Message.id.desc())


def recent_messages(integration: Integration, limit: int = OUTBOX_SIZE) -> list[Message]:
    return list(db.session.scalars(messages_query(integration).limit(limit)))


def outbox_version(messages: list[Message]) -> str:
    """Changes whenever a shown row changes (or a new one arrives), so a poll that brings the
    version it last saw gets an empty answer when nothing changed."""
    return _digest((m.id, m.status, m.attempts, m.updated_at) for m in messages)


def message_for(integration: Integration, message_id: str) -> Message | None:
    """The message if this integration sends (or sent) it; None otherwise (views answer 404)."""
    if not isinstance(message_id, str) or len(message_id) > 32:
        return None
    return db.session.scalar(select(Message).where(Message.id == message_id,
                                                   Message.integration_id == integration.id,
                                                   Message.organization_id == integration.organization_id))


def message_version(message: Message) -> str:
    """Changes when the message or its timeline changes (an event that moves no status too)."""
    last_event = db.session.scalar(select(func.max(MessageEvent.id)).where(MessageEvent.message_id == message.id))
    return _digest([(message.status, message.attempts, message.updated_at, last_event)])


def _digest(rows: Iterable[tuple]) -> str:
    return hashlib.sha256(repr(list(rows)).encode()).hexdigest()[:16]


# ---- the webhook inspector ----------------------------------------------------------------

def webhook_events_query(integration: Integration, status: str | None = None):
    """Newest first (served by ix_webhook_events_integration_id_id)."""
    query = select(WebhookEvent).where(WebhookEvent.integration_id == integration.id)
    if status in WEBHOOK_STATUSES:
        query = query.where(WebhookEvent.status == status)
    return query.order_by(WebhookEvent.id.desc())


PAYLOAD_DISPLAY_LIMIT = 20_000


def display_payload(row: WebhookEvent) -> str:
    """The redacted payload, easy to read: JSON indented, form fields one a line, cut at a limit."""
    from .webhooks import redacted_payload
    text = redacted_payload(row)
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        if row.form:
            text = "\n".join(f"{key} = {value}" for key, value in parse_qsl(text, keep_blank_values=True)) or text
    if len(text) > PAYLOAD_DISPLAY_LIMIT:
        text = text[:PAYLOAD_DISPLAY_LIMIT] + f"\n… {len(text) - PAYLOAD_DISPLAY_LIMIT:,} more characters"
    return text


def webhook_event_for(integration: Integration, event_id: int) -> WebhookEvent | None:
    return db.session.scalar(select(WebhookEvent).where(WebhookEvent.id == event_id,
                                                        WebhookEvent.integration_id == integration.id))


# ---- delivery rates by day ------------------------------------------------------------------

@dataclass
class DayStats:
    day: date
    total: int = 0  # messages created that day, whatever became of them
    accepted: int = 0  # the provider took them (sent_at set), sandboxed ones excluded
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def rates(self) -> dict[str, float | None]:
        """Each rate as a fraction, or None when there is nothing to divide by."""
        return {"delivery": _ratio(self.delivered, self.accepted), "open": _ratio(self.opened, self.delivered),
                "click": _ratio(self.clicked, self.delivered), "bounce": _ratio(self.bounced, self.accepted)}

    def add(self, status: str, count: int, with_sent_at: int) -> None:
        self.total += count
        self.by_status[status] = self.by_status.get(status, 0) + count
        if status != "sandboxed":
            self.accepted += with_sent_at
        if status in DELIVERED_OR_BEYOND:
            self.delivered += count
        if status in OPENED_OR_BEYOND:
            self.opened += count
        if status in CLICKED:
            self.clicked += count
        if status in BOUNCED:
            self.bounced += count
        if status == "failed":
            self.failed += count


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class DeliveryStats:
    days: list[DayStats]
    totals: DayStats
    tracked: tuple[str, ...] = RATES  # the rates this integration's channel reports

    @property
    def empty(self) -> bool:
        return self.totals.total == 0

    @property
    def peak(self) -> int:
        return max((d.total for d in self.days), default=0)

    def series(self, rate: str) -> list[list[tuple[int, float]]]:
        """One rate's line for a chart: runs of (day index, rate), broken where a day has no rate."""
        runs: list[list[tuple[int, float]]] = [[]]
        for index, day in enumerate(self.days):
            value = day.rates[rate]
            if value is None:
                if runs[-1]:
                    runs.append([])
            else:
                runs[-1].append((index, value))
        return [run for run in runs if run]


def delivery_stats(integration: Integration, days: int = STATS_DAYS, *, today: date | None = None) -> DeliveryStats:
    """Counts by day (UTC, by when the message was created) and status, over the last `days` days.

    One grouped query on (integration_id, created_at). date() is SQLite's and PostgreSQL's
    both (SQLite answers text, PostgreSQL a date; the Date type reads either), and
    count(sent_at) counts the messages a provider accepted without a CASE, so no bound
    parameter repeats between SELECT and GROUP BY (PostgreSQL would refuse that).
    """
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min)
    day = func.date(Message.created_at, type_=Date)
    rows = db.session.execute(
        select(day.label("day"), Message.status, func.count(), func.count(Message.sent_at))
        .where(Message.integration_id == integration.id, Message.created_at >= start)
        .group_by(day, Message.status)
    ).all()
    buckets = {first + timedelta(days=i): DayStats(first + timedelta(days=i)) for i in range(days)}
    totals = DayStats(today)
    for when, status, count, with_sent_at in rows:
        when = date.fromisoformat(when) if isinstance(when, str) else when
        if when in buckets:
            buckets[when].add(status, count, with_sent_at)
            totals.add(status, count, with_sent_at)
    return DeliveryStats(days=list(buckets.values()), totals=totals,
                         tracked=TRACKED_RATES.get(integration.integration_type, RATES))
