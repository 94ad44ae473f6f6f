"""The Lead Ads panel of a Facebook integration: lead forms from Meta, the field mapping, the
import of recent leads with its progress, and the recent leads. Parts that ask Meta load by
HTMX, so no page waits on Meta; another organisation's integration is a 404 everywhere."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from ..extensions import db
from ..integrations.views import integration_helpers
from ..providers.base import ProviderError
from ..services import integrations as integrations_svc
from ..services import leads
from ..forms import ActionForm
from . import bp
from .forms import TARGET_CHOICES, ChooseFormForm, MappingJSONForm, mapping_rows

bp.context_processor(integration_helpers)  # the integration pages' header and tabs


@bp.before_request
@login_required
def require_login():
    return None


def _facebook(integration_id: int):
    """A Facebook integration of the organisation; 404 for any other."""
    integration = integrations_svc.get_for_org(current_user.organization_id, integration_id)
    if integration is None or integration.integration_type != "facebook":
        abort(404)
    return integration


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _back_to_panel(integration):
    return redirect(url_for("leads.panel", integration_id=integration.id))


@bp.get("/integrations/<int:integration_id>/lead-ads")
def panel(integration_id):
    """The panel: a fragment for the overview page (HTMX), a page of its own otherwise."""
    integration = _facebook(integration_id)
    if _is_htmx():
        return render_template("leads/_panel.html", **_panel_context(integration))
    return _page(integration)


def _panel_context(integration) -> dict:
    return {"integration": integration, "config": integration.config or {}, "leads": leads.recent_leads(integration),
            "counts": leads.lead_counts(integration), "progress": leads.import_progress(integration),
            "webhook_url": integrations_svc.webhook_url(integration), "action_form": ActionForm()}


def _page(integration, status: int = 200, **parts: str):
    """The panel's own page; `parts` (forms_html, mapping_html) are fragments shown in place of
    their HTMX placeholders: a form posted without HTMX comes back with its errors in place."""
    return render_template("leads/page.html", **_panel_context(integration),
                           **{name: Markup(html) for name, html in parts.items()}), status


@bp.get("/integrations/<int:integration_id>/lead-ads/forms")
def forms(integration_id):
    return _forms(_facebook(integration_id))


def _forms(integration, *, errors=None, chosen=False) -> str:
    try:
        found, meta_error = leads.form_choices(integration), None
    except ProviderError as exc:
        found, meta_error = [], exc.reason
    return render_template("leads/_forms.html", integration=integration, forms=found, meta_error=meta_error,
                           errors=errors or {}, chosen=chosen, form=ChooseFormForm(formdata=None))


@bp.post("/integrations/<int:integration_id>/lead-ads/form")
def choose_form(integration_id):
    integration = _facebook(integration_id)
    form = ChooseFormForm()
    if not form.validate_on_submit():
        abort(400)
    errors = leads.choose_form(integration, (form.form_id.data or "").strip(), current_user)
    if errors:
        db.session.rollback()
        integration = _facebook(integration_id)
        if _is_htmx():  # 200, so htmx swaps the list in with the error
            return _forms(integration, errors=errors)
        return _page(integration, 400, forms_html=_forms(integration, errors=errors))
    db.session.commit()
    if _is_htmx():
        return _forms(integration, chosen=True), 200, {"HX-Trigger": "lead-form-chosen"}
    chosen = (integration.config or {}).get("lead_form_id")
    flash(f"Leads now come from form {chosen}." if chosen else "Leads now come from every form of the page.", "success")
    return _back_to_panel(integration)


@bp.get("/integrations/<int:integration_id>/lead-ads/mapping")
def mapping(integration_id):
    return _mapping(_facebook(integration_id))


def _mapping(integration, *, errors=None, saved=False, json_text=None) -> str:
    try:
        questions, meta_error = leads.form_questions(integration), None
    except ProviderError as exc:
        questions, meta_error = [], exc.reason
    return render_template("leads/_mapping.html", integration=integration, questions=questions, meta_error=meta_error,
                           errors=errors or {}, saved=saved, json_text=json_text, choices=TARGET_CHOICES,
                           mapping=(integration.config or {}).get("lead_field_mapping") or {},
                           json_form=MappingJSONForm(formdata=None))


@bp.post("/integrations/<int:integration_id>/lead-ads/mapping")
def save_mapping(integration_id):
    integration = _facebook(integration_id)
    form = MappingJSONForm()
    if not form.validate_on_submit():
        abort(400)
    if "mapping_json" in request.form:
        json_text = form.mapping_json.data or ""
        errors = leads.save_mapping(integration, json_text, current_user)
    else:
        json_text = None
        rows, problems = mapping_rows(request.form)
        errors = ({"lead_field_mapping": problems} if problems else
                  leads.save_mapping(integration, leads.mapping_from_rows(integration, rows), current_user))
    if errors:
        db.session.rollback()
        integration = _facebook(integration_id)
        editor = _mapping(integration, errors=errors, json_text=json_text)
        if _is_htmx():  # 200, so htmx swaps the editor in with its errors
            return editor
        return _page(integration, 400, mapping_html=editor)
    db.session.commit()
    if _is_htmx():
        return _mapping(integration, saved=True)
    flash("The field mapping was saved.", "success")
    return _back_to_panel(integration)


@bp.post("/integrations/<int:integration_id>/lead-ads/import")
def start_import(integration_id):
    integration = _facebook(integration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        progress, problem = leads.start_import(integration, current_user), None
    except leads.ImportNotPossible as exc:
        progress, problem = leads.import_progress(integration), str(exc)
    if _is_htmx():
        return render_template("leads/_import.html", integration=integration, progress=progress, problem=problem,
                               action_form=ActionForm())
    flash(problem or "The import of recent leads has started.", "error" if problem else "success")
    return _back_to_panel(integration)


@bp.get("/integrations/<int:integration_id>/lead-ads/import")
def import_status(integration_id):
    integration = _facebook(integration_id)
    progress = leads.import_progress(integration)
    response = render_template("leads/_import.html", integration=integration, progress=progress, problem=None,
                               action_form=ActionForm())
    if request.args.get("polling") and (progress or {}).get("status") not in ("queued", "running"):
        return response, 200, {"HX-Trigger": "leads-imported"}  # the list of leads refreshes once
    return response


@bp.get("/integrations/<int:integration_id>/lead-ads/leads")
def recent(integration_id):
    integration = _facebook(integration_id)
    return render_template("leads/_leads.html", integration=integration, leads=leads.recent_leads(integration),
                           counts=leads.lead_counts(integration))
