"""The inbox: one list of Messenger, Instagram and WhatsApp conversations, a conversation with its
history and a reply box that follows the platform's window, the syncs of connected accounts with
their progress, and the daily figures. Rules and queries live in services/inbox.py and
services/inbox_pages.py.

Live without a reload: the list and the open conversation poll every few seconds with the version
they show (services/inbox.py's change signals); an unchanged one answers 204 after one query.
Reading a conversation is a POST that the page sends once it is shown (and again when new messages
arrive while it is open), so a GET never changes read state."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from redis.exceptions import RedisError

from ..models import utcnow
from ..pagination import requested_page
from ..providers.meta_messaging import size_words
from ..services import inbox, meta_connect
from ..services import inbox_pages as pages
from ..forms import ActionForm
from . import bp
from .forms import ReplyForm

POLL_SECONDS = 3
JOB_POLL_SECONDS = 1
FORM_ALLOWANCE = 64 * 1024  # the reply's other fields and the multipart framing, beside the file
STATS_PERIODS = (7, 30, 90)


@bp.before_request
@login_required
def require_login():
    return None


@bp.url_value_preprocessor
def allow_media_uploads(endpoint, values):
    """A reply may carry a file as large as MEDIA_MAX_BYTES; every other request keeps the app's
    1 MB. Set here because URL preprocessors run before the app's before_request hooks (CSRF, the
    NUL check), which read the form."""
    if endpoint == "inbox.reply":
        request.max_content_length = current_app.config["MEDIA_MAX_BYTES"] + FORM_ALLOWANCE


@bp.app_context_processor
def inbox_helpers():
    def unread_total() -> int:
        return pages.unread_total(current_user.organization_id) if current_user.is_authenticated else 0
    return {"inbox_unread_total": unread_total}


@bp.context_processor
def page_helpers():
    return {"display_name": pages.display_name, "platform_names": inbox.PLATFORM_NAMES,
            "media_display": pages.media_display, "template_labels": pages.parameter_labels,
            "template_body": pages.template_body, "poll_seconds": POLL_SECONDS,
            "job_poll_seconds": JOB_POLL_SECONDS}


@bp.app_template_filter("short_time")
def short_time(moment) -> str:
    """14:05 today, 3 Jun this year, 3 Jun 2025 before (UTC)."""
    if moment is None:
        return ""
    now = utcnow()
    if moment.date() == now.date():
        return moment.strftime("%H:%M")
    return f"{moment.day} {moment:%b}" + ("" if moment.year == now.year else f" {moment.year}")


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


# --- the list --------------------------------------------------------------------------------------------

@dataclass
class Filters:
    channel: str | None
    account: int | None
    search: str
    page: int

    @property
    def args(self) -> dict:
        """The filters as query arguments, for links that keep them."""
        return {k: v for k, v in (("channel", self.channel), ("account", self.account), ("q", self.search),
                                  ("page", self.page if self.page > 1 else None)) if v}

    def at_page(self, page: int) -> dict:
        return {**self.args, "page": page} if page > 1 else {k: v for k, v in self.args.items() if k != "page"}

    @property
    def active(self) -> bool:
        return bool(self.channel or self.account or self.search)


def _filters() -> Filters:
    channel = request.args.get("channel")
    account = request.args.get("account", "")
    return Filters(channel if channel in inbox.PLATFORMS else None,
                   int(account) if account.isdigit() and 0 < int(account) < 2**31 else None,
                   (request.args.get("q") or "").strip()[:100], requested_page())


def _listing(filters: Filters) -> pages.ListPage:
    return pages.list_page(current_user.organization_id, channel=filters.channel, integration_id=filters.account,
                           search=filters.search, page=filters.page)


def _page(current: dict | None = None, status: int = 200):
    filters = _filters()
    return render_template("inbox/index.html", filters=filters, listing=_listing(filters),
                           accounts=meta_connect.accounts(current_user.organization_id),
                           current_id=current["conversation"].id if current else None, **(current or {})), status


@bp.get("/inbox")
def index():
    return _page()


@bp.get("/inbox/list")
def list_poll():
    """The list again, unless the version the page shows (`v`) is still the current one: 204."""
    filters = _filters()
    if request.args.get("v") == inbox.inbox_version(
            current_user.organization_id, channel=filters.channel, integration_id=filters.account,
            search=filters.search, page=filters.page):
        return "", 204
    current_id = request.args.get("current", type=int)
    return render_template("inbox/_list.html", filters=filters, listing=_listing(filters), current_id=current_id,
                           refresh_nav=True)


# --- a conversation -----------------------------------------------------------------------------------------

@dataclass
class Composer:
    mode: str  # free, template, closed or blocked (the account cannot send)
    problem: str | None = None  # why nothing can be sent (blocked, closed)
    templates: list = field(default_factory=list)
    template: object | None = None  # the template picked
    parameters: list[str] = field(default_factory=list)
    refusal: str | None = None  # the window's or the account's answer to the last attempt
    errors: dict = field(default_factory=dict)  # by field, for those no input shows
    sent: object | None = None


def _owned(conversation_id: int):
    return pages.conversation_with_details(current_user.organization_id, conversation_id) or abort(404)


def _composer(conversation, *, form: ReplyForm | None = None, **state) -> dict:
    """What the reply box shows now: free text, the template picker, or why nothing can be sent."""
    window = inbox.window(conversation)
    account_problem = inbox.refusal_for(conversation, conversation.integration, {"kind": "template"})
    if account_problem:
        composer = Composer("blocked", account_problem, **state)
    elif window.needs_template:
        composer = Composer("template", **state)
        composer.templates = inbox.approved_templates(conversation.integration)
        if composer.template is None and composer.templates:
            composer.template = composer.templates[0]
    elif window.reason:
        composer = Composer("closed", window.reason, **state)
    else:
        composer = Composer("free", **state)
    return {"composer": composer, "form": form or ReplyForm(formdata=None), "conversation": conversation,
            "action_form": ActionForm(formdata=None)}


def _live(conversation, messages: list) -> dict:
    """The live part of the thread: its messages, the window in words, and what the poll sends back."""
    notice = pages.window_notice(conversation, inbox.window(conversation))
    return {"conversation": conversation, "messages": messages, "notice": notice,
            "version": pages.conversation_version(conversation), "first_id": messages[0].id if messages else None,
            "stale_at": int(inbox.unix(notice.stale_at)) + 1 if notice.stale_at else None}


def _conversation_context(conversation, **composer_state) -> dict:
    thread = pages.latest(conversation)
    return {"conversation": conversation, "thread": thread, **_live(conversation, thread.messages),
            **_composer(conversation, **composer_state), "syncable": inbox.syncable(conversation.integration)}


@bp.get("/inbox/<int:conversation_id>")
def conversation(conversation_id):
    return _page(_conversation_context(_owned(conversation_id)))


@bp.get("/inbox/<int:conversation_id>/thread")
def thread(conversation_id):
    """The live part of the thread again, unless the version it shows (`v`) is current and time has
    not changed the window (`until`): 204. `first` is its first message: it grows from there, so
    messages loaded with "older" stay in place."""
    version = inbox.conversation_version(current_user.organization_id, conversation_id)
    if version is None:
        abort(404)
    until = request.args.get("until", type=int)
    if request.args.get("v") == version and not (until and time.time() >= until):
        return "", 204
    conversation = _owned(conversation_id)
    first = request.args.get("first", type=int)
    messages = pages.messages_from(conversation, first) if first and first < 2**31 else None
    if messages is None:  # drawn again whole: too much arrived, or the thread had no message yet
        template, context = "inbox/_thread.html", _conversation_context(conversation)
        headers = {"HX-Retarget": "#thread", "HX-Reswap": "innerHTML"}
    else:
        template, headers = "inbox/_live.html", {}
        context = {**_live(conversation, messages), **_composer(conversation)}
    # The reply box is drawn again only when what it offers changed (free text, templates, nothing),
    # so a poll never wipes what someone is typing.
    context["composer_oob"] = request.args.get("composer") != context["composer"].mode
    return render_template(template, **context), 200, headers


@bp.get("/inbox/<int:conversation_id>/older")
def older(conversation_id):
    conversation = _owned(conversation_id)
    before = request.args.get("before", type=int)
    if not before or before >= 2**31:
        abort(400)
    batch = pages.older(conversation, before) or abort(404)
    return render_template("inbox/_older.html", conversation=conversation, thread=batch)


@bp.post("/inbox/<int:conversation_id>/read")
def mark_read(conversation_id):
    """The person has the conversation in front of them: unread back to 0, read at Meta (a job)."""
    conversation = _owned(conversation_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    inbox.open_conversation(conversation)
    if _is_htmx():
        return "", 204, {"HX-Trigger": "conversation-read"}
    return redirect(url_for("inbox.conversation", conversation_id=conversation_id))


@bp.get("/inbox/<int:conversation_id>/composer")
def composer(conversation_id):
    return render_template("inbox/_composer.html", **_composer(_owned(conversation_id)))


@bp.get("/inbox/<int:conversation_id>/template-fields")
def template_fields(conversation_id):
    conversation = _owned(conversation_id)
    template = pages.template_for(conversation.integration, request.args.get("template"))
    return render_template("inbox/_template_params.html", template=template, parameters=[])


@bp.errorhandler(413)
def too_large(error):
    """A file over the reply's limit: said in the reply box (htmx), where the error page the rest of
    the app shows would not appear. The body was refused unread, so the box comes back empty."""
    conversation = None
    if request.endpoint == "inbox.reply" and _is_htmx() and current_user.is_authenticated:
        conversation = pages.conversation_with_details(current_user.organization_id,
                                                       request.view_args["conversation_id"])
    if conversation is None:
        return render_template("error.html", status=413, title="Too large",
                               text="The request body is larger than this endpoint accepts."), 413
    form = ReplyForm(formdata=None)
    form.upload.errors = [f"The file is larger than the {size_words(current_app.config['MEDIA_MAX_BYTES'])} limit: "
                          "send a smaller one, or a link to it."]
    return render_template("inbox/_composer.html", **_composer(conversation, form=form))


@bp.post("/inbox/<int:conversation_id>/reply")
def reply(conversation_id):
    conversation = _owned(conversation_id)
    form = ReplyForm()
    if not form.validate_on_submit():
        abort(400)
    parameters = request.form.getlist("parameter")
    data, upload, errors = form.reply(conversation, parameters)
    message, refusal = None, None
    if not errors:
        message, errors, refusal = inbox.send_reply(conversation, current_user, data, upload=upload)
    if message is not None:
        if _is_htmx():
            return render_template("inbox/_composer.html", **_composer(_owned(conversation_id), sent=message)), \
                200, {"HX-Trigger": "reply-sent"}
        flash("Reply queued.", "success")
        return redirect(url_for("inbox.conversation", conversation_id=conversation_id, _anchor="composer"))
    for name, problems in errors.items():
        if name in form and name != "template":
            form[name].errors = list(form[name].errors) + problems
    state = {"refusal": refusal, "errors": {k: v for k, v in errors.items() if k not in form or k == "template"},
             "template": pages.template_for(conversation.integration, form.template.data),
             "parameters": parameters}
    if _is_htmx():  # 200, so htmx swaps the reply box in with its errors
        return render_template("inbox/_composer.html", **_composer(conversation, form=form, **state))
    return _page(_conversation_context(conversation, form=form, **state), status=409 if refusal else 400)


# --- syncs of connected accounts -------------------------------------------------------------------------------

def _account(integration_id: int):
    return meta_connect.connected_account(current_user.organization_id, integration_id) or abort(404)


def _start_sync(integration, kind: str):
    if not ActionForm().validate_on_submit():
        abort(400)
    job_id, progress = None, None
    try:
        if kind == "templates":
            job_id = inbox.request_template_sync(integration)
        else:
            job_id = inbox.request_sync(integration)
            if job_id is None:
                progress = pages.JobProgress(True, True, "A sync of this account is already running.")
    except RedisError:
        progress = pages.JobProgress(True, False, "The job queue is unavailable; try again in a moment.")
    if job_id is not None:
        progress = pages.job_progress(integration, job_id, kind)
    if _is_htmx():
        return render_template("inbox/_sync_status.html", integration=integration, job_id=job_id, kind=kind,
                               progress=progress)
    flash(f"{integration.name}: {progress.words}", "success" if progress.ok else "error")
    return redirect(url_for("platforms.index"))


@bp.post("/inbox/accounts/<int:integration_id>/sync")
def sync_account(integration_id):
    """Sync now: recent Messenger or Instagram conversations, what webhooks may have missed."""
    integration = _account(integration_id)
    if not inbox.syncable(integration):
        abort(404)
    return _start_sync(integration, "conversations")


@bp.post("/inbox/accounts/<int:integration_id>/templates/sync")
def sync_templates(integration_id):
    integration = _account(integration_id)
    if integration.integration_type != "whatsapp":
        abort(404)
    return _start_sync(integration, "templates")


@bp.get("/inbox/accounts/<int:integration_id>/jobs/<job_id>")
def sync_progress(integration_id, job_id):
    integration = _account(integration_id)
    kind = pages.job_kind(integration, job_id) or abort(404)
    progress = pages.job_progress(integration, job_id, kind)
    headers = {"HX-Trigger": "templates-synced"} if progress.done and progress.ok and kind == "templates" else {}
    return render_template("inbox/_sync_status.html", integration=integration, job_id=job_id, kind=kind,
                           progress=progress), 200, headers


# --- the daily figures ------------------------------------------------------------------------------------------

@bp.get("/inbox/stats")
def stats():
    days = request.args.get("days", 30, type=int)
    days = days if days in STATS_PERIODS else 30
    series = inbox.daily_stats(current_user.organization_id, days)
    return render_template("inbox/stats.html", days=days, periods=STATS_PERIODS, series=series,
                           messages=pages.stacked_chart(series, [("messages_in", "in"), ("messages_out", "out")]),
                           conversations=pages.stacked_chart(series, [("conversations", "conversations")]),
                           totals=pages.totals(series), chart=pages)
