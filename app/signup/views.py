"""Staff pages of a sign-up page integration: its panel on the integration page (addresses, embed
code, API key), the API key's create/replace flow, and the submissions page with counts and a chart."""
from flask import abort, render_template, request
from flask_login import current_user, login_required

from ..extensions import db
from ..integrations.views import integration_helpers
from ..models import SUBMISSION_STATUSES
from ..pagination import requested_page
from ..providers.signup_page.hosted import parse_origins
from ..services import integrations as integrations_svc
from ..services import signups
from . import bp
from .forms import ApiKeyForm

SUBMISSIONS_PAGE_SIZE = 25


@bp.before_request
@login_required
def require_login():
    return None


def _signup_page(integration_id: int):
    """A sign-up page of the organisation; 404 for anything else."""
    integration = integrations_svc.get_for_org(current_user.organization_id, integration_id)
    if integration is None or integration.integration_type != signups.INTEGRATION_TYPE:
        abort(404)
    return integration


bp.context_processor(integration_helpers)  # the integration pages' header and tabs


@bp.app_context_processor
def signup_helpers():
    """For the panel that templates/integrations/detail.html includes for sign-up pages."""
    def signup_panel(integration) -> dict:
        return {"stats": signups.page_stats(integration), "form": ApiKeyForm(),
                "origins": parse_origins((integration.config or {}).get("allowed_origins"))}
    return {"signup_panel": signup_panel}


@bp.route("/integrations/<int:integration_id>/api-key", methods=["GET", "POST"])
def api_key(integration_id):
    """Create the key at once; replacing one asks first (GET shows the question). The key is shown once."""
    integration = _signup_page(integration_id)
    if not current_user.is_admin:
        abort(403)
    form = ApiKeyForm()
    if not form.validate_on_submit():
        if request.method == "POST":
            abort(400)
        return render_template("signup/api_key.html", integration=integration, form=form, key=None)
    replaced = integration.api_key_hash is not None
    key = signups.create_api_key(integration, current_user)
    db.session.commit()
    response = render_template("signup/api_key.html", integration=integration, form=form, key=key, replaced=replaced,
                               submit_url=signups.public_urls(integration)["submit_url"])
    return response, 201, {"Cache-Control": "no-store"}


@bp.get("/integrations/<int:integration_id>/submissions")
def submissions(integration_id):
    integration = _signup_page(integration_id)
    status = request.args.get("status") if request.args.get("status") in SUBMISSION_STATUSES else None
    page = db.paginate(signups.submissions_query(integration, status), page=requested_page(),
                       per_page=SUBMISSIONS_PAGE_SIZE, error_out=False)
    return render_template("signup/submissions.html", integration=integration, page=page, status=status,
                           statuses=SUBMISSION_STATUSES, stats=signups.page_stats(integration),
                           conversion_definition=signups.CONVERSION_DEFINITION)
