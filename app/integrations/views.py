from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..models import LOG_LEVELS
from ..pagination import requested_page
from ..providers import INTEGRATION_TYPES
from ..services import connection_tests
from ..services import integrations as svc
from . import bp
from .forms import ActionForm, IntegrationForm, submitted_fields

HUB_ITEMS_PER_TYPE = 10
TYPE_PAGE_SIZE = 50


@bp.before_request
@login_required
def require_login():
    return None


def _owned(integration_id: int):
    integration = svc.get_for_org(current_user.organization_id, integration_id)
    if integration is None:
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
                               errors={})
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
                           secrets_set={}, errors=field_errors, integration=None), status


@bp.get("/integrations/<int:integration_id>")
def detail(integration_id):
    integration = _owned(integration_id)
    latest_test = connection_tests.latest_test(integration)
    return render_template("integrations/detail.html", integration=integration, data=svc.serialize(integration),
                           provider=svc.provider_of(integration), kind=INTEGRATION_TYPES[integration.integration_type],
                           test=latest_test, action_form=ActionForm(),
                           recent_logs=db.session.scalars(svc.logs_query(integration, None).limit(5)).all())


@bp.route("/integrations/<int:integration_id>/edit", methods=["GET", "POST"])
def edit(integration_id):
    integration = _owned(integration_id)
    provider = svc.provider_of(integration)
    form = IntegrationForm(obj=integration)
    field_errors: dict[str, list[str]] = {}
    values = dict(integration.config or {})
    if request.method == "POST":
        values.update(submitted_fields(provider, request.form))
    if form.validate_on_submit():
        field_errors = svc.update(integration, {"name": form.name.data}, current_user)
        if not field_errors:
            field_errors = svc.configure(integration, values, current_user, partial=False)
        if not field_errors:
            db.session.commit()
            flash("Saved.", "success")
            return redirect(url_for("integrations.detail", integration_id=integration.id))
        db.session.rollback()
        integration = _owned(integration_id)
    secrets_set = svc.serialize(integration)["secrets"]
    status = 400 if request.method == "POST" else 200
    return render_template("integrations/form.html", kind=INTEGRATION_TYPES[integration.integration_type],
                           provider=provider, form=form, values=values, secrets_set=secrets_set,
                           errors=field_errors, integration=integration), status


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
