"""Meta's messaging wire format, for the inbox: the notifications Meta posts to an app's webhook
(objects `page`, `instagram`, `whatsapp_business_account`) read into plain events, and the Graph
calls of conversations: the Messenger/Instagram Send API and sender actions, profiles, the
conversations list used by sync, WhatsApp media (URL, download, upload) and message templates.

Nothing here knows Flask or the database; functions take plain values (settings, tokens, ids)
and return plain values or raise the typed errors of providers/base.py. Meta's shapes are read
defensively: an item that cannot be read is skipped with a note, never a crash, because Meta
retries a refused notification and would keep the readable rest of it from ever arriving.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .base import GiveUp, ProviderSettings, RetryLater, StatusEvent, WebhookRejected
from .meta import graph_get, graph_post, next_cursor
from .net import call
from .whatsapp.cloud_api import status_event

LABELS = {"messenger": "Messenger", "instagram": "Instagram", "whatsapp": "WhatsApp Cloud API"}
# Object of a notification → the platform of its conversations.
OBJECTS = {"page": "messenger", "instagram": "instagram", "whatsapp_business_account": "whatsapp"}
MAX_SYNC_MESSAGES = 25  # per conversation, per sync: what webhooks may have missed lately
MAX_TEMPLATE_PAGES = 20  # 2,000 templates
DOWNLOAD_CHUNK = 64 * 1024
# Messenger attachment types by file extension (what the Send API accepts by URL); others go as "file".
ATTACHMENT_TYPES = {
    "image": {"jpg", "jpeg", "png", "gif", "webp"},
    "video": {"mp4", "mov", "3gp", "3gpp"},
    "audio": {"mp3", "m4a", "aac", "wav", "ogg", "opus", "amr"},
}
# What a message of each kind is called where it has no words of its own (list previews, the API's text).
KIND_WORDS = {
    "image": "Photo", "video": "Video", "audio": "Audio message", "voice": "Voice message", "file": "File",
    "document": "Document", "sticker": "Sticker", "location": "Location", "contacts": "Shared contact",
    "share": "Shared post", "story_mention": "Mentioned you in their story", "reel": "Shared reel",
    "ig_reel": "Shared reel", "fallback": "Link", "template": "Template message", "reaction": "Reaction",
    "postback": "Tapped a button", "order": "Order", "unsupported": "A message type Meta does not pass on",
}


# --- notifications → events --------------------------------------------------------------------

@dataclass(frozen=True)
class Attachment:
    type: str  # image, video, audio, file, document, sticker, share, ...
    url: str | None = None  # Messenger/Instagram: a CDN address valid for a while
    media_id: str | None = None  # WhatsApp: fetched through GET /<media id>
    mime_type: str | None = None
    filename: str | None = None
    caption: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ChatMessage:
    """A message of a conversation: the person's (direction "in"), or the account's own seen as an
    echo (direction "out": sent by us or from Meta's own inbox)."""

    platform: str
    account_id: str  # the Page id, Instagram account id or WhatsApp phone_number_id
    user_id: str  # PSID, IGSID or wa_id
    message_id: str  # mid / wamid
    direction: str
    kind: str
    text: str  # always readable: the words, or what the message is ("Photo", "Location: ...")
    attachments: tuple[Attachment, ...] = ()
    timestamp: float | None = None  # Unix seconds, by Meta's clock
    user_name: str | None = None  # WhatsApp: the profile name of the contacts block
    app_id: str | None = None  # echoes: the app that sent it
    metadata: str | None = None  # echoes: the metadata our send attached


@dataclass(frozen=True)
class MessageDeleted:
    platform: str
    account_id: str
    user_id: str
    message_id: str


@dataclass(frozen=True)
class Delivered:
    """Messenger: the person's device received our messages (these mids, and all before watermark)."""

    platform: str
    account_id: str
    user_id: str
    message_ids: tuple[str, ...] = ()
    watermark: float | None = None


@dataclass(frozen=True)
class Seen:
    """The person read our messages up to watermark (or up to message_id on Instagram)."""

    platform: str
    account_id: str
    user_id: str
    watermark: float | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class WhatsAppStatus:
    account_id: str
    event: StatusEvent  # wamid, status, the error in plain words, our id from biz_opaque_callback_data
    kind: str  # sent, delivered, read, failed, ...


@dataclass(frozen=True)
class LeadgenChange:
    account_id: str
    value: dict


@dataclass(frozen=True)
class Skipped:
    """Something the inbox does not act on (comments, template updates, an unreadable item), kept
    as a note on the stored webhook event."""

    platform: str
    account_id: str
    what: str


@dataclass(frozen=True)
class Notification:
    object: str
    events: list = field(default_factory=list)
    newest: float | None = None  # the latest time the notification names (Unix seconds)


def seconds(value) -> float | None:
    """Meta's times: Unix seconds (WhatsApp, as text) or milliseconds (Messenger); None if unreadable."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number <= 0:  # NaN
        return None
    return number / 1000 if number > 1e11 else number


def graph_time(value) -> float | None:
    """Graph's ISO times, e.g. 2026-01-05T09:30:00+0000."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _text(value) -> str | None:
    """Text as we keep it: trimmed, without NUL characters (JSON may carry \\u0000; PostgreSQL cannot
    store one and no field wants one), None when empty."""
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _id(value) -> str | None:
    """An id as text; Meta sends ids as strings, some fakes and old payloads as numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    value = _text(value)
    return value if value and len(value) <= 255 else None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def without_nul(value):
    """The document with NUL characters dropped from every string: JSON may carry \\u0000, and
    PostgreSQL cannot store one in text."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def parse_notification(body: bytes) -> Notification:
    """Read a notification; WebhookRejected(..., 400) only when it is not one at all."""
    try:
        document = without_nul(json.loads(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WebhookRejected("The body is not JSON.", 400) from None
    if not isinstance(document, dict) or not isinstance(document.get("object"), str):
        raise WebhookRejected("The body is not a Meta notification (no \"object\").", 400)
    entries = document.get("entry")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise WebhookRejected("The notification has no list of entries.", 400)
    kind = document["object"]
    platform = OBJECTS.get(kind)
    events: list = []
    times: list[float] = []
    for entry in entries:
        account_id = _id(entry.get("id")) or ""
        times.append(seconds(entry.get("time")) or 0)
        if platform is None:
            events.append(Skipped("", account_id, f"a notification of object {kind[:40]!r}"))
        elif platform == "whatsapp":
            events.extend(_whatsapp_entry(entry, times))
        else:
            events.extend(_messaging_entry(platform, account_id, entry, times))
    return Notification(object=kind, events=events, newest=max(times, default=0) or None)


# Messenger and Instagram ---------------------------------------------------------------------------

def _messaging_entry(platform: str, account_id: str, entry: dict, times: list[float]) -> list:
    events: list = []
    # Under the handover protocol another app may be primary: its traffic comes as `standby`.
    for item in _list(entry.get("messaging")) + _list(entry.get("standby")):
        if not isinstance(item, dict):
            events.append(Skipped(platform, account_id, "an unreadable messaging item"))
            continue
        moment = seconds(item.get("timestamp"))
        times.append(moment or 0)
        try:
            events.append(_messaging_item(platform, account_id, item, moment))
        except ValueError as exc:
            events.append(Skipped(platform, account_id, str(exc)))
    for change in _list(entry.get("changes")):
        name = _dict(change).get("field")
        if name == "leadgen":
            events.append(LeadgenChange(account_id, _dict(_dict(change).get("value"))))
        else:
            events.append(Skipped(platform, account_id, f"a {str(name)[:40]} change"))
    return events


def _messaging_item(platform: str, account_id: str, item: dict, moment: float | None):
    sender, recipient = _id(_dict(item.get("sender")).get("id")), _id(_dict(item.get("recipient")).get("id"))
    message = item.get("message")
    if isinstance(message, dict):
        echo = message.get("is_echo") is True
        user_id = recipient if echo else sender
        mid = _id(message.get("mid"))
        if not user_id or not mid:
            raise ValueError("a message without its sender or its mid")
        if message.get("is_deleted") is True:
            return MessageDeleted(platform, account_id, user_id, mid)
        attachments = tuple(_messaging_attachment(a) for a in _list(message.get("attachments")) if isinstance(a, dict))
        text = _text(message.get("text"))
        if message.get("is_unsupported") is True:
            kind = "unsupported"
        elif attachments:
            kind = attachments[0].type
        else:
            kind = "text"
        words = text or ", ".join(describe_attachment(a) for a in attachments) or KIND_WORDS.get(kind) or "Message"
        return ChatMessage(platform, account_id, user_id, mid, "out" if echo else "in", kind, words, attachments,
                           moment, app_id=_id(message.get("app_id")), metadata=_text(message.get("metadata")))
    postback = item.get("postback")
    if isinstance(postback, dict):
        if not sender:
            raise ValueError("a postback without its sender")
        # A postback may come without a mid: its sender and time identify it, so a retry adds nothing.
        mid = _id(postback.get("mid")) or f"postback:{sender}:{item.get('timestamp')}"
        title = _text(postback.get("title")) or _text(postback.get("payload")) or "a button"
        return ChatMessage(platform, account_id, sender, mid, "in", "postback", f"Tapped “{title}”", (), moment)
    delivery = item.get("delivery")
    if isinstance(delivery, dict) and sender:
        mids = tuple(m for m in (_id(x) for x in _list(delivery.get("mids"))) if m)
        return Delivered(platform, account_id, sender, mids, seconds(delivery.get("watermark")))
    read = item.get("read")
    if isinstance(read, dict) and sender:
        return Seen(platform, account_id, sender, seconds(read.get("watermark")), _id(read.get("mid")))
    known = next((k for k in ("reaction", "referral", "optin", "account_linking", "policy_enforcement",
                              "message_edit", "pass_thread_control", "take_thread_control") if k in item), None)
    return Skipped(platform, account_id, f"a {known} event" if known else "a messaging item of a kind not handled")


def _messaging_attachment(attachment: dict) -> Attachment:
    kind = str(attachment.get("type") or "file")[:20]
    payload = _dict(attachment.get("payload"))
    url = payload.get("url") if isinstance(payload.get("url"), str) else None
    if kind == "image" and payload.get("sticker_id"):
        kind = "sticker"
    return Attachment(type=kind, url=url, caption=_text(payload.get("title")))


def describe_attachment(attachment: Attachment) -> str:
    words = KIND_WORDS.get(attachment.type) or attachment.type.replace("_", " ").capitalize()
    if attachment.filename:
        words = f"{words} {attachment.filename}"
    return f"{words}: {attachment.caption}" if attachment.caption else words


# WhatsApp -----------------------------------------------------------------------------------------

def _whatsapp_entry(entry: dict, times: list[float]) -> list:
    events: list = []
    for change in _list(entry.get("changes")):
        change = _dict(change)
        value = _dict(change.get("value"))
        number_id = _id(_dict(value.get("metadata")).get("phone_number_id")) or ""
        if change.get("field") != "messages":
            events.append(Skipped("whatsapp", number_id or _id(entry.get("id")) or "",
                                  f"a {str(change.get('field'))[:40]} update"))
            continue
        names = {_id(c.get("wa_id")): _text(_dict(c.get("profile")).get("name"))
                 for c in _list(value.get("contacts")) if isinstance(c, dict)}
        for message in _list(value.get("messages")):
            if not isinstance(message, dict) or not _id(message.get("id")) or not _id(message.get("from")):
                events.append(Skipped("whatsapp", number_id, "a message without its id or sender"))
                continue
            moment = seconds(message.get("timestamp"))
            times.append(moment or 0)
            events.append(_whatsapp_message(number_id, message, names.get(_id(message["from"])), moment))
        for status in _list(value.get("statuses")):
            if not (isinstance(status, dict) and _id(status.get("id")) and _text(status.get("status"))):
                events.append(Skipped("whatsapp", number_id, "a status without its message id or status"))
                continue
            times.append(seconds(status.get("timestamp")) or 0)
            events.append(WhatsAppStatus(number_id, status_event({**status, "id": _id(status["id"])}),
                                         status["status"]))
        for error in _list(value.get("errors")):
            events.append(Skipped("whatsapp", number_id, f"an error notice: {_text(_dict(error).get('title')) or '?'}"))
    return events


def _whatsapp_message(number_id: str, message: dict, name: str | None, moment: float | None) -> ChatMessage:
    kind = str(message.get("type") or "unsupported")[:20]
    body = _dict(message.get(kind))
    attachments: tuple[Attachment, ...] = ()
    if kind in ("image", "video", "audio", "document", "sticker"):
        attachment = Attachment(type=kind, media_id=_id(body.get("id")), mime_type=_text(body.get("mime_type")),
                                filename=_text(body.get("filename")), caption=_text(body.get("caption")),
                                sha256=_text(body.get("sha256")))
        attachments = (attachment,)
        if kind == "audio" and body.get("voice") is True:
            text = KIND_WORDS["voice"]
        else:
            text = describe_attachment(attachment)
    else:
        text = _whatsapp_words(kind, body, message)
    return ChatMessage("whatsapp", number_id, _id(message["from"]), _id(message["id"]), "in", kind, text,
                       attachments, moment, user_name=name)


def _whatsapp_words(kind: str, body: dict, message: dict) -> str:
    """A readable text for every message type WhatsApp sends."""
    if kind == "text":
        return _text(body.get("body")) or "(empty message)"
    if kind == "location":
        place = ", ".join(p for p in (_text(body.get("name")), _text(body.get("address"))) if p)
        where = f"{body.get('latitude')}, {body.get('longitude')}"
        return f"Location: {place} ({where})" if place else f"Location: {where}"
    if kind == "contacts":
        people = []
        for contact in _list(message.get("contacts")):
            contact = _dict(contact)
            name = _text(_dict(contact.get("name")).get("formatted_name")) or "a contact"
            phones = [_text(_dict(p).get("phone")) for p in _list(contact.get("phones"))]
            people.append(" ".join([name, *[p for p in phones if p]]))
        return "Shared contact: " + ("; ".join(people) or "(empty)")
    if kind == "interactive":
        reply = _dict(body.get("button_reply")) or _dict(body.get("list_reply"))
        title = _text(reply.get("title")) or _text(reply.get("id")) or "an option"
        return f"Chose “{title}”"
    if kind == "button":
        return f"Tapped “{_text(body.get('text')) or _text(body.get('payload')) or 'a button'}”"
    if kind == "reaction":
        emoji = _text(body.get("emoji"))
        return f"Reacted {emoji} to a message" if emoji else "Removed a reaction"
    if kind == "order":
        items = _list(body.get("product_items"))
        return f"Order of {len(items)} item{'s' if len(items) != 1 else ''}"
    if kind == "system":
        return _text(body.get("body")) or "A system message from WhatsApp"
    errors = [_dict(e) for e in _list(message.get("errors"))]
    why = next((_text(e.get("title")) or _text(e.get("message")) for e in errors if e), None)
    return f"{KIND_WORDS['unsupported']}" + (f" ({why})" if why else f" (type {kind})" if kind != "unsupported" else "")


# --- Graph calls: Messenger and Instagram ----------------------------------------------------------

def page_token_params(token: str) -> dict:
    """The Messenger Platform takes the Page access token as the access_token parameter."""
    return {"access_token": token}


def attachment_type(url: str) -> str:
    """Messenger's attachment type for media given by link: by the file's extension."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    extension = path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    return next((kind for kind, names in ATTACHMENT_TYPES.items() if extension in names), "file")


def attachment_type_for_mime(mime_type: str) -> str:
    major = mime_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def text_content(text: str) -> dict:
    return {"text": text}


def link_content(platform: str, kind: str, url: str) -> dict:
    payload: dict = {"url": url}
    if platform == "messenger":
        payload["is_reusable"] = True
    return {"attachment": {"type": kind, "payload": payload}}


def send_message(settings: ProviderSettings, platform: str, page_token: str, recipient_id: str, content: dict, *,
                 messaging_type: str, tag: str | None = None, metadata: str | None = None) -> str | None:
    """POST /me/messages; the message id (mid), or None when Meta accepted it without naming one."""
    message = dict(content)
    if metadata and platform == "messenger":  # echoed back in message_echoes, so an echo finds its message
        message["metadata"] = metadata
    payload: dict = {"recipient": {"id": recipient_id}, "messaging_type": messaging_type, "message": message}
    if tag:
        payload["tag"] = tag
    answer = graph_post(settings, "me/messages", payload, provider_label=LABELS[platform],
                        params=page_token_params(page_token))
    return _id(answer.get("message_id"))


def send_sender_action(settings: ProviderSettings, platform: str, page_token: str, recipient_id: str,
                       action: str) -> None:
    """mark_seen, typing_on or typing_off."""
    graph_post(settings, "me/messages", {"recipient": {"id": recipient_id}, "sender_action": action},
               provider_label=LABELS[platform], params=page_token_params(page_token))


@dataclass(frozen=True)
class Profile:
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None  # Instagram


def fetch_profile(settings: ProviderSettings, platform: str, page_token: str, user_id: str) -> Profile:
    fields = "first_name,last_name,name,profile_pic" if platform == "messenger" else "name,username"
    body = graph_get(settings, user_id, provider_label=LABELS[platform],
                     params={**page_token_params(page_token), "fields": fields})
    first, last = _text(body.get("first_name")), _text(body.get("last_name"))
    name = _text(body.get("name")) or " ".join(p for p in (first, last) if p) or None
    return Profile(name=name and name[:200], first_name=first and first[:100], last_name=last and last[:100],
                   username=_text(body.get("username")))


@dataclass(frozen=True)
class SyncedMessage:
    message_id: str
    from_id: str | None
    text: str
    kind: str
    attachments: tuple[Attachment, ...]
    created_at: float | None


@dataclass(frozen=True)
class SyncedConversation:
    updated_at: float | None
    participants: tuple[tuple[str, str | None, str | None], ...]  # (id, name, username)
    messages: tuple[SyncedMessage, ...]


def recent_conversations(settings: ProviderSettings, platform: str, page_token: str, page_id: str, *,
                         since: float | None, max_pages: int) -> Iterator[SyncedConversation]:
    """GET /<page-id>/conversations, newest first, with their latest messages; stops at the first
    conversation not updated since `since` (Unix seconds), or after max_pages pages."""
    params = {**page_token_params(page_token), "platform": platform,
              "fields": f"participants,updated_time,messages.limit({MAX_SYNC_MESSAGES})"
                        "{id,message,from,to,created_time,attachments}",
              "limit": 25}
    for _ in range(max_pages):
        body = graph_get(settings, f"{page_id}/conversations", provider_label=LABELS[platform], params=params)
        for item in _list(body.get("data")):
            if not isinstance(item, dict):
                continue
            conversation = _synced_conversation(item)
            if since is not None and conversation.updated_at is not None and conversation.updated_at < since:
                return
            yield conversation
        after = next_cursor(body)
        if after is None:
            return
        params = {**params, "after": after}


def _synced_conversation(item: dict) -> SyncedConversation:
    participants = tuple((pid, _text(p.get("name")), _text(p.get("username")))
                         for p in (_dict(x) for x in _list(_dict(item.get("participants")).get("data")))
                         if (pid := _id(p.get("id"))))
    messages = []
    for raw in _list(_dict(item.get("messages")).get("data")):
        raw = _dict(raw)
        mid = _id(raw.get("id"))
        if not mid:
            continue
        attachments = tuple(_synced_attachment(_dict(a)) for a in _list(_dict(raw.get("attachments")).get("data")))
        text = _text(raw.get("message"))
        kind = attachments[0].type if attachments and not text else "text"
        words = text or ", ".join(describe_attachment(a) for a in attachments) or "Message"
        messages.append(SyncedMessage(mid, _id(_dict(raw.get("from")).get("id")), words, kind, attachments,
                                      graph_time(raw.get("created_time"))))
    return SyncedConversation(graph_time(item.get("updated_time")), participants, tuple(messages))


def _synced_attachment(raw: dict) -> Attachment:
    """Graph's message attachments: image_data/video_data with a url, or file_url, with mime_type and name."""
    mime = _text(raw.get("mime_type"))
    url = (_dict(raw.get("image_data")).get("url") or _dict(raw.get("video_data")).get("url")
           or raw.get("file_url") or _dict(raw.get("payload")).get("url"))
    kind = attachment_type_for_mime(mime) if mime else ("image" if raw.get("image_data") else "file")
    return Attachment(type=kind, url=url if isinstance(url, str) else None, mime_type=mime,
                      filename=_text(raw.get("name")))


# --- Graph calls: WhatsApp media and templates -----------------------------------------------------

def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class MediaLocation:
    url: str
    mime_type: str | None
    size: int | None


def whatsapp_media_location(settings: ProviderSettings, token: str, media_id: str) -> MediaLocation:
    """GET /<media id> → the download URL (valid about five minutes), its type and size."""
    body = graph_get(settings, media_id, provider_label=LABELS["whatsapp"], headers=bearer(token))
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise RetryLater("WhatsApp did not give a download address for the media.")
    try:
        size = int(body.get("file_size"))
    except (TypeError, ValueError):
        size = None
    return MediaLocation(url=url, mime_type=_text(body.get("mime_type")), size=size)


def download(settings: ProviderSettings, url: str, *, label: str, max_bytes: int,
             headers: dict | None = None) -> tuple[bytes, str | None]:
    """(the file, its Content-Type); GiveUp when it is larger than max_bytes, read no further."""
    limit_words = size_words(max_bytes)
    response = call("GET", url, timeout=settings.timeout, provider_label=label, headers=dict(headers or {}),
                    stream=True)
    with response:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise GiveUp(f"The file is larger than the {limit_words} limit for media kept in Switchboard.")
        data = bytearray()
        for chunk in response.iter_content(DOWNLOAD_CHUNK):
            data += chunk
            if len(data) > max_bytes:
                raise GiveUp(f"The file is larger than the {limit_words} limit for media kept in Switchboard.")
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip() or None
    return bytes(data), content_type


def size_words(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:g} MB"
    return f"{size / 1000:g} KB" if size >= 1000 else f"{size} bytes"


def upload_whatsapp_media(settings: ProviderSettings, token: str, phone_number_id: str, data: bytes,
                          filename: str, mime_type: str) -> str:
    """POST /<phone number id>/media (multipart) → the media id to send by."""
    answer = graph_post(settings, f"{phone_number_id}/media", None, provider_label=LABELS["whatsapp"],
                        headers=bearer(token), data={"messaging_product": "whatsapp", "type": mime_type},
                        files={"file": (filename, data, mime_type)})
    media_id = _id(answer.get("id"))
    if not media_id:
        raise RetryLater("WhatsApp did not return an id for the uploaded media.")
    return media_id


def whatsapp_media_kind(mime_type: str) -> str:
    """The message type for an uploaded file: WhatsApp's image, video and audio, otherwise a document."""
    major = mime_type.split("/", 1)[0]
    if mime_type in ("image/jpeg", "image/png"):
        return "image"
    if major in ("video", "audio"):
        return major
    return "document"


def send_whatsapp_media(settings: ProviderSettings, token: str, phone_number_id: str, to: str, kind: str,
                        media_id: str, *, caption: str | None, filename: str | None, reference: str) -> str | None:
    """A media message by the id of an upload; the wamid."""
    media: dict = {"id": media_id}
    if caption and kind != "audio":
        media["caption"] = caption
    if filename and kind == "document":
        media["filename"] = filename[:240]
    payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to.lstrip("+"),
               "type": kind, kind: media, "biz_opaque_callback_data": reference}
    answer = graph_post(settings, f"{phone_number_id}/messages", payload, provider_label=LABELS["whatsapp"],
                        headers=bearer(token))
    sent = _list(answer.get("messages"))
    return _id(_dict(sent[0]).get("id")) if sent else None


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    language: str
    status: str
    category: str | None
    components: list


def message_templates(settings: ProviderSettings, token: str, waba_id: str) -> list[TemplateInfo]:
    """Every template of the business account, following Graph's paging."""
    params = {"fields": "name,status,category,language,components", "limit": 100}
    found = []
    for _ in range(MAX_TEMPLATE_PAGES):
        body = graph_get(settings, f"{waba_id}/message_templates", provider_label=LABELS["whatsapp"],
                         headers=bearer(token), params=params)
        for item in _list(body.get("data")):
            item = _dict(item)
            name, language = _text(item.get("name")), _text(item.get("language"))
            if name and language and len(name) <= 512 and len(language) <= 15:
                found.append(TemplateInfo(name, language, (_text(item.get("status")) or "UNKNOWN")[:20].upper(),
                                          (_text(item.get("category")) or None) and item["category"][:30],
                                          [c for c in _list(item.get("components")) if isinstance(c, dict)]))
        after = next_cursor(body)
        if after is None:
            break
        params = {**params, "after": after}
    return found


PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def body_text(components: list) -> str:
    return next((c.get("text") for c in components if isinstance(c, dict) and str(c.get("type")).upper() == "BODY"
                 and isinstance(c.get("text"), str)), "")


def parameter_count(components: list) -> int:
    """How many parameters the body takes: its highest {{n}}, or its distinct named {{placeholders}}."""
    names = PLACEHOLDER.findall(body_text(components))
    numbers = [int(n) for n in names if n.isdigit()]
    return max(numbers) if numbers else len(set(names))


def fill_body(components: list, parameters: list[str]) -> str:
    """The body with the parameters in place: what the person reads."""
    values = iter(parameters)
    by_name: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key.isdigit():
            index = int(key) - 1
            return parameters[index] if 0 <= index < len(parameters) else match.group(0)
        if key not in by_name:
            by_name[key] = next(values, match.group(0))
        return by_name[key]

    return PLACEHOLDER.sub(replace, body_text(components))

