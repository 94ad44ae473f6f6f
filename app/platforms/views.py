"""Connected Meta accounts: the Meta app on the settings page, Connect with Meta (the dialog, its
callback, the pick of a Page), WhatsApp numbers, the connection panel, disconnecting, and the banner
shown across the app when an account needs reconnecting. Rules live in the services."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..models import Integration, utcnow
from ..services import accounts as accounts_svc
from ..services import meta_app, meta_connect, meta_tokens
from ..services.meta_connect import ConnectError
from ..forms import ActionForm
from . import bp
from .forms import MetaAppForm, PickPageForm, WhatsAppForm, attach_errors

PANEL_REFRESH = "every 60s"  # the countdowns move on without a reload


# --- across the app: the banner, the settings section ----------------------------------------

@bp.app_context_processor
def meta_helpers():
    return {"meta_reconnect_needed": _reconnect_needed, "meta_settings": _meta_settings}


def _reconnect_needed() -> list[Integration]:
    if not current_user.is_authenticated:
        return []
    return meta_tokens.reconnect_needed(current_user.organization_id)


def _meta_settings() -> dict:
    """The settings page's Meta section (templates/platforms/_settings_section.html)."""
    app = meta_app.get_app(current_user.organization_id)
    return {"app": meta_app.summary(app), "form": MetaAppForm(formdata=None, data={"app_id": app.app_id if app else ""}),
            "accounts": len(meta_connect.accounts(current_user.organization_id))}


@bp.app_template_filter("countdown")
def countdown(moment: datetime | None, now: datetime | None = None) -> str:
    """A token's expiry in words: "in 59 days", "in 3 hours 12 minutes", "expired 2 days ago"."""
    if moment is None:
        return "no expiry reported"
    seconds = int((moment - (now or utcnow())).total_seconds())
    words = _span(abs(seconds))
    return f"in {words}" if seconds > 0 else f"expired {words} ago"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60

    def unit(n, word):
        return f"{n} {word}{'' if n == 1 else 's'}"
    if days >= 2:
        return unit(days, "day")
    if days == 1:
        return unit(1, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")
    return unit(minutes, "minute") if minutes else "less than a minute"


# --- the Meta app (settings) ------------------------------------------------------------------

@bp.post("/settings/meta-app")
@login_required
def save_meta_app():
    if not current_user.is_admin:
        abort(403)
    form = MetaAppForm()
    rest: list[str] = []
    if form.validate_on_submit():
        result = meta_app.save_credentials(current_user.organization_id, current_user, form.app_id.data,
                                           form.app_secret.data)
        if not result.errors:
            db.session.commit()
            flash(f"Meta app saved. {result.note}", "success")
            return redirect(url_for("auth.settings", _anchor="meta"))
        db.session.rollback()
        rest = attach_errors(form, result.errors)
    app = meta_app.get_app(current_user.organization_id)
    return render_template("platforms/meta_app.html", form=form, app=meta_app.summary(app), problems=rest), 400


# --- Connect with Meta ------------------------------------------------------------------------

def _back_to_settings(reason: str):
    flash(reason, "error")
    return redirect(url_for("auth.settings", _anchor="meta"))


@bp.get("/platforms/connect/<platform>")
@login_required
def connect(platform):
    """A link, not a form: the browser leaves for Meta's dialog by a redirect, which a form's
    submission could not do under the CSP's form-action 'self'."""
    if platform not in meta_connect.OAUTH_PLATFORMS:
        abort(404)
    lead_ads = {"1": True, "0": False}.get(request.args.get("lead_ads", ""))
    try:
        url = meta_connect.authorization_url(current_user, platform, lead_ads)
    except ConnectError as exc:
        db.session.rollback()
        return _back_to_settings(exc.reason)
    db.session.commit()
    return redirect(url)


def _refused(user, exc: ConnectError) -> None:
    db.session.rollback()
    if exc.field == "state":  # a forged, replayed, expired or someone else's answer
        current_app.logger.warning("Connect with Meta callback refused for user %s: %s", user.id, exc.reason)


@bp.get("/api/platforms/callback")
def oauth_callback():
    """Where Meta's dialog sends the browser back (session cookie). An API client that started with its
    bearer token may call it too, and gets JSON. Either way the state must be the caller's own."""
    if "Authorization" in request.headers:
        scheme, _, token = request.headers["Authorization"].partition(" ")
        user = accounts_svc.user_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return jsonify({"error": "A valid API token is required (Authorization: Bearer <token>)."}), 401
        try:
            pending = meta_connect.finish_authorization(user, request.args)
        except ConnectError as exc:
            _refused(user, exc)
            return jsonify({"errors": {exc.field: [exc.reason]}}), 400
        return jsonify({"pending_connection": meta_connect.serialize_pending(pending),
                        "connect_url": url_for("api.connect_pending", pending_id=pending.id)})
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path))
    try:
        pending = meta_connect.finish_authorization(current_user, request.args)
    except ConnectError as exc:
        _refused(current_user, exc)
        return _back_to_settings(exc.reason)
    # An anchor of our own: the browser would otherwise keep the "#_=_" Meta appends to its redirect.
    return redirect(url_for("platforms.pick", pending_id=pending.id, _anchor="pick"))


@bp.route("/platforms/pending/<pending_id>", methods=["GET", "POST"])
@login_required
def pick(pending_id):
    pending = meta_connect.pending_for(current_user, pending_id) or abort(404)
    form = PickPageForm()
    form.page_id.choices = [(page["id"], page["name"]) for page in pending.pages]
    if request.method == "GET":
        form.page_id.data = pending.pages[0]["id"]  # the first Page is preselected
    if form.validate_on_submit():
        try:
            connected = meta_connect.connect_page(current_user, pending, form.page_id.data)
        except ConnectError as exc:
            db.session.rollback()
            if meta_connect.pending_for(current_user, pending_id) is None:  # used up: its tokens are gone
                return _back_to_settings(exc.reason)
            attach_errors(form, {exc.field: [exc.reason]})
        else:
            flash(f"Connected {' and '.join(i.name for i in connected)}; Meta now sends their webhooks here.", "success")
            return redirect(url_for("platforms.index"))
    return render_template("platforms/pick.html", pending=pending, form=form, cancel_form=ActionForm()), \
        400 if form.errors else 200


@bp.post("/platforms/pending/<pending_id>/cancel")
@login_required
def cancel(pending_id):
    pending = meta_connect.pending_for(current_user, pending_id) or abort(404)
    if ActionForm().validate_on_submit():
        meta_connect.discard(pending)
        flash("Nothing was connected; the access Meta granted was dropped.", "info")
    return redirect(url_for("auth.settings", _anchor="meta"))


# --- the connected accounts -------------------------------------------------------------------

@dataclass
class Row:
    account: Integration
    connected: bool
    platform: str
    instagram: str | None  # a Page's Instagram account, or an Instagram account's Page
    reconnect_url: str


def _rows() -> list[Row]:
    found = meta_connect.accounts(current_user.organization_id)
    pages = {(a.config or {}).get("page_id"): a for a in found if a.integration_type == "facebook"}
    instagram = {(a.config or {}).get("page_id"): a for a in found if a.integration_type == "instagram"}
    rows = []
    for account in found:
        page_id = (account.config or {}).get("page_id")
        if account.integration_type == "facebook":
            linked = instagram.get(page_id)
            if linked is None:
                words = "No Instagram professional account linked"
            else:
                words = linked.name if meta_connect.is_connected(linked) else f"{linked.name} (disconnected)"
            reconnect = url_for("platforms.connect", platform="messenger")
        elif account.integration_type == "instagram":
            page = pages.get(page_id)
            words = f"Through the Page {page.name}" if page else f"Through Page {page_id}"
            reconnect = url_for("platforms.connect", platform="instagram")
        else:
            words = None
            reconnect = url_for("platforms.index", reconnect=account.id, _anchor="whatsapp")
        rows.append(Row(account, meta_connect.is_connected(account), meta_connect.PLATFORM_OF_TYPE[account.integration_type],
                        words, reconnect))
    return rows


def _index(whatsapp_form: WhatsAppForm, *, status: int = 200, problems: list[str] | None = None):
    app = meta_app.get_app(current_user.organization_id)
    return render_template("platforms/index.html", rows=_rows(), app=meta_app.summary(app),
                           whatsapp_form=whatsapp_form, problems=problems or [], refresh=PANEL_REFRESH,
                           lead_ads=meta_connect.lead_ads_in_use(current_user.organization_id)), status


@bp.get("/platforms")
@login_required
def index():
    form = WhatsAppForm(formdata=None)
    reconnect = request.args.get("reconnect", "")  # a WhatsApp number to reconnect: its IDs are filled in
    account = None
    if reconnect.isdigit() and int(reconnect) < 2**31:
        account = meta_connect.connected_account(current_user.organization_id, int(reconnect))
    if account is not None and account.integration_type == "whatsapp":
        form.phone_number_id.data = account.config.get("phone_number_id")
        form.business_account_id.data = account.config.get("business_account_id")
    return _index(form)


@bp.get("/platforms/panel")
@login_required
def panel():
    return render_template("platforms/_panel.html", rows=_rows(), refresh=PANEL_REFRESH)


@bp.post("/platforms/whatsapp")
@login_required
def whatsapp():
    form = WhatsAppForm()
    problems: list[str] = []
    if form.validate_on_submit():
        integration, errors = meta_connect.connect_whatsapp(current_user, {
            "phone_number_id": form.phone_number_id.data or "", "business_account_id": form.business_account_id.data or "",
            "access_token": form.access_token.data or ""})
        if not errors:
            flash(f"Connected {integration.name}; Meta now sends its webhooks here.", "success")
            return redirect(url_for("platforms.index"))
        problems = attach_errors(form, errors)
    return _index(form, status=400, problems=problems)


@bp.route("/platforms/<int:integration_id>/disconnect", methods=["GET", "POST"])
@login_required
def disconnect(integration_id):
    account = meta_connect.connected_account(current_user.organization_id, integration_id) or abort(404)
    form = ActionForm()
    if form.validate_on_submit():
        result = meta_connect.disconnect(account, current_user)
        names = " and ".join(a.name for a in result.accounts)
        if result.unsubscribe_problem:
            flash(f"Disconnected {names}: the tokens were removed, but Meta could not be told to stop sending its "
                  f"webhooks ({result.unsubscribe_problem}). Remove the app in the account's settings on Meta.", "error")
        else:
            flash(f"Disconnected {names}: the tokens were removed and Meta stops sending its webhooks.", "success")
        return redirect(url_for("platforms.index"))
    linked = [row.account for row in _rows() if account.integration_type == "facebook"
              and row.account.integration_type == "instagram" and row.connected
              and (row.account.config or {}).get("page_id") == (account.config or {}).get("page_id")]
    return render_template("platforms/disconnect.html", account=account, linked=linked, form=form)
