from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..models import LOG_LEVELS, MESSAGE_STATUSES, WEBHOOK_STATUSES
from ..pagination import requested_page
from ..providers import INTEGRATION_TYPES
from ..services import connection_tests, form_hints, message_stats, messaging, webhooks
from ..services import integrations as svc
from ..forms import ActionForm
from . import bp
from .forms import IntegrationForm, SendingIntegrationForm, SendTestForm, attach_errors, submitted_fields

HUB_ITEMS_PER_TYPE = 10
TYPE_PAGE_SIZE = 50
MESSAGES_PAGE_SIZE = 50
WEBHOOKS_PAGE_SIZE = 20


@bp.before_request
@login_required
def require_login():
    return None


def _owned(integration_id: int):
    integration = svc.get_for_org(current_user.organization_id, integration_id)
    if integration is None:
        abort(404)
    return integration


@bp.context_processor
def integration_helpers():
    """For the integration pages' header and tabs."""
    def about(integration) -> dict:
        provider = svc.provider_of(integration)
        return {"type_label": INTEGRATION_TYPES[integration.integration_type].label, "provider_label": provider.label,
                "sends": message_stats.is_sending_integration(integration),
                "receives_webhooks": provider.receives_webhooks}
    return {"about": about, "display_payload": message_stats.display_payload}


def _sending(integration_id: int):
    """An email, SMS or WhatsApp integration of the organisation; 404 for any other."""
    integration = _owned(integration_id)
    if not message_stats.is_sending_integration(integration):
        abort(404)
    return integration


def _receiving(integration_id: int):
    """An integration of the organisation whose provider posts webhooks; 404 for any other."""
    integration = _owned(integration_id)
    if not svc.provider_of(integration).receives_webhooks:
        abort(404)
    return integration


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


@bp.get("/")
def home():
    return redirect(url_for("integrations.hub"))


@bp.get("/integrations")
def hub():
    return render_template("integrations/hub.html", types=INTEGRATION_TYPES, per_type=HUB_ITEMS_PER_TYPE,
                           cards=svc.hub_cards(current_user.organization_id, HUB_ITEMS_PER_TYPE))


@bp.get("/integrations/type/<integration_type>")
def type_list(integration_type):
    kind = INTEGRATION_TYPES.get(integration_type) or abort(404)
    rows = db.session.execute(svc.type_list_query(current_user.organization_id, integration_type)
                              .limit(TYPE_PAGE_SIZE + 1).offset((requested_page() - 1) * TYPE_PAGE_SIZE)).all()
    return render_template("integrations/type_list.html", kind=kind, rows=rows[:TYPE_PAGE_SIZE],
                           page=requested_page(), has_next=len(rows) > TYPE_PAGE_SIZE)


@bp.route("/integrations/new/<integration_type>", methods=["GET", "POST"])
def new(integration_type):
    kind = INTEGRATION_TYPES.get(integration_type) or abort(404)
    provider = kind.provider(request.values.get("provider", "")) or kind.providers[0]
    form = IntegrationForm()
    field_errors: dict[str, list[str]] = {}
    if _is_htmx() and request.method == "GET":
        return render_template("integrations/_fields.html", provider=provider, values={}, secrets_set={},
                               errors={}, suggestions=form_hints.suggestions(current_user.organization_id, provider))
    values = submitted_fields(provider, request.form) if request.method == "POST" else {}
    if form.validate_on_submit():
        integration, field_errors = svc.create_integration(current_user.organization_id, current_user,
                                                           integration_type, form.name.data, provider.name)
        if integration is not None:
            field_errors = svc.configure(integration, values, current_user, partial=False)
        if not field_errors:
            db.session.commit()
            flash(f"{integration.name} was added. Run a connection test to make it active.", "success")
            return redirect(url_for("integrations.detail", integration_id=integration.id))
        db.session.rollback()
    status = 400 if request.method == "POST" else 200
    return render_template("integrations/form.html", kind=kind, provider=provider, form=form, values=values,
                           secrets_set={}, errors=field_errors, integration=None,
                           suggestions=form_hints.suggestions(current_user.organization_id, provider)), status


@bp.get("/integrations/<int:integration_id>")
def detail(integration_id):
    return _detail_page(_owned(integration_id))


def _detail_page(integration, send_form: SendTestForm | None = None, send_errors: dict | None = None,
                 status: int = 200):
    latest_test = connection_tests.latest_test(integration)
    provider = svc.provider_of(integration)
    sending = {}
    if message_stats.is_sending_integration(integration):
        sending = {"send_form": send_form or SendTestForm(formdata=None), "send_errors": send_errors or {},
                   "delivery": message_stats.delivery_stats(integration), **_outbox(integration)}
    return render_template("integrations/detail.html", integration=integration, data=svc.serialize(integration),
                           provider=provider, kind=INTEGRATION_TYPES[integration.integration_type],
                           unknown_campaigns=form_hints.unknown_campaigns(integration, provider),
                           test=latest_test, action_form=ActionForm(),
                           recent_logs=db.session.scalars(svc.logs_query(integration, None).limit(5)).all(),
                           **sending), status


@bp.route("/integrations/<int:integration_id>/edit", methods=["GET", "POST"])
def edit(integration_id):
    integration = _owned(integration_id)
    provider = svc.provider_of(integration)
    sending = message_stats.is_sending_integration(integration)
    form = SendingIntegrationForm(obj=integration) if sending else IntegrationForm(obj=integration)
    field_errors: dict[str, list[str]] = {}
    values = dict(integration.config or {})
    if request.method == "POST":
        values.update(submitted_fields(provider, request.form))
    if form.validate_on_submit():
        changes = {"name": form.name.data, **(form.sending_settings() if sending else {})}
        field_errors = attach_errors(form, svc.update(integration, changes, current_user))
        if not field_errors and not form.errors:
            field_errors = svc.configure(integration, values, current_user, partial=False)
        if not field_errors and not form.errors:
            db.session.commit()
            flash("Saved.", "success")
            return redirect(url_for("integrations.detail", integration_id=integration.id))
        db.session.rollback()
        integration = _owned(integration_id)
    secrets_set = svc.serialize(integration)["secrets"]
    status = 400 if request.method == "POST" else 200
    return render_template("integrations/form.html", kind=INTEGRATION_TYPES[integration.integration_type],
                           provider=provider, form=form, values=values, secrets_set=secrets_set,
                           errors=field_errors, integration=integration, sending=sending,
                           default_rate=provider.default_rate_limit,
                           suggestions=form_hints.suggestions(current_user.organization_id, provider)), status


@bp.post("/integrations/<int:integration_id>/active")
def set_active(integration_id):
    integration = _owned(integration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    activate = request.form.get("active") == "1"
    svc.update(integration, {"is_active": activate}, current_user)
    db.session.commit()
    flash(f"{integration.name} is {'active again: run a test to confirm it' if activate else 'deactivated'}.", "success")
    return redirect(url_for("integrations.detail", integration_id=integration.id))


@bp.route("/integrations/<int:integration_id>/delete", methods=["GET", "POST"])
def delete(integration_id):
    integration = _owned(integration_id)
    form = ActionForm()
    if form.validate_on_submit():
        name = integration.name
        svc.delete(integration, current_user)
        db.session.commit()
        flash(f"{name} was deleted.", "success")
        return redirect(url_for("integrations.hub"))
    return render_template("integrations/delete.html", integration=integration, form=form)


@bp.post("/integrations/<int:integration_id>/test")
def start_test(integration_id):
    integration = _owned(integration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        test = connection_tests.request_test(integration, current_user)
    except connection_tests.QueueUnavailable as exc:
        if _is_htmx():
            return render_template("integrations/_test_status.html", integration=integration, test=None,
                                   queue_error=str(exc))
        flash(str(exc), "error")
        return redirect(url_for("integrations.detail", integration_id=integration.id))
    if _is_htmx():
        return render_template("integrations/_test_status.html", integration=integration, test=test)
    return redirect(url_for("integrations.detail", integration_id=integration.id))


@bp.get("/integrations/<int:integration_id>/tests/<test_id>")
def test_status(integration_id, test_id):
    integration = _owned(integration_id)
    test = connection_tests.get_test(current_user.organization_id, integration.id, test_id) or abort(404)
    response = render_template("integrations/_test_status.html", integration=integration, test=test)
    if test.done:
        # Tell the page to refresh the status badge and error count now the test is over.
        return response, 200, {"HX-Trigger": "integration-tested"}
    return response


@bp.get("/integrations/<int:integration_id>/summary")
def summary(integration_id):
    integration = _owned(integration_id)
    return render_template("integrations/_summary.html", integration=integration)


@bp.get("/integrations/<int:integration_id>/logs")
def logs(integration_id):
    integration = _owned(integration_id)
    level = request.args.get("level") if request.args.get("level") in LOG_LEVELS else None
    page = db.paginate(svc.logs_query(integration, level), page=requested_page(), per_page=50, error_out=False)
    return render_template("integrations/logs.html", integration=integration, page=page, level=level,
                           levels=LOG_LEVELS)


@bp.get("/integrations/stats")
def stats():
    return render_template("integrations/stats.html", stats=svc.stats(current_user.organization_id),
                           types=INTEGRATION_TYPES)


# ---- sending: the test form, the outbox, a message's timeline, delivery rates ----------------

def _poll_seconds(integration, messages) -> int | None:
    return message_stats.poll_seconds(messages, receipts=svc.provider_of(integration).receives_webhooks)


def _outbox(integration) -> dict:
    messages = message_stats.recent_messages(integration)
    return {"messages": messages, "outbox_version": message_stats.outbox_version(messages),
            "outbox_poll": _poll_seconds(integration, messages)}


@bp.post("/integrations/<int:integration_id>/send")
def send_test(integration_id):
    """A real send through the pipeline (messaging.create_message), like POST /api/messages/."""
    integration = _sending(integration_id)
    form = SendTestForm()
    if not form.validate_on_submit():
        abort(400)
    message, errors, _ = messaging.create_message(current_user.organization_id,
                                                  form.message_data(integration.id, integration.integration_type))
    if errors:
        other_errors = attach_errors(form, errors)
        if _is_htmx():  # 200, so htmx swaps the form in with its errors
            return render_template("integrations/_send_form.html", integration=integration, send_form=form,
                                   send_errors=other_errors)
        return _detail_page(integration, form, other_errors, status=400)
    if _is_htmx():
        fresh = SendTestForm(formdata=None, data={"to": form.to.data, "subject": form.subject.data})
        return (render_template("integrations/_send_form.html", integration=integration, send_form=fresh,
                                send_errors={}, sent=message),
                200, {"HX-Trigger": "message-sent"})
    flash(f"Test message to {message.recipient} is {message.status}. Follow it in the outbox.", "success")
    return redirect(url_for("integrations.detail", integration_id=integration.id, _anchor="outbox"))


@bp.get("/integrations/<int:integration_id>/outbox")
def outbox(integration_id):
    """The outbox fragment. A poll that brings the version it shows gets 204 (htmx swaps nothing)."""
    integration = _sending(integration_id)
    data = _outbox(integration)
    if request.args.get("since") == data["outbox_version"]:
        return "", 204
    return render_template("integrations/_outbox.html", integration=integration, **data)


@bp.get("/integrations/<int:integration_id>/messages")
def messages(integration_id):
    integration = _sending(integration_id)
    status = request.args.get("status") if request.args.get("status") in MESSAGE_STATUSES else None
    page = db.paginate(message_stats.messages_query(integration, status), page=requested_page(),
                       per_page=MESSAGES_PAGE_SIZE, error_out=False)
    return render_template("integrations/messages.html", integration=integration, page=page, status=status,
                           statuses=MESSAGE_STATUSES)


@bp.get("/integrations/<int:integration_id>/messages/<message_id>")
def message(integration_id, message_id):
    integration = _sending(integration_id)
    found = message_stats.message_for(integration, message_id) or abort(404)
    version = message_stats.message_version(found)
    context = {"integration": integration, "message": found, "version": version,
               "poll": _poll_seconds(integration, [found])}
    if _is_htmx():
        if request.args.get("since") == version:
            return "", 204
        return render_template("integrations/_message.html", **context)
    return render_template("integrations/message.html", **context)


@bp.get("/integrations/<int:integration_id>/delivery")
def delivery(integration_id):
    integration = _sending(integration_id)
    return render_template("integrations/delivery.html", integration=integration,
                           delivery=message_stats.delivery_stats(integration),
                           definitions=message_stats.RATE_DEFINITIONS)


# ---- the webhook inspector ----------------------------------------------------------------

@bp.get("/integrations/<int:integration_id>/webhooks")
def webhook_events(integration_id):
    integration = _receiving(integration_id)
    status = request.args.get("status") if request.args.get("status") in WEBHOOK_STATUSES else None
    page = db.paginate(message_stats.webhook_events_query(integration, status), page=requested_page(),
                       per_page=WEBHOOKS_PAGE_SIZE, error_out=False)
    return render_template("integrations/webhooks.html", integration=integration, page=page, status=status,
                           statuses=WEBHOOK_STATUSES, webhook_url=svc.webhook_url(integration),
                           action_form=ActionForm())


@bp.get("/integrations/<int:integration_id>/webhooks/<int:event_id>")
def webhook_event(integration_id, event_id):
    """One event's row, which polls itself while the event waits to be processed."""
    integration = _receiving(integration_id)
    event = message_stats.webhook_event_for(integration, event_id) or abort(404)
    return render_template("integrations/_webhook_event.html", integration=integration, event=event,
                           action_form=ActionForm())


@bp.post("/integrations/<int:integration_id>/webhooks/<int:event_id>/replay")
def replay_webhook_event(integration_id, event_id):
    integration = _receiving(integration_id)
    event = message_stats.webhook_event_for(integration, event_id) or abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    webhooks.replay(event)
    if _is_htmx():
        return render_template("integrations/_webhook_event.html", integration=integration, event=event,
                               action_form=ActionForm())
    flash(f"Webhook event {event.id} was queued for processing again.", "success")
    return redirect(url_for("integrations.webhook_events", integration_id=integration.id))
