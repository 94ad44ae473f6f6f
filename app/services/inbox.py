"""The unified inbox: conversations with people on Messenger, Instagram and WhatsApp, their
messages in and out, replies within each platform's window, templates, read state, sync and the
daily figures. Meta's wire format stays in providers/meta_messaging.py; webhooks arrive through
services/meta_webhooks.py, which calls the `receive`/`record_*`/`apply_*` functions below.

What the inbox pages call
-------------------------
- `conversations_query(org_id, channel=, integration_id=, search=)` newest first (a select for
  db.paginate), `get_for_org(org_id, id)` (None for other organisations: answer 404),
  `messages_of(conversation, before=None, limit=50)` oldest first, `serialize_conversation`,
  `serialize_message`.
- `window(conversation)` → Window: state "open" | "human_agent" | "template_only" | "closed",
  `closes_at` (when free replies stop), `needs_template`, `human_agent_until`, `reason` (why a free
  reply is refused, None when it is allowed); `serialize_window` for JSON.
- `send_reply(conversation, user, data, upload=None)` → (message, errors by field, refusal): data
  is {"text"} | {"template": {"name", "language", "parameters"}} | {"media_url"} (WhatsApp also
  takes "text" with media as the caption); `upload` is an Upload(data, filename, mime_type). A
  refusal (the window, a disconnected account) is a sentence to show, HTTP 409 in the API.
- `approved_templates(integration)`, `request_template_sync(integration)` ("sync templates").
- `open_conversation(conversation)` when a person opens it: unread back to 0, and a job marks it
  read at the provider.
- `request_sync(integration)` ("sync now"), `daily_stats(org_id, days)` (the chart).
- Live pages poll two change signals, each one cheap indexed query, and answer 204 while they are
  unchanged:
    `inbox_version(org_id, channel=, integration_id=, search=, page=1, per_page=50)` → a short
        string that changes whenever anything shown on that page of the list changes (a new
        message moves a conversation to the top; unread counts, previews, names, ticks);
    `conversation_version(org_id, conversation_id)` → a short string that changes whenever the
        conversation or any of its messages changes (new messages, statuses, media stored,
        read state); None when the conversation is not the organisation's.
  Both rest on Conversation.updated_at, which every change below touches.

Decisions
---------
- Contacts: a WhatsApp conversation links to the contact with the phone +<wa_id> (upserted, named
  from the webhook's profile). A Messenger or Instagram conversation gets a contact of its own
  when it starts (custom fields `messenger_psid` + `facebook_page_id`, or `instagram_id`), named
  once the profile job has read the person's name; PSIDs and IGSIDs are per account, so the same
  person on two Pages is two contacts until staff merge them.
- Uploaded media: sent to WhatsApp by media upload (POST /<phone_number_id>/media, then by id), so
  it works even when this server is not reachable from the internet; to Messenger and Instagram by
  link to a signed, expiring address of the file (storage.shared_url), which Meta fetches.
- Outbound messages count in the daily figures once sent (sent, delivered or read).
"""
from __future__ import annotations

import hashlib
import mimetypes
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from redis.exceptions import RedisError
from rq.job import Job
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db
from ..models import (
    Contact,
    Conversation,
    ConversationMessage,
    Integration,
    MessageTemplate,
    Organization,
    PlatformDailyStat,
    User,
    utcnow,
)
from ..providers import meta_messaging as meta
from ..providers.base import GiveUp, OutboundMessage, ProviderError, RetryLater, UseAnotherProvider
from ..providers.meta import TOKEN_REFUSED
from ..providers.whatsapp.cloud_api import media_type as whatsapp_link_type
from ..queue import redis_connection, task_queue
from ..storage import NotStored, StorageError, storage
from . import contacts
from . import integrations as svc
from .integrations import isoformat

Errors = dict[str, list[str]]
PLATFORMS = ("messenger", "instagram", "whatsapp")
CHANNEL_OF_TYPE = {"facebook": "messenger", "instagram": "instagram", "whatsapp": "whatsapp"}
TYPE_OF_CHANNEL = {channel: kind for kind, channel in CHANNEL_OF_TYPE.items()}
PLATFORM_NAMES = {"messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp"}
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
MAX_TEXT = {"messenger": 2000, "instagram": 1000, "whatsapp": 4096}  # Instagram's limit is in UTF-8 bytes
MAX_CAPTION = 1024
MAX_URL = 2000
PREVIEW = 200
PER_PAGE = 50
# An outbound message's status only moves forward; "failed" ends it unless it was already read.
PROGRESS = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}
MAX_SEND_ATTEMPTS = 5
SEND_RETRY_INTERVALS = [10, 30, 90, 270]
MAX_MEDIA_ATTEMPTS = 4
MEDIA_RETRY_INTERVALS = [15, 60, 300]
MEDIA_KEEPS_DAYS = 7  # WhatsApp's inbound media ids live 7 days; a download still pending after that is lost
LOST_JOB_AFTER = timedelta(minutes=2)
INTERRUPTED_AFTER = timedelta(minutes=10)
SYNC_MARGIN = timedelta(minutes=10)  # re-read a little before the last sync: Meta's lists lag
SYNC_PAGES = 4  # conversations pages (25 each) per sync
SYNC_LOCK_SECONDS = 600
INTERRUPTED = ("The worker stopped while sending. Meta may have accepted it, so it was not sent again "
               "(no duplicates); its status will still update it.")


class TryAgain(Exception):
    """Raised inside a job so that RQ's Retry runs it again later (with backoff)."""


# --- accounts ---------------------------------------------------------------------------------------

def channel_of(integration: Integration) -> str | None:
    return CHANNEL_OF_TYPE.get(integration.integration_type)


def account_for(organization_id: int, platform: str, external_id: str) -> Integration | None:
    """The connected Page, Instagram account or WhatsApp number Meta names by its id."""
    if not external_id or platform not in TYPE_OF_CHANNEL:
        return None
    return db.session.scalar(select(Integration).where(
        Integration.organization_id == organization_id, Integration.integration_type == TYPE_OF_CHANNEL[platform],
        Integration.external_id == external_id).order_by(Integration.id).limit(1))


def token_of(integration: Integration) -> str:
    secrets = svc.get_secrets(integration)
    return secrets.get("access_token" if integration.integration_type == "whatsapp" else "page_access_token") or ""


def whatsapp_config(integration: Integration) -> dict:
    config = dict(integration.config or {})
    config["phone_number_id"] = config.get("phone_number_id") or integration.external_id
    return config


def page_id_of(integration: Integration) -> str | None:
    """The Page whose conversations list holds this account's threads."""
    if integration.integration_type == "instagram":
        return (integration.config or {}).get("page_id")
    return integration.external_id


def settings():
    return svc.provider_settings()


# --- conversations and contacts ---------------------------------------------------------------------

@dataclass
class Followups:
    """Work for jobs once the caller has committed: profile names, media downloads."""

    profiles: set[int] = field(default_factory=set)
    media: set[int] = field(default_factory=set)


def clamp(moment: float | None) -> datetime:
    """Meta's time of an event as our naive UTC, never in the future (clocks differ)."""
    now = utcnow()
    if moment is None:
        return now
    try:
        seen = datetime.fromtimestamp(moment, UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return now
    return min(seen, now)


def unix(moment: datetime) -> float:
    """Our naive UTC as Unix seconds."""
    return moment.replace(tzinfo=UTC).timestamp()


def conversation_for(integration: Integration, user_id: str, moment: datetime,
                     followups: Followups, name: str | None = None) -> Conversation:
    """The conversation with this person on this account, started (with its contact) if new.
    Two workers starting it at once make one: the insert runs in a SAVEPOINT and a unique
    violation means the other one won."""
    query = select(Conversation).where(Conversation.integration_id == integration.id,
                                       Conversation.external_user_id == user_id)
    conversation = db.session.scalar(query)
    if conversation is not None:
        if name and not conversation.name:
            conversation.name = name[:200]
        return conversation
    try:
        with db.session.begin_nested():
            conversation = Conversation(organization_id=integration.organization_id, integration_id=integration.id,
                                        channel=channel_of(integration), external_user_id=user_id[:64],
                                        name=name[:200] if name else None, last_message_at=moment, unread_count=0)
            db.session.add(conversation)
            db.session.flush()
    except IntegrityError:
        return db.session.scalar(query)
    link_contact(conversation, integration, name)
    if conversation.channel != "whatsapp":
        followups.profiles.add(conversation.id)
    return conversation


def link_contact(conversation: Conversation, integration: Integration, name: str | None) -> None:
    """A new conversation's contact: by phone on WhatsApp, a contact of its own elsewhere."""
    platform = PLATFORM_NAMES[conversation.channel]
    contact = None
    if conversation.channel == "whatsapp":
        contact, _, errors = contacts.upsert_contact(conversation.organization_id,
                                                     {"phone": "+" + conversation.external_user_id, "name": name},
                                                     source="whatsapp")
        if errors:  # not a number phonenumbers accepts (test numbers): the conversation stands alone
            return
    else:
        key = "messenger_psid" if conversation.channel == "messenger" else "instagram_id"
        fields = {key: conversation.external_user_id}
        if conversation.channel == "messenger":
            fields["facebook_page_id"] = integration.external_id
        contact = Contact(organization_id=conversation.organization_id, fields=fields, source=conversation.channel)
        db.session.add(contact)
        db.session.flush()
        contacts.add_event(contact, "created", f"Created from a new {platform} conversation.",
                           {"source": conversation.channel})
    conversation.contact_id = contact.id
    contacts.add_event(contact, "conversation", f"Started a {platform} conversation with {integration.name}.",
                       {"conversation_id": conversation.id, "channel": conversation.channel})


def touch(conversation_id: int) -> None:
    """Something visible in the conversation changed: its version moves (see conversation_version)."""
    db.session.execute(update(Conversation).where(Conversation.id == conversation_id).values(updated_at=utcnow())
                       .execution_options(synchronize_session=False))


def note_message(conversation: Conversation, moment: datetime, preview: str, *, inbound: bool, unread: bool) -> None:
    """Move the conversation's last message, window and unread count, in one UPDATE that only moves
    times forward and counts with the database (two workers at once lose nothing)."""
    newer = or_(Conversation.last_message_at.is_(None), Conversation.last_message_at <= moment)
    values: dict[str, Any] = {
        "last_message_at": case((newer, moment), else_=Conversation.last_message_at),
        "last_message_preview": case((newer, preview[:PREVIEW]), else_=Conversation.last_message_preview),
        "updated_at": utcnow(),
    }
    if inbound:
        later = or_(Conversation.last_inbound_at.is_(None), Conversation.last_inbound_at < moment)
        values["last_inbound_at"] = case((later, moment), else_=Conversation.last_inbound_at)
    if unread:
        values["unread_count"] = Conversation.unread_count + 1
    db.session.execute(update(Conversation).where(Conversation.id == conversation.id).values(**values)
                       .execution_options(synchronize_session=False))
    db.session.expire(conversation)


def preview_of(direction: str, text: str) -> str:
    text = " ".join((text or "").split())
    return f"You: {text}" if direction == "out" else text


def media_of(attachment: meta.Attachment) -> dict[str, Any]:
    media: dict[str, Any] = {"type": attachment.type, "status": "pending"}
    for name in ("url", "mime_type", "filename", "caption", "sha256"):
        value = getattr(attachment, name)
        if value:
            media[name] = value
    if attachment.media_id:
        media["provider_media_id"] = attachment.media_id
    if not attachment.url and not attachment.media_id:
        media.update(status="failed", error="Meta sent no address for this file.")
    return media


def store_message(integration: Integration, conversation: Conversation, *, provider_message_id: str | None,
                  direction: str, kind: str, text: str, moment: datetime, status: str,
                  media: dict | None = None, template: dict | None = None,
                  sent_by: User | None = None) -> ConversationMessage | None:
    """Insert a message; None when one with this provider id is already stored (a webhook's retry,
    the same mid in another notification, a sync that sees it again)."""
    if provider_message_id and db.session.scalar(select(ConversationMessage.id).where(
            ConversationMessage.integration_id == integration.id,
            ConversationMessage.provider_message_id == provider_message_id)):
        return None
    try:
        with db.session.begin_nested():
            message = ConversationMessage(
                organization_id=integration.organization_id, conversation_id=conversation.id,
                integration_id=integration.id, direction=direction, kind=kind[:20], text=text,
                media=media, template=template, provider_message_id=provider_message_id, status=status,
                sent_by_id=sent_by.id if sent_by else None, attempts=0, created_at=moment)
            db.session.add(message)
            db.session.flush()
    except IntegrityError:
        return None
    return message


def receive(integration: Integration, event: meta.ChatMessage, followups: Followups, *,
            counts_unread: bool = True) -> int:
    """A person's message (and each further attachment of it as a message of its own, so every
    message holds one file). Returns how many were new."""
    moment = clamp(event.timestamp)
    conversation = conversation_for(integration, event.user_id, moment, followups, event.user_name)
    parts = list(event.attachments) or [None]
    added = 0
    for index, attachment in enumerate(parts):
        mid = event.message_id if index == 0 else f"{event.message_id}#{index + 1}"
        text = event.text if index == 0 else meta.describe_attachment(attachment)
        message = store_message(integration, conversation, provider_message_id=mid[:255], direction="in",
                                kind=attachment.type if attachment else event.kind, text=text, moment=moment,
                                status="received", media=media_of(attachment) if attachment else None)
        if message is None:
            continue
        added += 1
        if message.media and message.media.get("status") == "pending":
            followups.media.add(message.id)
        note_message(conversation, moment, preview_of("in", text), inbound=True, unread=counts_unread)
    return added


def our_message(integration: Integration, reference: str | None) -> ConversationMessage | None:
    """Our outbound message named by the reference our send attached ("inbox-<id>")."""
    if not reference or not reference.startswith("inbox-") or not reference[6:].isdigit() \
            or int(reference[6:]) >= 2**31:
        return None
    return db.session.scalar(select(ConversationMessage).where(
        ConversationMessage.id == int(reference[6:]), ConversationMessage.integration_id == integration.id,
        ConversationMessage.direction == "out"))


def record_echo(integration: Integration, event: meta.ChatMessage, followups: Followups) -> int:
    """The account's own message seen by Meta: one we sent (known by its mid, or by the metadata
    our send attached), or one sent from Meta's own inbox, stored as outbound once."""
    found = db.session.scalar(select(ConversationMessage).where(
        ConversationMessage.integration_id == integration.id,
        ConversationMessage.provider_message_id == event.message_id))
    if found is None:
        found = our_message(integration, event.metadata)
        if found is not None and not found.provider_message_id:
            found.provider_message_id = event.message_id
    if found is not None:
        if advance(found, "sent"):
            touch(found.conversation_id)
        return 0
    moment = clamp(event.timestamp)
    conversation = conversation_for(integration, event.user_id, moment, followups)
    attachment = event.attachments[0] if event.attachments else None
    message = store_message(integration, conversation, provider_message_id=event.message_id, direction="out",
                            kind=event.kind, text=event.text, moment=moment, status="sent",
                            media=media_of(attachment) if attachment else None)
    if message is None:
        return 0
    if message.media and message.media.get("status") == "pending":
        followups.media.add(message.id)
    note_message(conversation, moment, preview_of("out", event.text), inbound=False, unread=False)
    return 1


def record_deleted(integration: Integration, event: meta.MessageDeleted) -> bool:
    """The person deleted their message: its words and file go; a trace stays."""
    message = db.session.scalar(select(ConversationMessage).where(
        ConversationMessage.integration_id == integration.id,
        ConversationMessage.provider_message_id == event.message_id))
    if message is None:
        return False
    key = (message.media or {}).get("storage_key")
    message.kind, message.text, message.media = "deleted", "(deleted by the sender)", None
    if key:
        try:
            storage().delete(key)
        except StorageError as exc:
            current_app.logger.warning("could not delete media of deleted message %s: %s", message.id, exc)
    touch(message.conversation_id)
    return True


def advance(message: ConversationMessage, status: str, error: str | None = None) -> bool:
    """Move an outbound message's status forward (never back); True if it changed."""
    current = message.status
    if status == "failed":
        if current in ("failed", "read"):
            return False
        message.status, message.error = "failed", error or message.error
        return True
    if current == "failed" and not message.provider_message_id:
        current = "sending"  # a failure we assumed (an interrupted send) yields to what Meta says
    elif current == "failed":
        return False
    if PROGRESS.get(status, -1) <= PROGRESS.get(current, -1):
        return False
    message.status = status
    if status in ("sent", "delivered", "read"):
        message.error = None
    return True


def apply_whatsapp_status(integration: Integration, event: meta.WhatsAppStatus) -> bool:
    """A status webhook for a message of an inbox conversation; False when none has this wamid."""
    status = event.event
    message = db.session.scalar(select(ConversationMessage).where(
        ConversationMessage.integration_id == integration.id,
        ConversationMessage.provider_message_id == status.provider_message_id))
    if message is None:
        message = our_message(integration, status.message_id)
        if message is None:
            return False
        if not message.provider_message_id:  # the status came before our send recorded the wamid
            message.provider_message_id = status.provider_message_id
    if status.status and advance(message, status.status, status.description):
        touch(message.conversation_id)
    return True


def outbound_of(conversation_id: int, up_to: datetime | None, statuses: tuple[str, ...]):
    query = select(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id,
                                              ConversationMessage.direction == "out",
                                              ConversationMessage.status.in_(statuses))
    return query.where(ConversationMessage.created_at <= up_to) if up_to else query


def conversation_of_user(integration: Integration, user_id: str) -> Conversation | None:
    return db.session.scalar(select(Conversation).where(Conversation.integration_id == integration.id,
                                                        Conversation.external_user_id == user_id))


def mark_delivered(integration: Integration, event: meta.Delivered) -> int:
    """Messenger deliveries: the mids named, and every message sent before the watermark."""
    conversation = conversation_of_user(integration, event.user_id)
    if conversation is None:
        return 0
    moved = 0
    if event.message_ids:
        named = db.session.scalars(select(ConversationMessage).where(
            ConversationMessage.integration_id == integration.id,
            ConversationMessage.provider_message_id.in_(event.message_ids[:100]))).all()
        moved += sum(advance(m, "delivered") for m in named)
    if event.watermark:
        moved += sum(advance(m, "delivered") for m in db.session.scalars(
            outbound_of(conversation.id, clamp(event.watermark), ("sent",))))
    if moved:
        touch(conversation.id)
    return moved


def mark_seen(integration: Integration, event: meta.Seen) -> int:
    """The person read our messages: up to the watermark (Messenger) or up to a message (Instagram)."""
    conversation = conversation_of_user(integration, event.user_id)
    if conversation is None:
        return 0
    up_to = clamp(event.watermark) if event.watermark else None
    if event.message_id and up_to is None:
        named = db.session.scalar(select(ConversationMessage).where(
            ConversationMessage.integration_id == integration.id,
            ConversationMessage.provider_message_id == event.message_id))
        up_to = named.created_at if named else utcnow()
    moved = sum(advance(m, "read") for m in db.session.scalars(
        outbound_of(conversation.id, up_to or utcnow(), ("sent", "delivered"))))
    if moved:
        touch(conversation.id)
    return moved


# --- the window -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    state: str  # open, human_agent, template_only or closed
    closes_at: datetime | None  # when replies of the current kind stop being allowed
    reason: str | None  # why a free reply is refused; None when one is allowed
    messaging_type: str | None = None  # Messenger and Instagram: RESPONSE or MESSAGE_TAG
    tag: str | None = None
    human_agent_until: datetime | None = None

    @property
    def needs_template(self) -> bool:
        return self.state == "template_only"


def window(conversation: Conversation, now: datetime | None = None) -> Window:
    now = now or utcnow()
    last = conversation.last_inbound_at
    who = conversation.name or "this person"
    platform = PLATFORM_NAMES[conversation.channel]
    if conversation.channel == "whatsapp":
        if last is not None and now - last < STANDARD_WINDOW:
            return Window("open", last + STANDARD_WINDOW, None)
        since = (f"More than 24 hours have passed since {who} last wrote" if last
                 else f"{who[0].upper() + who[1:]} has not written to this number yet")
        return Window("template_only", None, f"{since}, so WhatsApp only allows an approved template message: "
                                             "choose a template.")
    if last is not None and now - last < STANDARD_WINDOW:
        return Window("open", last + STANDARD_WINDOW, None, "RESPONSE", None, last + HUMAN_AGENT_WINDOW)
    if last is not None and now - last < HUMAN_AGENT_WINDOW:
        return Window("human_agent", last + HUMAN_AGENT_WINDOW, None, "MESSAGE_TAG", "HUMAN_AGENT",
                      last + HUMAN_AGENT_WINDOW)
    if last is None:
        return Window("closed", None, f"{who[0].upper() + who[1:]} has not written to this account, and {platform} "
                                      "does not let a business write first.")
    return Window("closed", None, f"{platform} allows replies only within 7 days of the person's last message "
                                  f"(with the human agent tag after 24 hours); {who} last wrote on "
                                  f"{last:%Y-%m-%d %H:%M} UTC. Wait until they write again.")


def serialize_window(value: Window) -> dict[str, Any]:
    return {"state": value.state, "open": value.reason is None, "closes_at": isoformat(value.closes_at),
            "needs_template": value.needs_template, "human_agent_until": isoformat(value.human_agent_until),
            "reason": value.reason}


# --- replies -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str
    mime_type: str


REPLY_FIELDS = {"text", "template", "media_url"}
SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


def _clean_template(integration: Integration, value: Any, errors: Errors) -> tuple[dict | None, str]:
    """The template request checked against the synced, approved templates; its filled-in body."""
    if not isinstance(value, dict):
        errors["template"] = ['Give {"name", "language", "parameters"}.']
        return None, ""
    name, language, parameters = value.get("name"), value.get("language"), value.get("parameters", [])
    problems = []
    if not isinstance(name, str) or not name.strip():
        problems.append("A template needs a name.")
    if not isinstance(language, str) or not language.strip():
        problems.append("Give the template's language code, e.g. en_US.")
    if not isinstance(parameters, list) or not all(isinstance(p, (str, int, float)) and not isinstance(p, bool)
                                                   for p in parameters):
        problems.append("Parameters are a list of values for {{1}}, {{2}}, ...")
    elif any(len(str(p)) > 1024 for p in parameters):
        problems.append("Keep each parameter under 1,024 characters.")
    if problems:
        errors["template"] = problems
        return None, ""
    template = db.session.scalar(select(MessageTemplate).where(
        MessageTemplate.integration_id == integration.id, MessageTemplate.name == name.strip(),
        MessageTemplate.language == language.strip()))
    if template is None or template.status != "APPROVED":
        state = f"is {template.status.lower()}, not approved" if template else "is not among the synced templates"
        errors["template"] = [f"The template {name.strip()} ({language.strip()}) {state}: choose an approved "
                              "template, or sync templates if it was approved lately."]
        return None, ""
    given = [str(p) for p in parameters]
    if len(given) != template.parameter_count:
        errors["template"] = [f"The template {template.name} takes {template.parameter_count} "
                              f"parameter{'s' if template.parameter_count != 1 else ''}; {len(given)} given."]
        return None, ""
    filled = meta.fill_body(template.components or [], given) or f"Template {template.name}"
    return {"name": template.name, "language": template.language, "parameters": given}, filled


def validate_reply(conversation: Conversation, integration: Integration, data: Any,
                   upload: Upload | None) -> tuple[dict[str, Any], Errors]:
    """What the reply holds (kind, text, media, template), or errors by field."""
    if not isinstance(data, dict):
        return {}, {"body": ["Send a JSON object."]}
    errors: Errors = {name: ["This field is not known."] for name in sorted(set(data) - REPLY_FIELDS)}
    channel = conversation.channel
    text = data.get("text")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        errors["text"] = ["Give the text of the message."]
        text = None
    elif isinstance(text, str):
        text = text.strip()
        size = len(text.encode()) if channel == "instagram" else len(text)
        if size > MAX_TEXT[channel]:
            unit = "bytes" if channel == "instagram" else "characters"
            errors["text"] = [f"{PLATFORM_NAMES[channel]} takes at most {MAX_TEXT[channel]:,} {unit} of text."]
    media_url = data.get("media_url")
    if media_url is not None:
        parts = urlsplit(media_url) if isinstance(media_url, str) else None
        if not isinstance(media_url, str) or len(media_url) > MAX_URL or parts.scheme != "https" or not parts.hostname:
            errors["media_url"] = ["Give a public https:// link to the media."]
            media_url = None
    given = [name for name, value in (("text", text), ("template", data.get("template")), ("media_url", media_url),
                                      ("upload", upload)) if value not in (None, "")]
    media_given = [g for g in given if g in ("media_url", "upload")]
    if errors:
        return {}, errors
    if not given:
        return {}, {"text": ["Give text, a template or media."]}
    if len(media_given) > 1 or ("template" in given and len(given) > 1):
        return {}, {given[-1]: ["Send one thing at a time: text, a template or media."]}
    if "text" in given and media_given and channel != "whatsapp":
        return {}, {"text": [f"{PLATFORM_NAMES[channel]} media carries no caption: send the text on its own."]}
    if "text" in given and media_given and len(text) > MAX_CAPTION:
        return {}, {"text": [f"A caption under media is at most {MAX_CAPTION:,} characters."]}
    if "template" in given:
        if channel != "whatsapp":
            return {}, {"template": ["Templates are for WhatsApp conversations only."]}
        template, filled = _clean_template(integration, data["template"], errors)
        if errors:
            return {}, errors
        return {"kind": "template", "text": filled, "template": template, "media": None}, {}
    if "media_url" in given:
        kind = whatsapp_link_type(media_url) if channel == "whatsapp" else meta.attachment_type(media_url)
        media = {"type": kind, "url": media_url, "status": "link"}
        if text:
            media["caption"] = text
        return {"kind": kind, "text": text or meta.KIND_WORDS.get(kind, "File"), "template": None, "media": media}, {}
    if upload is not None:
        return _clean_upload(conversation, upload, text)
    return {"kind": "text", "text": text, "template": None, "media": None}, {}


def _clean_upload(conversation: Conversation, upload: Upload, caption: str | None) -> tuple[dict, Errors]:
    limit = current_app.config["MEDIA_MAX_BYTES"]
    if not upload.data:
        return {}, {"upload": ["The file is empty."]}
    if len(upload.data) > limit:
        return {}, {"upload": [f"The file is larger than the {meta.size_words(limit)} limit."]}
    mime_type = (upload.mime_type or "").split(";")[0].strip().lower()
    if not re.fullmatch(r"[a-z]+/[a-z0-9.+\-]+", mime_type):
        mime_type = mimetypes.guess_type(upload.filename or "")[0] or "application/octet-stream"
    filename = SAFE_NAME.sub("_", (upload.filename or "file").rsplit("/", 1)[-1])[:120].strip() or "file"
    kind = (meta.whatsapp_media_kind(mime_type) if conversation.channel == "whatsapp"
            else meta.attachment_type_for_mime(mime_type))
    media = {"type": kind, "mime_type": mime_type, "filename": filename, "size": len(upload.data),
             "status": "stored", "source": "upload"}
    if caption:
        media["caption"] = caption
    words = caption or meta.describe_attachment(meta.Attachment(type=kind, filename=filename))
    return {"kind": kind, "text": words, "template": None, "media": media, "upload": upload.data}, {}


def refusal_for(conversation: Conversation, integration: Integration, content: dict) -> str | None:
    """Why this reply cannot go now (a sentence), or None."""
    if not integration.is_active or integration.needs_reconnect:
        state = "needs to be reconnected" if integration.needs_reconnect else "is deactivated"
        return f"The account {integration.name} {state}: replies cannot be sent through it now."
    if not token_of(integration):
        return f"The account {integration.name} has no access token: connect it again."
    return None if content["kind"] == "template" else window(conversation).reason


def send_reply(conversation: Conversation, user: User | None, data: Any,
               upload: Upload | None = None) -> tuple[ConversationMessage | None, Errors, str | None]:
    """Store a reply (queued) and queue the job that sends it. (message, errors by field, refusal)."""
    integration = db.session.get(Integration, conversation.integration_id)
    content, errors = validate_reply(conversation, integration, data, upload)
    if errors:
        return None, errors, None
    refusal = refusal_for(conversation, integration, content)
    if refusal:
        return None, {}, refusal
    now = utcnow()
    message = store_message(integration, conversation, provider_message_id=None, direction="out",
                            kind=content["kind"], text=content["text"], moment=now, status="queued",
                            media=content["media"], template=content["template"], sent_by=user)
    if "upload" in content:
        key = media_key(message, content["media"]["mime_type"])
        try:
            storage().put(key, content["upload"], content["media"]["mime_type"])
        except StorageError as exc:
            db.session.rollback()
            return None, {"upload": [str(exc)]}, None
        message.media = {**content["media"], "storage_key": key}
    note_message(conversation, now, preview_of("out", content["text"]), inbound=False, unread=False)
    db.session.commit()
    queue_reply(message.id)
    return message, {}, None


def queue_reply(message_id: int) -> None:
    """Queue the send; if Redis is down the message waits as queued and the sweep queues it."""
    from ..jobs.inbox import SEND_RETRY, deliver_reply
    try:
        task_queue().enqueue(deliver_reply, message_id, job_id=f"inbox-reply-{message_id}", retry=SEND_RETRY,
                             failure_ttl=86400)
    except RedisError:
        current_app.logger.warning("Redis unavailable: reply %s waits for the sweep", message_id)


def claim_reply(message_id: int) -> ConversationMessage | None:
    """queued → sending in one statement, so a duplicated job never sends twice."""
    now = utcnow()
    message = db.session.scalars(
        update(ConversationMessage).where(ConversationMessage.id == message_id,
                                          ConversationMessage.status == "queued",
                                          ConversationMessage.direction == "out")
        .values(status="sending", attempts=ConversationMessage.attempts + 1, updated_at=now)
        .returning(ConversationMessage), execution_options={"populate_existing": True}).first()
    db.session.commit()
    return message


def deliver_reply(message_id: int) -> str:
    message = claim_reply(message_id)
    if message is None:
        return "not claimable"
    conversation = db.session.get(Conversation, message.conversation_id)
    integration = db.session.get(Integration, message.integration_id)
    if message.kind != "template":
        reason = window(conversation).reason
        if reason:  # the window closed while the reply waited for a retry
            return reply_failed(message, reason)
    try:
        provider_id = send_through(integration, conversation, message)
    except RetryLater as exc:
        if message.attempts >= MAX_SEND_ATTEMPTS:
            return reply_failed(message, f"Gave up after {message.attempts} attempts: {exc.reason}")
        message.status, message.error = "queued", f"{exc.reason} Will try again."
        touch(conversation.id)
        db.session.commit()
        raise TryAgain(exc.reason) from None
    except (GiveUp, UseAnotherProvider) as exc:
        if isinstance(exc, UseAnotherProvider) and exc.reason.startswith(TOKEN_REFUSED):
            integration.needs_reconnect = True
            svc.log_event(integration, "token_refused", f"A reply could not be sent: {exc.reason}", level="error")
        return reply_failed(message, exc.reason)
    except StorageError as exc:
        return reply_failed(message, f"The file to send could not be read: {exc}")
    except Exception:  # a bug of ours: the reply ends in words, the traceback goes to the log
        current_app.logger.exception("sending reply %s crashed", message.id)
        return reply_failed(message, "Sending failed unexpectedly inside Switchboard; the error was logged.")
    return reply_sent(message, provider_id)


def send_through(integration: Integration, conversation: Conversation, message: ConversationMessage) -> str | None:
    """Send one reply through Meta; the provider message id (mid / wamid)."""
    token, media = token_of(integration), message.media or {}
    reference = f"inbox-{message.id}"
    if conversation.channel == "whatsapp":
        config = whatsapp_config(integration)
        if media.get("storage_key"):
            stored = storage().get(media["storage_key"])
            media_id = meta.upload_whatsapp_media(settings(), token, config["phone_number_id"], stored.data,
                                                  media.get("filename") or "file", media["mime_type"])
            return meta.send_whatsapp_media(settings(), token, config["phone_number_id"],
                                            conversation.external_user_id, media["type"], media_id,
                                            caption=media.get("caption"), filename=media.get("filename"),
                                            reference=reference)
        outbound = OutboundMessage(id=reference, channel="whatsapp", to="+" + conversation.external_user_id,
                                   body=media.get("caption") if media else (None if message.template else message.text),
                                   template=message.template, media_url=media.get("url"))
        result = svc.adapter_for(integration).send(config, svc.get_secrets(integration), outbound, sandbox=False)
        return result.provider_message_id
    current = window(conversation)
    if media.get("storage_key"):
        url = storage().shared_url(media["storage_key"], current_app.config["SHARED_MEDIA_SECONDS"])
        content = meta.link_content(conversation.channel, media["type"], url)
    elif media.get("url"):
        content = meta.link_content(conversation.channel, media["type"], media["url"])
    else:
        content = meta.text_content(message.text or "")
    return meta.send_message(settings(), conversation.channel, token, conversation.external_user_id, content,
                             messaging_type=current.messaging_type or "RESPONSE", tag=current.tag,
                             metadata=reference)


def reply_sent(message: ConversationMessage, provider_id: str | None) -> str:
    """Record Meta's id. If an echo of this very message was stored first (it raced our commit),
    that copy gives way to ours."""
    if provider_id:
        echo = db.session.scalar(select(ConversationMessage).where(
            ConversationMessage.integration_id == message.integration_id,
            ConversationMessage.provider_message_id == provider_id, ConversationMessage.id != message.id))
        if echo is not None:
            advance(message, echo.status)
            db.session.delete(echo)
            db.session.flush()
        message.provider_message_id = provider_id[:255]
    advance(message, "sent")
    message.error = None
    touch(message.conversation_id)
    db.session.commit()
    return message.status


def reply_failed(message: ConversationMessage, reason: str) -> str:
    message.status, message.error = "failed", reason
    touch(message.conversation_id)
    db.session.commit()
    return "failed"


# --- read state --------------------------------------------------------------------------------------

def open_conversation(conversation: Conversation) -> bool:
    """A person opened the conversation: unread back to 0, and (in a job) the provider is told it
    was read. True when the job was queued."""
    if conversation.unread_count:
        db.session.execute(update(Conversation).where(Conversation.id == conversation.id)
                           .values(unread_count=0, updated_at=utcnow()).execution_options(synchronize_session=False))
        db.session.expire(conversation)
    unread_at_provider = db.session.scalar(select(ConversationMessage.id).where(
        ConversationMessage.conversation_id == conversation.id, ConversationMessage.direction == "in",
        ConversationMessage.status == "received").limit(1))
    db.session.commit()
    if unread_at_provider is None:
        return False
    from ..jobs.inbox import READ_RETRY, mark_read
    try:
        task_queue().enqueue(mark_read, conversation.id, job_id=f"inbox-read-{conversation.id}", retry=READ_RETRY,
                             result_ttl=0, failure_ttl=86400)
    except RedisError:
        current_app.logger.warning("Redis unavailable: conversation %s is marked read here only", conversation.id)
        return False
    return True


def mark_read_at_provider(conversation_id: int) -> str:
    """WhatsApp: status read on the last message the person sent; Messenger/Instagram: mark_seen."""
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None:
        return "gone"
    last = db.session.scalar(select(ConversationMessage).where(
        ConversationMessage.conversation_id == conversation.id, ConversationMessage.direction == "in",
        ConversationMessage.status == "received").order_by(ConversationMessage.id.desc()).limit(1))
    if last is None:
        return "nothing unread"
    integration = db.session.get(Integration, conversation.integration_id)
    try:
        if conversation.channel == "whatsapp":
            wamid = (last.provider_message_id or "").split("#")[0]
            svc.adapter_for(integration).mark_read(whatsapp_config(integration), svc.get_secrets(integration), wamid)
        else:
            meta.send_sender_action(settings(), conversation.channel, token_of(integration),
                                    conversation.external_user_id, "mark_seen")
    except RetryLater as exc:
        raise TryAgain(exc.reason) from None
    except ProviderError as exc:
        svc.log_event(integration, "mark_read_failed", f"Could not mark a conversation read at Meta: {exc.reason}",
                      level="warning")
        db.session.commit()
        return "failed"
    db.session.execute(update(ConversationMessage).where(
        ConversationMessage.conversation_id == conversation.id, ConversationMessage.direction == "in",
        ConversationMessage.status == "received", ConversationMessage.id <= last.id).values(status="read"))
    touch(conversation.id)
    db.session.commit()
    return "read"


# --- profiles and media ------------------------------------------------------------------------------

def fetch_profile(conversation_id: int) -> str:
    """Name a Messenger or Instagram conversation (and its contact) from the person's profile.
    Failures leave the name empty: the conversation works without it."""
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None or conversation.channel == "whatsapp":
        return "nothing to do"
    integration = db.session.get(Integration, conversation.integration_id)
    try:
        profile = meta.fetch_profile(settings(), conversation.channel, token_of(integration),
                                     conversation.external_user_id)
    except RetryLater as exc:
        raise TryAgain(exc.reason) from None
    except ProviderError as exc:
        current_app.logger.info("no profile for conversation %s: %s", conversation.id, exc.reason)
        return "no profile"
    name = profile.name or (profile.username and f"@{profile.username}")
    for _ in range(3):
        try:
            if name and not conversation.name:
                conversation.name = name[:200]
            contact = db.session.get(Contact, conversation.contact_id) if conversation.contact_id else None
            if contact is not None:
                for attribute, value in (("name", name), ("first_name", profile.first_name),
                                         ("last_name", profile.last_name)):
                    if value and not getattr(contact, attribute):
                        setattr(contact, attribute, value)
                if profile.username and (contact.fields or {}).get("instagram_username") != profile.username:
                    contact.fields = {**(contact.fields or {}), "instagram_username": profile.username}
            conversation.updated_at = utcnow()
            db.session.commit()
            return "named" if name else "no name"
        except StaleDataError:  # the contact changed meanwhile: read it again
            db.session.rollback()
            conversation = db.session.get(Conversation, conversation_id)
    return "contact busy"


def media_key(message: ConversationMessage, content_type: str | None) -> str:
    """Where a message's file is kept: by organisation and conversation, unguessable, typed by extension."""
    extension = mimetypes.guess_extension(content_type or "") or ".bin"
    return f"media/{message.organization_id}/{message.conversation_id}/{message.id}-{uuid.uuid4().hex[:8]}{extension}"


def fetch_media(message_id: int) -> str:
    """Download a message's file while Meta's address is valid, and keep it in storage."""
    message = db.session.get(ConversationMessage, message_id)
    media = dict(message.media or {}) if message else {}
    if media.get("status") != "pending":
        return "nothing to do"
    integration = db.session.get(Integration, message.integration_id)
    attempts = int(media.get("attempts") or 0) + 1
    limit = current_app.config["MEDIA_MAX_BYTES"]
    try:
        if media.get("provider_media_id"):  # WhatsApp: ask for a fresh address, then fetch it with the token
            token = token_of(integration)
            location = meta.whatsapp_media_location(settings(), token, media["provider_media_id"])
            if location.size and location.size > limit:
                raise GiveUp(f"The file is larger than the {meta.size_words(limit)} limit for media kept in "
                             "Switchboard.")
            data, content_type = meta.download(settings(), location.url, label=meta.LABELS["whatsapp"],
                                               max_bytes=limit, headers=meta.bearer(token))
            content_type = location.mime_type or media.get("mime_type") or content_type
        else:
            data, content_type = meta.download(settings(), media["url"], label=PLATFORM_NAMES[
                CHANNEL_OF_TYPE[integration.integration_type]], max_bytes=limit)
            content_type = content_type or media.get("mime_type")
        key = media_key(message, content_type)
        storage().put(key, data, content_type)
    except (GiveUp, UseAnotherProvider) as exc:
        return media_failed(message, media, attempts, exc.reason)
    except (RetryLater, StorageError) as exc:
        reason = exc.reason if isinstance(exc, ProviderError) else str(exc)
        if attempts >= MAX_MEDIA_ATTEMPTS:
            return media_failed(message, media, attempts, f"Gave up after {attempts} attempts: {reason}")
        message.media = {**media, "attempts": attempts, "error": f"{reason} Will try again."}
        db.session.commit()
        raise TryAgain(reason) from None
    media.pop("error", None)
    media.pop("url", None)  # Meta's address expires; the stored copy is what counts now
    message.media = {**media, "status": "stored", "storage_key": key, "size": len(data),
                     "mime_type": content_type or "application/octet-stream", "attempts": attempts}
    touch(message.conversation_id)
    db.session.commit()
    return "stored"


def media_failed(message: ConversationMessage, media: dict, attempts: int, reason: str) -> str:
    message.media = {**media, "status": "failed", "error": reason, "attempts": attempts}
    touch(message.conversation_id)
    db.session.commit()
    return "failed"


@dataclass(frozen=True)
class MediaFile:
    chunks: Any  # an iterator of bytes
    mime_type: str
    filename: str | None


def media_file(organization_id: int, message_id: int, conversation_id: int | None = None) -> MediaFile | None:
    """A stored file of one of the organisation's messages (of that conversation, when given), or None (404)."""
    query = select(ConversationMessage).where(ConversationMessage.id == message_id,
                                              ConversationMessage.organization_id == organization_id)
    if conversation_id is not None:
        query = query.where(ConversationMessage.conversation_id == conversation_id)
    message = db.session.scalar(query)
    media = (message.media or {}) if message else {}
    if not media.get("storage_key"):
        return None
    try:
        chunks = storage().stream(media["storage_key"])
    except NotStored:
        return None
    return MediaFile(chunks, media.get("mime_type") or "application/octet-stream", media.get("filename"))


def queue_followups(followups: Followups) -> None:
    """Queue profile and media jobs after the caller committed; Redis down leaves them to the sweep
    (media) or to the next sync (names)."""
    from ..jobs.inbox import MEDIA_RETRY, PROFILE_RETRY, fetch_media as media_job, fetch_profile as profile_job
    try:
        queue = task_queue()
        for conversation_id in sorted(followups.profiles):
            queue.enqueue(profile_job, conversation_id, job_id=f"inbox-profile-{conversation_id}",
                          retry=PROFILE_RETRY, result_ttl=0, failure_ttl=86400)
        for message_id in sorted(followups.media):
            queue.enqueue(media_job, message_id, job_id=f"inbox-media-{message_id}", retry=MEDIA_RETRY,
                          result_ttl=0, failure_ttl=86400)
    except RedisError:
        current_app.logger.warning("Redis unavailable: media downloads wait for the sweep")


# --- templates ---------------------------------------------------------------------------------------

def approved_templates(integration: Integration) -> list[MessageTemplate]:
    return list(db.session.scalars(select(MessageTemplate).where(
        MessageTemplate.integration_id == integration.id, MessageTemplate.status == "APPROVED")
        .order_by(MessageTemplate.name, MessageTemplate.language)))


def serialize_template(template: MessageTemplate) -> dict[str, Any]:
    return {"name": template.name, "language": template.language, "category": template.category,
            "status": template.status, "parameter_count": template.parameter_count,
            "body": meta.body_text(template.components or []), "synced_at": isoformat(template.synced_at)}


def sync_templates(integration: Integration) -> int:
    """Read every template of the WhatsApp business account and keep ours the same; how many."""
    waba_id = (integration.config or {}).get("business_account_id")
    if not waba_id:
        raise GiveUp("The WhatsApp account has no business account ID: templates cannot be read.")
    found = meta.message_templates(settings(), token_of(integration), waba_id)
    now = utcnow()
    stored = {(t.name, t.language): t for t in db.session.scalars(
        select(MessageTemplate).where(MessageTemplate.integration_id == integration.id))}
    for info in found:
        template = stored.pop((info.name, info.language), None)
        if template is None:
            template = MessageTemplate(organization_id=integration.organization_id, integration_id=integration.id,
                                       name=info.name, language=info.language)
            db.session.add(template)
        template.status, template.category, template.components = info.status, info.category, info.components
        template.parameter_count, template.synced_at = meta.parameter_count(info.components), now
    for gone in stored.values():  # deleted at Meta: no longer offered
        db.session.delete(gone)
    svc.log_event(integration, "templates_synced", f"{len(found)} message templates synced from WhatsApp.")
    db.session.commit()
    return len(found)


def sync_templates_job(integration_id: int) -> str:
    integration = db.session.get(Integration, integration_id)
    if integration is None or integration.integration_type != "whatsapp":
        return "gone"
    try:
        return f"{sync_templates(integration)} templates"
    except RetryLater as exc:
        raise TryAgain(exc.reason) from None
    except ProviderError as exc:
        db.session.rollback()
        svc.log_event(integration, "templates_sync_failed", f"Templates could not be synced: {exc.reason}",
                      level="warning")
        db.session.commit()
        return "failed"


def request_template_sync(integration: Integration) -> str:
    """The "sync templates" button: queue the sync; the job id."""
    from ..jobs.inbox import SYNC_RETRY, sync_templates as job
    return task_queue().enqueue(job, integration.id, job_id=f"inbox-templates-{integration.id}-{uuid.uuid4().hex[:6]}",
                                retry=SYNC_RETRY, failure_ttl=86400).id


def whatsapp_accounts():
    return select(Integration).where(Integration.integration_type == "whatsapp", Integration.is_active.is_(True),
                                     Integration.needs_reconnect.is_(False))


def sync_all_templates() -> int:
    """Every 3 hours (rq cron): one sync job per WhatsApp account that has a business account."""
    accounts = [i for i in db.session.scalars(whatsapp_accounts())
                if (i.config or {}).get("business_account_id") and token_of(i)]
    for integration in accounts:
        request_template_sync(integration)
    return len(accounts)


# --- sync ---------------------------------------------------------------------------------------------

def syncable(integration: Integration) -> bool:
    return integration.integration_type in ("facebook", "instagram")


def request_sync(integration: Integration) -> str | None:
    """"Sync now": queue a sync unless one is already queued or running; the job id, or None."""
    from ..jobs.inbox import SYNC_RETRY, sync_conversations as job
    lock = f"switchboard:inbox:sync:{integration.id}"
    if not redis_connection().set(lock, "1", nx=True, ex=SYNC_LOCK_SECONDS):
        return None
    return task_queue().enqueue(job, integration.id, job_id=f"inbox-sync-{integration.id}-{uuid.uuid4().hex[:6]}",
                                retry=SYNC_RETRY, result_ttl=3600, failure_ttl=86400).id


def sync_all() -> int:
    """Every 5 minutes (rq cron): a sync job per connected Messenger and Instagram account."""
    accounts = db.session.scalars(select(Integration).where(
        Integration.integration_type.in_(("facebook", "instagram")), Integration.is_active.is_(True),
        Integration.needs_reconnect.is_(False), Integration.external_id.is_not(None))).all()
    return sum(request_sync(i) is not None for i in accounts if token_of(i) and page_id_of(i))


def sync_job(integration_id: int) -> str:
    integration = db.session.get(Integration, integration_id)
    try:
        if integration is None or not syncable(integration):
            return "gone"
        try:
            result = sync_integration(integration)
        except RetryLater as exc:
            raise TryAgain(exc.reason) from None
        except ProviderError as exc:
            db.session.rollback()
            svc.log_event(integration, "sync_failed", f"Conversations could not be synced: {exc.reason}",
                          level="warning")
            db.session.commit()
            return "failed"
        return f"{result} new messages"
    finally:
        try:
            redis_connection().delete(f"switchboard:inbox:sync:{integration_id}")
        except RedisError:
            pass  # the lock expires on its own


def sync_integration(integration: Integration) -> int:
    """Read the account's recent conversations and keep what webhooks missed (each mid once);
    set last_sync_at. The first sync brings history as read; later ones count new messages unread."""
    platform = channel_of(integration)
    started = utcnow()
    first = integration.last_sync_at is None
    since = None if first else (integration.last_sync_at - SYNC_MARGIN)
    account_ids = {integration.external_id, page_id_of(integration)}
    followups, added = Followups(), 0
    for synced in meta.recent_conversations(settings(), platform, token_of(integration), page_id_of(integration),
                                            since=unix(since) if since else None, max_pages=SYNC_PAGES):
        person = next((p for p in synced.participants if p[0] not in account_ids), None)
        if person is None:
            continue
        user_id, name, username = person
        for item in sorted(synced.messages, key=lambda m: m.created_at or 0):
            event = meta.ChatMessage(platform, integration.external_id, user_id, item.message_id,
                                     "out" if item.from_id in account_ids else "in", item.kind, item.text,
                                     item.attachments, item.created_at,
                                     user_name=name or (username and f"@{username}"))
            if event.direction == "in":
                added += receive(integration, event, followups, counts_unread=not first)
            else:
                added += record_echo(integration, event, followups)
    integration.last_sync_at = started
    db.session.commit()
    queue_followups(followups)
    return added


# --- the sweep ---------------------------------------------------------------------------------------

def sweep() -> dict[str, int]:
    """Every minute: replies whose job was lost (Redis was down) are queued again, sends a dead
    worker left half-done end as failed without a second send, and pending media downloads
    whose job was lost are queued again while Meta still keeps the file."""
    now = utcnow()
    connection = redis_connection()
    waiting = db.session.scalars(select(ConversationMessage.id).where(
        ConversationMessage.status == "queued", ConversationMessage.direction == "out",
        ConversationMessage.updated_at < now - LOST_JOB_AFTER).limit(1000)).all()
    lost = [i for i in waiting if not Job.exists(f"inbox-reply-{i}", connection=connection)]
    stuck = db.session.scalars(select(ConversationMessage).where(
        ConversationMessage.status == "sending", ConversationMessage.updated_at < now - INTERRUPTED_AFTER)).all()
    for message in stuck:
        reply_failed(message, INTERRUPTED)
    pending_media = db.session.scalars(select(ConversationMessage.id).where(
        ConversationMessage.media.is_not(None), ConversationMessage.created_at > now - timedelta(days=MEDIA_KEEPS_DAYS),
        ConversationMessage.updated_at < now - LOST_JOB_AFTER,
        ConversationMessage.media["status"].as_string() == "pending").limit(1000)).all()
    media = {i for i in pending_media if not Job.exists(f"inbox-media-{i}", connection=connection)}
    db.session.commit()
    for message_id in lost:
        queue_reply(message_id)
    queue_followups(Followups(media=media))
    return {"inbox_replies": len(lost), "inbox_interrupted": len(stuck), "inbox_media": len(media)}


# --- analytics -----------------------------------------------------------------------------------------

SENT_STATUSES = ("sent", "delivered", "read")


def roll_up_daily_stats(days: int = 2, today: date | None = None) -> int:
    """Hourly: messages in, messages out (once sent) and conversations with a message, per day, per
    platform, per organisation, for today and the days before (UTC days). Upserts, so running it
    again gives the same rows; returns how many rows it wrote."""
    today = today or utcnow().date()
    written = 0
    for organization_id in db.session.scalars(select(Organization.id)).all():
        for offset in range(days):
            written += _roll_up_day(organization_id, today - timedelta(days=offset))
    db.session.commit()
    return written


def _roll_up_day(organization_id: int, day: date) -> int:
    start = datetime(day.year, day.month, day.day)
    rows = db.session.execute(
        select(Conversation.channel, ConversationMessage.direction, ConversationMessage.conversation_id, func.count())
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .where(ConversationMessage.organization_id == organization_id, ConversationMessage.created_at >= start,
               ConversationMessage.created_at < start + timedelta(days=1),
               or_(ConversationMessage.direction == "in", ConversationMessage.status.in_(SENT_STATUSES)))
        .group_by(Conversation.channel, ConversationMessage.direction, ConversationMessage.conversation_id)).all()
    figures: dict[str, dict[str, Any]] = {}
    for channel, direction, conversation_id, count in rows:
        entry = figures.setdefault(channel, {"in": 0, "out": 0, "conversations": set()})
        entry[direction] += count
        entry["conversations"].add(conversation_id)
    existing = {s.platform: s for s in db.session.scalars(select(PlatformDailyStat).where(
        PlatformDailyStat.organization_id == organization_id, PlatformDailyStat.day == day))}
    written = 0
    for platform in set(figures) | set(existing):
        entry = figures.get(platform, {"in": 0, "out": 0, "conversations": set()})
        values = {"messages_in": entry["in"], "messages_out": entry["out"],
                  "conversations": len(entry["conversations"])}
        stat = existing.get(platform)
        if stat is None:
            try:
                with db.session.begin_nested():
                    db.session.add(PlatformDailyStat(organization_id=organization_id, day=day, platform=platform,
                                                     **values))
            except IntegrityError:  # another roll-up wrote it just now: update that row
                stat = db.session.scalar(select(PlatformDailyStat).where(
                    PlatformDailyStat.organization_id == organization_id, PlatformDailyStat.day == day,
                    PlatformDailyStat.platform == platform))
        if stat is not None:
            for name, value in values.items():
                setattr(stat, name, value)
        written += 1
    return written


def daily_stats(organization_id: int, days: int = 30, today: date | None = None) -> list[dict[str, Any]]:
    """The last `days` days, oldest first, every day present (zeros where nothing happened):
    {"day", "<platform>": {"messages_in", "messages_out", "conversations"}, "total": {...}}."""
    days = max(1, min(days, 366))
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    stored = db.session.scalars(select(PlatformDailyStat).where(
        PlatformDailyStat.organization_id == organization_id, PlatformDailyStat.day >= first,
        PlatformDailyStat.day <= today)).all()
    found = {(s.day, s.platform): s for s in stored}
    series = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        point: dict[str, Any] = {"day": day.isoformat()}
        total = {"messages_in": 0, "messages_out": 0, "conversations": 0}
        for platform in PLATFORMS:
            stat = found.get((day, platform))
            values = {"messages_in": stat.messages_in if stat else 0, "messages_out": stat.messages_out if stat else 0,
                      "conversations": stat.conversations if stat else 0}
            point[platform] = values
            for name, value in values.items():
                total[name] += value
        point["total"] = total
        series.append(point)
    return series


# --- reading -------------------------------------------------------------------------------------------

def conversations_query(organization_id: int, *, channel: str | None = None, integration_id: int | None = None,
                        search: str | None = None):
    """The organisation's conversations, newest first."""
    query = select(Conversation).where(Conversation.organization_id == organization_id)
    if channel:
        query = query.where(Conversation.channel == channel)
    if integration_id:
        query = query.where(Conversation.integration_id == integration_id)
    if search and search.strip():
        term = search.strip()[:100]
        query = query.where(or_(Conversation.name.icontains(term, autoescape=True),
                                Conversation.external_user_id.contains(term, autoescape=True),
                                Conversation.last_message_preview.icontains(term, autoescape=True)))
    return query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())


def with_details(query):
    return query.options(joinedload(Conversation.contact), joinedload(Conversation.integration))


def get_for_org(organization_id: int, conversation_id: int) -> Conversation | None:
    return db.session.scalar(select(Conversation).where(Conversation.id == conversation_id,
                                                        Conversation.organization_id == organization_id))


def messages_of(conversation: Conversation, before: int | None = None, limit: int = 50) -> list[ConversationMessage]:
    """The latest `limit` messages (before the message `before`, for older pages), oldest first."""
    query = select(ConversationMessage).where(ConversationMessage.conversation_id == conversation.id)
    if before:
        anchor = db.session.scalar(select(ConversationMessage).where(
            ConversationMessage.id == before, ConversationMessage.conversation_id == conversation.id))
        if anchor is not None:
            query = query.where(or_(ConversationMessage.created_at < anchor.created_at,
                                    and_(ConversationMessage.created_at == anchor.created_at,
                                         ConversationMessage.id < anchor.id)))
    latest = db.session.scalars(query.order_by(ConversationMessage.created_at.desc(), ConversationMessage.id.desc())
                                .limit(max(1, min(limit, 200)))).all()
    return list(reversed(latest))


def inbox_version(organization_id: int, *, channel: str | None = None, integration_id: int | None = None,
                  search: str | None = None, page: int = 1, per_page: int = PER_PAGE) -> str:
    """Changes whenever anything on this page of the list changes: one query on the
    (organization_id, channel, last_message_at) index, reading id and updated_at of the page's rows."""
    query = conversations_query(organization_id, channel=channel, integration_id=integration_id, search=search)
    rows = db.session.execute(query.with_only_columns(Conversation.id, Conversation.updated_at)
                              .limit(per_page).offset((max(1, page) - 1) * per_page)).all()
    return version_of([tuple(r) for r in rows])


def conversation_version(organization_id: int, conversation_id: int) -> str | None:
    """Changes whenever the conversation or one of its messages changes (every change touches
    the conversation's updated_at); one primary-key read. None: not the organisation's."""
    row = db.session.execute(select(Conversation.updated_at, Conversation.unread_count).where(
        Conversation.id == conversation_id, Conversation.organization_id == organization_id)).first()
    if row is None:
        return None
    return version_of(tuple(row))


def version_of(values) -> str:
    """The short string of both change signals; pages holding the rows already (a page's
    [(id, updated_at), ...], a conversation's (updated_at, unread_count)) compute it without a query."""
    return hashlib.blake2b(repr(values).encode(), digest_size=8).hexdigest()


def serialize_conversation(conversation: Conversation) -> dict[str, Any]:
    contact = conversation.contact
    integration = conversation.integration
    return {
        "id": conversation.id, "channel": conversation.channel, "integration_id": conversation.integration_id,
        "account": {"id": integration.id, "name": integration.name, "external_id": integration.external_id},
        "external_user_id": conversation.external_user_id, "name": conversation.name,
        "contact": ({"id": contact.id, "name": contact.name, "email": contact.email, "phone": contact.phone}
                    if contact else None),
        "last_message_at": isoformat(conversation.last_message_at),
        "last_message_preview": conversation.last_message_preview,
        "last_inbound_at": isoformat(conversation.last_inbound_at), "unread_count": conversation.unread_count,
        "window": serialize_window(window(conversation)),
    }


MEDIA_FIELDS = ("type", "mime_type", "filename", "caption", "size", "status", "error")


def serialize_message(message: ConversationMessage) -> dict[str, Any]:
    media = message.media or None
    return {
        "id": message.id, "direction": message.direction, "kind": message.kind, "text": message.text,
        "status": message.status, "error": message.error, "provider_message_id": message.provider_message_id,
        "media": {k: media[k] for k in MEDIA_FIELDS if k in media} | {"stored": bool(media.get("storage_key"))}
        if media else None,
        "template": message.template, "sent_by_id": message.sent_by_id, "created_at": isoformat(message.created_at),
    }
