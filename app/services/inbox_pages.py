"""What the inbox pages read beyond services/inbox.py (which holds the rules): a page of the list
with its accounts and contacts, the unread total for the navigation, a conversation with its
account and contact, the live part of a thread, the window and a sync's progress in words, a
template's parameters, and the daily figures laid out as an SVG chart.

Pages compute the change signals of inbox.py from the rows they already hold (`list_version`,
`conversation_version`), so a page costs no extra query for them; the polls then ask inbox.py's
one-query signals and answer 204 while nothing changed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import and_, func, or_, select

from ..extensions import db
from ..models import Conversation, ConversationMessage, Integration, IntegrationLog, MessageTemplate, utcnow
from ..providers import meta_messaging as meta
from ..queue import redis_connection
from . import inbox

PER_PAGE = inbox.PER_PAGE
THREAD_PAGE = 50  # messages shown at first, and per "older"
LIVE_MAX = 300  # messages the live part of a thread may grow to before the thread is drawn again


# --- the list ------------------------------------------------------------------------------------------

@dataclass
class ListPage:
    conversations: list[Conversation]
    page: int
    has_next: bool
    version: str  # inbox.inbox_version of this page


def list_page(organization_id: int, *, channel: str | None, integration_id: int | None, search: str | None,
              page: int) -> ListPage:
    """One page of the list, newest first, with accounts and contacts loaded (one query: one row
    more than the page tells whether a next page exists, without counting them all)."""
    query = inbox.with_details(inbox.conversations_query(organization_id, channel=channel,
                                                         integration_id=integration_id, search=search))
    rows = list(db.session.scalars(query.limit(PER_PAGE + 1).offset((page - 1) * PER_PAGE)))
    shown = rows[:PER_PAGE]
    return ListPage(shown, page, len(rows) > PER_PAGE, list_version(shown))


def list_version(conversations: list[Conversation]) -> str:
    """inbox.inbox_version of a page, from its loaded rows."""
    return inbox.version_of([(c.id, c.updated_at) for c in conversations])


def unread_total(organization_id: int) -> int:
    """Unread messages across the organisation's conversations (the navigation's count)."""
    return db.session.scalar(select(func.coalesce(func.sum(Conversation.unread_count), 0)).where(
        Conversation.organization_id == organization_id, Conversation.unread_count > 0))


def display_name(conversation: Conversation) -> str:
    contact = conversation.contact
    return (conversation.name or (contact.name if contact else None) or (contact.phone if contact else None)
            or (f"+{conversation.external_user_id}" if conversation.channel == "whatsapp"
                else f"{inbox.PLATFORM_NAMES[conversation.channel]} user {conversation.external_user_id}"))


# --- one conversation ------------------------------------------------------------------------------------

def conversation_with_details(organization_id: int, conversation_id: int) -> Conversation | None:
    """The organisation's conversation with its account and contact (None: answer 404)."""
    return db.session.scalar(inbox.with_details(select(Conversation).where(
        Conversation.id == conversation_id, Conversation.organization_id == organization_id)))


def conversation_version(conversation: Conversation) -> str:
    """inbox.conversation_version, from the loaded conversation."""
    return inbox.version_of((conversation.updated_at, conversation.unread_count))


@dataclass
class Thread:
    messages: list[ConversationMessage]  # oldest first
    has_older: bool


def latest(conversation: Conversation) -> Thread:
    """The latest messages, and whether older ones exist (one query: a message more than shown)."""
    found = inbox.messages_of(conversation, limit=THREAD_PAGE + 1)
    return Thread(found[-THREAD_PAGE:], len(found) > THREAD_PAGE)


def older(conversation: Conversation, before: int) -> Thread | None:
    """The messages before the message `before`; None when that message is not in this conversation."""
    if db.session.scalar(select(ConversationMessage.id).where(
            ConversationMessage.id == before, ConversationMessage.conversation_id == conversation.id)) is None:
        return None
    found = inbox.messages_of(conversation, before=before, limit=THREAD_PAGE + 1)
    return Thread(found[-THREAD_PAGE:], len(found) > THREAD_PAGE)


def messages_from(conversation: Conversation, first_id: int) -> list[ConversationMessage] | None:
    """The live part of the thread: the message `first_id` and every later one, oldest first (the
    thread's order: created_at, then id). None when that message is not in this conversation or
    more than LIVE_MAX follow it: the thread is then drawn again from its latest messages."""
    anchor = select(ConversationMessage.created_at).where(
        ConversationMessage.id == first_id, ConversationMessage.conversation_id == conversation.id).scalar_subquery()
    found = list(db.session.scalars(select(ConversationMessage).where(
        ConversationMessage.conversation_id == conversation.id,
        or_(ConversationMessage.created_at > anchor,
            and_(ConversationMessage.created_at == anchor, ConversationMessage.id >= first_id)))
        .order_by(ConversationMessage.created_at, ConversationMessage.id).limit(LIVE_MAX + 1)))
    if not found or found[0].id != first_id or len(found) > LIVE_MAX:
        return None
    return found


INLINE = {"image/jpeg": "image", "image/png": "image", "image/gif": "image", "image/webp": "image",
          "video/mp4": "video", "audio/mpeg": "audio", "audio/ogg": "audio", "audio/aac": "audio", "audio/mp4": "audio"}


def media_display(media: dict | None) -> str:
    """How a message's file shows: image, video or audio (inline from storage), file (a download),
    pending, failed, link (sent by link, not kept), or none."""
    if not media:
        return "none"
    if media.get("storage_key"):
        return INLINE.get(media.get("mime_type") or "", "file")
    return media.get("status") if media.get("status") in ("pending", "failed", "link") else "none"


# --- the window in words ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class WindowNotice:
    state: str  # inbox.Window.state
    headline: str
    detail: str | None
    stale_at: datetime | None  # when time alone changes what may be sent (the poll draws it again then)


def moment_words(moment: datetime, now: datetime) -> str:
    """14:05 UTC (today), tomorrow 14:05 UTC, Tue 3 Jun, 14:05 UTC (UTC days, as the app shows times)."""
    if moment.date() == now.date():
        return f"{moment:%H:%M} UTC"
    if moment.date() == now.date() + timedelta(days=1):
        return f"tomorrow {moment:%H:%M} UTC"
    return f"{moment:%a} {moment.day} {moment:%b}, {moment:%H:%M} UTC"


def window_notice(conversation: Conversation, window: inbox.Window, now: datetime | None = None) -> WindowNotice:
    now = now or utcnow()
    platform = inbox.PLATFORM_NAMES[conversation.channel]
    if window.state == "open":
        detail = None
        if window.human_agent_until:
            detail = (f"After that, {platform} takes replies only from a person on your team (the human agent "
                      f"tag), until {moment_words(window.human_agent_until, now)}.")
        else:
            detail = "After that, WhatsApp takes only approved template messages until they write again."
        return WindowNotice("open", f"You can reply freely until {moment_words(window.closes_at, now)}.", detail,
                            window.closes_at)
    if window.state == "human_agent":
        return WindowNotice("human_agent", f"Human agent reply only, until {moment_words(window.closes_at, now)}.",
                            f"More than 24 hours have passed since their last message: {platform} accepts a reply "
                            "written by a person on your team (sent with the human agent tag), not automated "
                            "messages.", window.closes_at)
    if window.state == "template_only":
        return WindowNotice("template_only", "Only an approved template can be sent now.", window.reason, None)
    return WindowNotice("closed", "Replies are closed.", window.reason, None)


# --- templates ---------------------------------------------------------------------------------------------

def template_for(integration: Integration, template_id: Any) -> MessageTemplate | None:
    """An approved template of this account, by its id as a form sends it."""
    if not isinstance(template_id, str) or not template_id.isdigit() or int(template_id) >= 2**31:
        return None
    return db.session.scalar(select(MessageTemplate).where(
        MessageTemplate.id == int(template_id), MessageTemplate.integration_id == integration.id,
        MessageTemplate.status == "APPROVED"))


def template_body(template: MessageTemplate) -> str:
    return meta.body_text(template.components or [])


def parameter_labels(template: MessageTemplate) -> list[str]:
    """One label per parameter the template takes: {{1}}, {{2}}, ... or its named placeholders in order."""
    names = meta.PLACEHOLDER.findall(template_body(template))
    if any(n.isdigit() for n in names) or not names:
        return [f"{{{{{n}}}}}" for n in range(1, template.parameter_count + 1)]
    return ["{{" + n + "}}" for n in dict.fromkeys(names)]


# --- syncs and their progress -------------------------------------------------------------------------------

SYNC_KINDS = {"conversations": "inbox-sync-", "templates": "inbox-templates-"}
SYNC_FAILURE_EVENTS = {"conversations": "sync_failed", "templates": "templates_sync_failed"}


@dataclass(frozen=True)
class JobProgress:
    done: bool
    ok: bool
    words: str


def job_kind(integration: Integration, job_id: str) -> str | None:
    """Which sync of this account the job id names (ids carry the account's id), or None."""
    return next((kind for kind, prefix in SYNC_KINDS.items() if job_id.startswith(f"{prefix}{integration.id}-")),
                None)


def job_progress(integration: Integration, job_id: str, kind: str) -> JobProgress:
    what = "conversations" if kind == "conversations" else "message templates"
    try:
        job = Job.fetch(job_id, connection=redis_connection())
        status = job.get_status()
        result = job.return_value() if status == JobStatus.FINISHED else None
    except NoSuchJobError:
        return JobProgress(True, False, "This sync is no longer tracked: see the last sync time.")
    except RedisError:
        return JobProgress(True, False, "The job queue is unavailable, so the sync's progress cannot be read.")
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED):
        return JobProgress(False, True, "Queued, waiting for a worker…")
    if status == JobStatus.STARTED:
        return JobProgress(False, True, f"Syncing {what} with Meta…")
    if status == JobStatus.SCHEDULED:
        return JobProgress(False, True, "Meta asked to wait: trying again in a few minutes…")
    if status != JobStatus.FINISHED:
        return JobProgress(True, False, "The sync stopped on an error of ours; it was logged.")
    if result == "failed":
        reason = db.session.scalar(select(IntegrationLog.message).where(
            IntegrationLog.integration_id == integration.id, IntegrationLog.event == SYNC_FAILURE_EVENTS[kind])
            .order_by(IntegrationLog.id.desc()).limit(1))
        return JobProgress(True, False, reason or "The sync failed.")
    if result == "gone":
        return JobProgress(True, False, "This account can no longer be synced.")
    number = str(result).split(" ", 1)[0]  # the jobs answer "3 new messages", "5 templates"
    count = int(number) if number.isdigit() else None
    if kind == "templates":
        return JobProgress(True, True, f"Synced {_count(count, 'template')} from WhatsApp." if count is not None
                           else "Templates synced.")
    return JobProgress(True, True, f"Synced: {_count(count, 'new message')}." if count is not None
                       else "Synced.")


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --- the daily figures as a chart ----------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT = 720, 220
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 40, 710, 12, 190


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # (y, value) of the grid lines
    labels: list[tuple[float, str]]  # (x, day) under the axis
    peak: int


def _nice_peak(value: int) -> int:
    """The top of the axis: four equal whole steps of 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power
    of ten, the first at or above the value (112 → 120: steps of 30)."""
    scale = 1
    while True:
        for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            tick = step * scale
            if tick == int(tick) and tick * 4 >= value:
                return int(tick * 4)
        scale *= 10


def stacked_chart(series: list[dict], groups: list[tuple[str, str]]) -> Chart:
    """Bars per day, one per group side by side (e.g. in and out), each stacked by platform.
    `groups` are (figure, label) pairs: ("messages_in", "in")."""
    days = len(series)
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(days, 1)
    width = slot * 0.8 / len(groups)
    peak = _nice_peak(max([sum(point[p][figure] for p in inbox.PLATFORMS) for point in series
                           for figure, _ in groups] + [0]))
    scale = (PLOT_BOTTOM - PLOT_TOP) / peak
    bars = []
    for index, point in enumerate(series):
        for offset, (figure, label) in enumerate(groups):
            x = PLOT_LEFT + index * slot + slot * 0.1 + offset * width
            top = PLOT_BOTTOM
            for platform in inbox.PLATFORMS:
                value = point[platform][figure]
                if not value:
                    continue
                height = value * scale
                top -= height
                bars.append(Bar(round(x, 1), round(top, 1), round(width - 1, 1), round(height, 1),
                                f"{platform} {figure}", f"{point['day']}: {value:,} {label} on "
                                                         f"{inbox.PLATFORM_NAMES[platform]}"))
    ticks = [(round(PLOT_BOTTOM - peak * f * scale, 1), int(peak * f)) for f in (0, 0.25, 0.5, 0.75, 1)]
    every = 5 if days > 14 else 1
    labels = [(round(PLOT_LEFT + i * slot + slot / 2, 1), _short_day(point["day"]))
              for i, point in enumerate(series) if i % every == 0 or i == days - 1]
    return Chart(bars, ticks, labels, peak)


def _short_day(day: str) -> str:
    moment = datetime.fromisoformat(day)
    return f"{moment.day} {moment:%b}"


@dataclass(frozen=True)
class PlatformTotals:
    platform: str
    name: str
    messages_in: int
    messages_out: int
    busiest_day: str | None
    busiest_conversations: int
    average_conversations: float


def totals(series: list[dict]) -> list[PlatformTotals]:
    """Per platform and for all of them: messages in and out over the period, and conversations a day."""
    rows = []
    for platform, name in [(p, inbox.PLATFORM_NAMES[p]) for p in inbox.PLATFORMS] + [("total", "All channels")]:
        daily = [point[platform] for point in series]
        busiest = max(series, key=lambda point: point[platform]["conversations"]) if series else None
        rows.append(PlatformTotals(
            platform, name, sum(d["messages_in"] for d in daily), sum(d["messages_out"] for d in daily),
            busiest["day"] if busiest and busiest[platform]["conversations"] else None,
            busiest[platform]["conversations"] if busiest else 0,
            round(sum(d["conversations"] for d in daily) / max(len(daily), 1), 1)))
    return rows
