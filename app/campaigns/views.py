"""Campaign pages: the list, a campaign with its steps (and each step's messages) and its
enrolled contacts, and the forms to change them. The rules live in services/campaigns.py."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from wtforms.fields.choices import SelectChoice

from ..extensions import db
from ..models import CHANNELS, CampaignStep
from ..pagination import requested_page
from ..services import campaigns as svc
from ..services import integrations as integrations_svc
from ..forms import ActionForm
from . import bp
from .forms import CHANNEL_LABELS, FIRST_ACTIVE, CampaignForm, StepForm

ENROLLMENTS_PAGE_SIZE = 50


@bp.before_request
@login_required
def require_login():
    return None


def _owned(campaign_id: int):
    return svc.get_for_org(current_user.organization_id, campaign_id) or abort(404)


def _owned_step(campaign, step_id: int) -> CampaignStep:
    return next((s for s in campaign.steps if s.id == step_id), None) or abort(404)


def _step_form(**kwargs) -> StepForm:
    form = StepForm(**kwargs)
    sending = [i for i in integrations_svc.list_for_org(current_user.organization_id) if i.integration_type in CHANNELS]
    form.integration_id.choices = [FIRST_ACTIVE] + [
        SelectChoice(str(i.id), f"{CHANNEL_LABELS[i.integration_type]} · {i.name}") for i in sending]
    return form


@bp.app_template_filter("delay")
def delay(minutes: int) -> str:
    return svc.describe_delay(minutes)


@bp.get("/campaigns")
def index():
    return render_template("campaigns/index.html", rows=svc.list_for_org(current_user.organization_id))


@bp.route("/campaigns/new", methods=["GET", "POST"])
def new():
    form = CampaignForm()
    if form.validate_on_submit():
        campaign, errors = svc.create(current_user.organization_id, {"name": form.name.data,
                                                                     "description": form.description.data})
        if not errors:
            db.session.commit()
            flash(f"Campaign {campaign.name} created. Add its first step.", "success")
            return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
        db.session.rollback()
        for name, problems in errors.items():
            getattr(form, name, form.name).errors = problems
    return render_template("campaigns/form.html", form=form, campaign=None), 400 if form.errors else 200


@bp.get("/campaigns/<int:campaign_id>")
def detail(campaign_id):
    return _detail_page(_owned(campaign_id))


def _detail_page(campaign, step_form: StepForm | None = None, status: int = 200):
    step_form = step_form or _step_form(formdata=None)
    enrollments = db.paginate(svc.enrollments_query(campaign), page=requested_page(),
                              per_page=ENROLLMENTS_PAGE_SIZE, error_out=False)
    return render_template("campaigns/detail.html", campaign=campaign, enrollments=enrollments,
                           counts=svc.step_message_counts(campaign), by_status=svc.enrollment_counts(campaign),
                           recent={s.id: svc.step_messages(s, 10) for s in campaign.steps},
                           step_form=step_form, integration_names={c.value: c.label for c in step_form.integration_id.choices[1:]},
                           action_form=ActionForm()), status


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
def edit(campaign_id):
    campaign = _owned(campaign_id)
    form = CampaignForm(obj=campaign)
    if form.validate_on_submit():
        errors = svc.update_details(campaign, {"name": form.name.data, "description": form.description.data})
        if not errors:
            db.session.commit()
            flash("Campaign saved.", "success")
            return redirect(url_for("campaigns.detail", campaign_id=campaign.id))
        db.session.rollback()
        for name, problems in errors.items():
            getattr(form, name, form.name).errors = problems
    return render_template("campaigns/form.html", form=form, campaign=campaign), 400 if form.errors else 200


@bp.post("/campaigns/<int:campaign_id>/active")
def set_active(campaign_id):
    campaign = _owned(campaign_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    resume = not campaign.is_active
    svc.update_details(campaign, {"is_active": resume})
    db.session.commit()
    if resume:
        svc.sweep()  # steps that came due while paused go out now, not at the next minute's sweep
    flash("Campaign resumed: due steps go out now." if resume else
          "Campaign paused: no step runs until you resume it.", "success")
    return redirect(url_for("campaigns.detail", campaign_id=campaign.id))


@bp.route("/campaigns/<int:campaign_id>/delete", methods=["GET", "POST"])
def delete(campaign_id):
    campaign = _owned(campaign_id)
    form = ActionForm()
    if form.validate_on_submit():
        name = campaign.name
        svc.delete(campaign)
        db.session.commit()
        flash(f"Campaign {name} deleted. Its contacts and the messages it sent are kept.", "success")
        return redirect(url_for("campaigns.index"))
    enrolled = sum(svc.enrollment_counts(campaign).values())
    return render_template("campaigns/delete.html", campaign=campaign, enrolled=enrolled, form=form)


@bp.post("/campaigns/<int:campaign_id>/steps")
def add_step(campaign_id):
    campaign = _owned(campaign_id)
    form = _step_form()
    if form.validate_on_submit():
        step, errors = svc.add_step(campaign, form.step_data())
        if not errors:
            db.session.commit()
            flash(f"Step {step.position + 1} added.", "success")
            return redirect(url_for("campaigns.detail", campaign_id=campaign.id, _anchor="steps"))
        db.session.rollback()
        form.show_errors(errors)
    return _detail_page(_owned(campaign_id), form, 400)


@bp.route("/campaigns/<int:campaign_id>/steps/<int:step_id>/edit", methods=["GET", "POST"])
def edit_step(campaign_id, step_id):
    campaign = _owned(campaign_id)
    step = _owned_step(campaign, step_id)
    form = _step_form()
    if request.method == "GET":
        form.load(step)
    elif form.validate_on_submit():
        errors = svc.update_step(step, form.step_data())
        if not errors:
            db.session.commit()
            flash(f"Step {step.position + 1} saved.", "success")
            return redirect(url_for("campaigns.detail", campaign_id=campaign.id, _anchor="steps"))
        db.session.rollback()
        form.show_errors(errors)
    return render_template("campaigns/step_form.html", campaign=campaign, step=step, form=form), \
        400 if form.errors else 200


@bp.route("/campaigns/<int:campaign_id>/steps/<int:step_id>/delete", methods=["GET", "POST"])
def delete_step(campaign_id, step_id):
    campaign = _owned(campaign_id)
    step = _owned_step(campaign, step_id)
    form = ActionForm()
    if form.validate_on_submit():
        position = step.position
        svc.delete_step(step)
        db.session.commit()
        flash(f"Step {position + 1} deleted.", "success")
        return redirect(url_for("campaigns.detail", campaign_id=campaign.id, _anchor="steps"))
    return render_template("campaigns/delete_step.html", campaign=campaign, step=step, form=form)
