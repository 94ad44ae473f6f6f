"""Outbound messages: validate a request, pick the integration, store the message, queue its delivery."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import CHANNELS, Integration, Message, MessageEvent, new_message_id, utcnow
from ..queue import task_queue
from . import integrations as svc

Errors = dict[str, list[str]]
MAX_BODY = {"email": 1_000_000, "sms": 1600, "whatsapp": 4096}
MAX_BULK = 1000
MAX_CAPTION = 1024  # WhatsApp media captions
MAX_SCHEDULE_AHEAD = timedelta(days=365)
FIELDS = {"integration_id", "channel", "to", "subject", "body", "html", "template", "media_url", "send_at",
          "idempotency_key"}
CHANNEL_ONLY = {"subject": "email", "html": "email", "template": "whatsapp", "media_url": "whatsapp"}


@dataclass
class MessageRequest:
    channel: str
    integration: Integration
    to: str
    subject: str | None
    body: str | None
    html: str | None
    template: dict[str, Any] | None
    media_url: str | None
    send_at: datetime | None
    idempotency_key: str | None


def _text(data: dict, name: str, errors: Errors, limit: int) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors[name] = ["Give text here."]
        return None
    if len(value) > limit:
        errors[name] = [f"Keep this under {limit:,} characters."]
        return None
    return value


def clean_recipient(channel: str, to: Any) -> tuple[str | None, str | None]:
    """(normalised recipient, error)."""
    if not isinstance(to, str) or not to.strip():
        return None, "Give the recipient."
    if channel == "email":
        try:
            return validate_email(to.strip(), check_deliverability=False).normalized, None
        except EmailNotValidError as exc:
            return None, f"Not a valid email address: {exc}"
    try:
        number = phonenumbers.parse(to.strip(), None)
    except phonenumbers.NumberParseException:
        return None, "Give the number in E.164 format: + and the country code, e.g. +14155552671."
    if not phonenumbers.is_valid_number(number):
        return None, "Not a valid phone number (E.164, e.g. +14155552671)."
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def _parse_send_at(value: Any) -> tuple[datetime | None, str | None]:
    if value in (None, ""):
        return None, None
    if not isinstance(value, str):
        return None, "Give an ISO 8601 date and time, e.g. 2026-12-01T09:00:00Z."
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None, "Give an ISO 8601 date and time, e.g. 2026-12-01T09:00:00Z."
    if moment.tzinfo is None:
        return None, "Give a time zone, e.g. 2026-12-01T09:00:00Z or +02:00."
    moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment - utcnow() > MAX_SCHEDULE_AHEAD:
        return None, "Schedule at most a year ahead."
    return moment, None


def _template(value: Any, errors: Errors) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        errors["template"] = ['Give {"name", "language", "parameters"}.']
        return None
    name, language, parameters = value.get("name"), value.get("language") or "en_US", value.get("parameters") or []
    problems = []
    if not isinstance(name, str) or not name.strip():
        problems.append("A template needs a name.")
    if not isinstance(language, str) or not 2 <= len(language) <= 15:
        problems.append("Give the template's language code, e.g. en_US.")
    if not isinstance(parameters, list) or not all(isinstance(p, (str, int, float)) for p in parameters):
        problems.append("Parameters are a list of values for {{1}}, {{2}}, ...")
    if problems:
        errors["template"] = problems
        return None
    return {"name": name.strip(), "language": language, "parameters": [str(p) for p in parameters]}


def _sending_integration(organization_id: int, data: dict, errors: Errors) -> Integration | None:
    integration_id, channel = data.get("integration_id"), data.get("channel")
    if integration_id is not None:
        integration = None
        if isinstance(integration_id, int) and not isinstance(integration_id, bool) and 0 < integration_id < 2**31:
            integration = svc.get_for_org(organization_id, integration_id)
        if integration is None or integration.integration_type not in CHANNELS:
            errors["integration_id"] = ["No email, SMS or WhatsApp integration with this id."]
        elif not integration.is_active:
            errors["integration_id"] = ["This integration is deactivated."]
        return integration if "integration_id" not in errors else None
    if channel not in CHANNELS:
        errors["channel"] = [f"Give integration_id, or a channel: {', '.join(CHANNELS)}."]
        return None
    integration = first_in_line(organization_id, channel)
    if integration is None:
        errors["channel"] = [f"There is no active {channel} integration: add one first."]
    return integration


def first_in_line(organization_id: int, channel: str, *, excluding: set[int] = frozenset()) -> Integration | None:
    """The active integration of the type with the lowest priority (then the oldest)."""
    query = (select(Integration).where(Integration.organization_id == organization_id,
                                       Integration.integration_type == channel, Integration.is_active.is_(True))
             .order_by(Integration.priority, Integration.id))
    if excluding:
        query = query.where(Integration.id.not_in(excluding))
    return db.session.scalars(query.limit(1)).first()


def validate_content(channel: str, data: dict, errors: Errors) -> dict[str, Any]:
    """What a message of this channel says (subject, body, html, template, media_url), checked as
    the channel needs it; problems go into errors by field."""
    for name, only in CHANNEL_ONLY.items():
        if data.get(name) not in (None, "") and channel != only:
            errors[name] = [f"Only {only} messages take {name}."]
    subject = _text(data, "subject", errors, 998)
    body = _text(data, "body", errors, MAX_BODY[channel])
    html = _text(data, "html", errors, MAX_BODY["email"])
    template = _template(data.get("template"), errors) if channel == "whatsapp" else None
    media_url = _text(data, "media_url", errors, 2000)
    if media_url and (urlsplit(media_url).scheme != "https" or not urlsplit(media_url).hostname):
        errors["media_url"] = ["Give a public https:// link to the media."]
    if channel == "email":
        if not subject and "subject" not in errors:
            errors["subject"] = ["An email needs a subject."]
        if not (body or html) and not ({"body", "html"} & set(errors)):
            errors["body"] = ["An email needs a body or html."]
    elif channel == "sms" and not body and "body" not in errors:
        errors["body"] = ["An SMS needs a body."]
    elif channel == "whatsapp":
        if not (body or template or media_url) and not errors.keys() & {"body", "template", "media_url"}:
            errors["body"] = ["A WhatsApp message needs a body, a template or a media_url."]
        elif body and template:
            errors["body"] = ["A template carries its own text: leave body empty and give parameters."]
        elif body and media_url and len(body) > MAX_CAPTION:
            errors["body"] = [f"A caption under media is at most {MAX_CAPTION:,} characters."]
    return {"subject": subject, "body": body, "html": html, "template": template, "media_url": media_url}


def validate_request(organization_id: int, data: Any) -> tuple[MessageRequest | None, Errors]:
    if not isinstance(data, dict):
        return None, {"body": ["Send a JSON object."]}
    errors: Errors = {name: ["This field is not known."] for name in sorted(set(data) - FIELDS)}
    integration = _sending_integration(organization_id, data, errors)
    channel = integration.integration_type if integration else data.get("channel")
    if channel not in CHANNELS:
        return None, errors
    to, problem = clean_recipient(channel, data.get("to"))
    if problem:
        errors["to"] = [problem]
    content = validate_content(channel, data, errors)
    send_at, problem = _parse_send_at(data.get("send_at"))
    if problem:
        errors["send_at"] = [problem]
    key = _text(data, "idempotency_key", errors, 255)
    if errors:
        return None, errors
    return MessageRequest(channel, integration, to, send_at=send_at, idempotency_key=key, **content), {}


def existing_for_key(organization_id: int, key: str | None) -> Message | None:
    if not key:
        return None
    return db.session.scalar(select(Message).where(Message.organization_id == organization_id,
                                                   Message.idempotency_key == key))


def add_event(message: Message, kind: str, description: str, *, integration_id: int | None = None,
              dedup_key: str | None = None, occurred_at: datetime | None = None) -> None:
    db.session.add(MessageEvent(message_id=message.id, kind=kind, description=description,
                                integration_id=integration_id, dedup_key=dedup_key,
                                occurred_at=occurred_at or utcnow()))


def store(organization_id: int, request: MessageRequest, *, bulk_id: str | None = None) -> Message:
    scheduled = request.send_at is not None and request.send_at > utcnow()
    message = Message(id=new_message_id(), organization_id=organization_id, integration_id=request.integration.id,
                      channel=request.channel, recipient=request.to, subject=request.subject, body=request.body,
                      html=request.html, template=request.template, media_url=request.media_url,
                      status="scheduled" if scheduled else "queued", idempotency_key=request.idempotency_key,
                      bulk_id=bulk_id, send_at=request.send_at if scheduled else None)
    db.session.add(message)
    db.session.flush()
    when = f" for {request.send_at.isoformat(timespec='seconds')}Z" if scheduled else ""
    add_event(message, message.status, f"{'Scheduled' if scheduled else 'Queued'}{when} on {request.integration.name}.",
              integration_id=request.integration.id)
    return message


def enqueue(message: Message) -> None:
    """Queue the delivery job (its id is the message's, so it is queued once). If Redis is
    down the message stays queued and the cron sweep queues it later."""
    from ..jobs.messages import DELIVERY_RETRY, deliver_message
    try:
        queue = task_queue()
        if message.status == "scheduled":
            queue.enqueue_at(message.send_at.replace(tzinfo=UTC), deliver_message, message.id, job_id=message.id,
                             retry=DELIVERY_RETRY, result_ttl=3600, failure_ttl=7 * 86400)
        else:
            queue.enqueue(deliver_message, message.id, job_id=message.id, retry=DELIVERY_RETRY,
                          result_ttl=3600, failure_ttl=7 * 86400)
    except RedisError:
        current_app.logger.warning("Redis unavailable: message %s waits for the sweep", message.id)


def create_message(organization_id: int, data: Any) -> tuple[Message | None, Errors, bool]:
    """(message, errors, created). A repeated idempotency_key returns the first message."""
    request, errors = validate_request(organization_id, data)
    if errors:
        return None, errors, False
    existing = existing_for_key(organization_id, request.idempotency_key)
    if existing:
        return existing, {}, False
    try:
        message = store(organization_id, request)
        db.session.commit()
    except IntegrityError:  # the same key, committed by a simultaneous request
        db.session.rollback()
        return existing_for_key(organization_id, request.idempotency_key), {}, False
    enqueue(message)
    return message, {}, True


def create_bulk(organization_id: int, data: Any) -> tuple[str | None, list[Message], Errors]:
    """Validate every message first; store all or none, then queue them."""
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list) or not data["messages"]:
        return None, [], {"messages": ["Give a non-empty list of messages."]}
    if len(data["messages"]) > MAX_BULK:
        return None, [], {"messages": [f"Send at most {MAX_BULK} messages in one request."]}
    shared = {k: data[k] for k in ("integration_id", "channel") if k in data}
    errors: Errors = {}
    requests = []
    for position, item in enumerate(data["messages"]):
        request, item_errors = validate_request(organization_id, {**shared, **item} if isinstance(item, dict) else item)
        for name, messages in item_errors.items():
            errors[f"messages[{position}].{name}"] = messages
        requests.append(request)
    if errors:
        return None, [], errors
    bulk_id = new_message_id()
    messages = []
    for request in requests:
        existing = existing_for_key(organization_id, request.idempotency_key)
        messages.append(existing or store(organization_id, request, bulk_id=bulk_id))
    db.session.commit()
    enqueue_batches([m for m in messages if m.bulk_id == bulk_id])
    return bulk_id, messages, {}


def enqueue_batches(messages: list[Message]) -> None:
    """Queue a bulk send in batches (scheduled ones each at its time). If Redis is down the
    messages stay queued and the sweep queues them one by one."""
    from ..jobs.messages import BATCH_RETRY, BATCH_SIZE, BATCH_TIMEOUT, deliver_batch
    now_ids = [m.id for m in messages if m.status == "queued"]
    for message in messages:
        if message.status == "scheduled":
            enqueue(message)
    try:
        queue = task_queue()
        for first in range(0, len(now_ids), BATCH_SIZE):
            queue.enqueue(deliver_batch, now_ids[first:first + BATCH_SIZE], result_ttl=600, failure_ttl=7 * 86400,
                          job_timeout=BATCH_TIMEOUT, retry=BATCH_RETRY)
    except RedisError:
        current_app.logger.warning("Redis unavailable: a bulk send waits for the sweep")


def bulk_progress(organization_id: int, bulk_id: str) -> dict[str, Any] | None:
    rows = db.session.execute(select(Message.status, func.count()).where(Message.organization_id == organization_id,
                                                                         Message.bulk_id == bulk_id)
                              .group_by(Message.status)).all()
    if not rows:
        return None
    counts = dict(rows)
    total = sum(counts.values())
    done = sum(n for status, n in counts.items() if status not in ("queued", "scheduled", "sending"))
    return {"bulk_id": bulk_id, "total": total, "done": done, "by_status": counts}


def get_for_org(organization_id: int, message_id: str) -> Message | None:
    return db.session.scalar(select(Message).where(Message.organization_id == organization_id,
                                                   Message.id == message_id))


def serialize(message: Message, *, with_events: bool = True) -> dict[str, Any]:
    data = {
        "id": message.id, "status": message.status, "channel": message.channel, "to": message.recipient,
        "integration_id": message.integration_id, "subject": message.subject, "body": message.body,
        "html": message.html, "template": message.template, "media_url": message.media_url,
        "provider_message_id": message.provider_message_id, "attempts": message.attempts,
        "last_error": message.last_error, "idempotency_key": message.idempotency_key, "bulk_id": message.bulk_id,
        "send_at": svc.isoformat(message.send_at), "sent_at": svc.isoformat(message.sent_at),
        "created_at": svc.isoformat(message.created_at), "updated_at": svc.isoformat(message.updated_at),
    }
    if with_events:
        data["events"] = [{"kind": e.kind, "description": e.description, "integration_id": e.integration_id,
                           "occurred_at": svc.isoformat(e.occurred_at)} for e in message.events]
    return data
