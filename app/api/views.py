"""The JSON API (exact contract in issue #2). Bearer tokens; other organisations' ids are 404."""
from flask import abort, g, jsonify, request

from ..extensions import db
from ..models import CHANNELS, LOG_LEVELS, MESSAGE_STATUSES, Message
from ..pagination import requested_page, requested_per_page
from ..providers import INTEGRATION_TYPES
from ..services import accounts, connection_tests, messaging
from ..services import integrations as svc
from . import bp

CONFIGURE_SLUGS = {kind.configure_slug: key for key, kind in INTEGRATION_TYPES.items()}


@bp.before_request
def authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = accounts.user_for_token(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        return jsonify({"error": "A valid API token is required (Authorization: Bearer <token>)."}), 401, {
            "WWW-Authenticate": "Bearer"}
    g.api_user = user
    return None


def _org_id() -> int:
    return g.api_user.organization_id


def _owned(integration_id: int):
    integration = svc.get_for_org(_org_id(), integration_id)
    if integration is None:
        abort(404)
    return integration


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(_bad({"body": ["Send a JSON object with Content-Type: application/json."]}))
    return body


def _bad(errors):
    response = jsonify({"errors": errors})
    response.status_code = 400
    return response


@bp.get("/integrations/")
def list_integrations():
    kind = request.args.get("type")
    if kind and kind not in INTEGRATION_TYPES:
        return _bad({"type": [f"Choose one of: {', '.join(INTEGRATION_TYPES)}."]})
    return jsonify([svc.serialize(i) for i in svc.list_for_org(_org_id(), kind)])


@bp.post("/integrations/")
def create_integration():
    body = _json_body()
    integration, errors = svc.create_integration(_org_id(), g.api_user, body.get("integration_type"),
                                                 body.get("name"), body.get("provider"))
    if errors:
        db.session.rollback()
        return _bad(errors)
    db.session.commit()
    return jsonify(svc.serialize(integration)), 201


@bp.get("/integrations/stats/")
def stats():
    return jsonify(svc.stats(_org_id()))


@bp.get("/integrations/<int:integration_id>/")
def get_integration(integration_id):
    return jsonify(svc.serialize(_owned(integration_id)))


@bp.put("/integrations/<int:integration_id>/")
def update_integration(integration_id):
    integration = _owned(integration_id)
    body = _json_body()
    unknown = sorted(set(body) - {"name", "is_active", "status", "priority", "rate_limit", "sandbox"})
    errors = {name: ["This field cannot be changed here."] for name in unknown}
    errors = errors or svc.update(integration, body, g.api_user)
    if errors:
        db.session.rollback()
        return _bad(errors)
    db.session.commit()
    return jsonify(svc.serialize(integration))


@bp.delete("/integrations/<int:integration_id>/")
def delete_integration(integration_id):
    svc.delete(_owned(integration_id), g.api_user)
    db.session.commit()
    return "", 204


@bp.post("/integrations/<int:integration_id>/configure/<slug>/")
def configure(integration_id, slug):
    integration = _owned(integration_id)
    if slug not in CONFIGURE_SLUGS:
        abort(404)
    if CONFIGURE_SLUGS[slug] != integration.integration_type:
        expected = INTEGRATION_TYPES[integration.integration_type].configure_slug
        return _bad({"integration_type": [f"This is a {integration.integration_type} integration: use configure/{expected}/."]})
    errors = svc.configure(integration, _json_body(), g.api_user, partial=True)
    if errors:
        db.session.rollback()
        return _bad(errors)
    db.session.commit()
    return jsonify(svc.serialize(integration))


@bp.post("/integrations/<int:integration_id>/test/")
def start_test(integration_id):
    integration = _owned(integration_id)
    try:
        test = connection_tests.request_test(integration, g.api_user)
    except connection_tests.QueueUnavailable as exc:
        return jsonify({"error": str(exc)}), 503
    return jsonify({"job_id": test.id, "status": test.status}), 202


@bp.get("/integrations/<int:integration_id>/test/<job_id>/")
def test_result(integration_id, job_id):
    integration = _owned(integration_id)
    test = connection_tests.get_test(_org_id(), integration.id, job_id) or abort(404)
    return jsonify(connection_tests.serialize_test(test))


@bp.get("/integrations/<int:integration_id>/logs/")
def logs(integration_id):
    integration = _owned(integration_id)
    level = request.args.get("level")
    if level and level not in LOG_LEVELS:
        return _bad({"level": [f"Choose one of: {', '.join(LOG_LEVELS)}."]})
    page = db.paginate(svc.logs_query(integration, level), page=requested_page(),
                       per_page=requested_per_page(50, 200), error_out=False)
    return jsonify({"items": [svc.serialize_log(e) for e in page.items], "page": page.page, "pages": page.pages,
                    "total": page.total})


@bp.post("/messages/")
def send_message():
    message, errors, _ = messaging.create_message(_org_id(), _json_body())
    if errors:
        return _bad(errors)
    return jsonify({"id": message.id, "status": message.status}), 202


@bp.post("/messages/bulk/")
def send_bulk():
    bulk_id, messages, errors = messaging.create_bulk(_org_id(), _json_body())
    if errors:
        return _bad(errors)
    return jsonify({"bulk_id": bulk_id, "ids": [m.id for m in messages],
                    "messages": [{"id": m.id, "status": m.status} for m in messages]}), 202


@bp.get("/messages/bulk/<bulk_id>/")
def bulk_progress(bulk_id):
    progress = messaging.bulk_progress(_org_id(), bulk_id) or abort(404)
    return jsonify(progress)


@bp.get("/messages/<message_id>/")
def get_message(message_id):
    message = messaging.get_for_org(_org_id(), message_id) or abort(404)
    return jsonify(messaging.serialize(message))


@bp.get("/messages/")
def list_messages():
    errors = {}
    query = db.select(Message).where(Message.organization_id == _org_id())
    status, channel, integration_id = (request.args.get(k) for k in ("status", "channel", "integration_id"))
    if status:
        if status not in MESSAGE_STATUSES:
            errors["status"] = [f"Choose one of: {', '.join(MESSAGE_STATUSES)}."]
        query = query.where(Message.status == status)
    if channel:
        if channel not in CHANNELS:
            errors["channel"] = [f"Choose one of: {', '.join(CHANNELS)}."]
        query = query.where(Message.channel == channel)
    if integration_id:
        if not integration_id.isdigit() or int(integration_id) >= 2**31:
            errors["integration_id"] = ["Give an integration id."]
        else:
            query = query.where(Message.integration_id == int(integration_id))
    if errors:
        return _bad(errors)
    page = db.paginate(query.order_by(Message.created_at.desc(), Message.id.desc()), page=requested_page(),
                       per_page=requested_per_page(50, 200), error_out=False)
    return jsonify({"items": [messaging.serialize(m, with_events=False) for m in page.items], "page": page.page,
                    "pages": page.pages, "total": page.total})


# -- contacts (issue #4) ----------------------------------------------------------------------

from ..services import contacts as contacts_svc  # noqa: E402


def _owned_contact(contact_id: int):
    contact = contacts_svc.get_for_org(_org_id(), contact_id)
    if contact is None:
        abort(404)
    return contact


@bp.get("/contacts/")
def list_contacts():
    errors, filters = {}, {}
    country = contacts_svc.default_country(_org_id())
    for name, normalise in (("email", contacts_svc.normalise_email),
                            ("phone", lambda v: contacts_svc.normalise_phone(v, country))):
        raw = request.args.get(name)
        if raw:
            filters[name], error = normalise(raw)
            if error:
                errors[name] = [error]
    if errors:
        return _bad(errors)
    query = contacts_svc.list_query(_org_id(), search=request.args.get("q"), tag=request.args.get("tag"), **filters)
    page = db.paginate(query, page=requested_page(), per_page=requested_per_page(100, 500), error_out=False)
    response = jsonify([contacts_svc.serialize(c) for c in page.items])
    response.headers["X-Total-Count"] = str(page.total)
    return response


@bp.post("/contacts/")
def upsert_contact():
    body = _json_body()
    contact, created, errors = contacts_svc.upsert_contact(_org_id(), body, source="api")
    if errors:
        db.session.rollback()
        return _bad(errors)
    db.session.commit()
    return jsonify(contacts_svc.serialize(contact, detail=True)), 201 if created else 200


@bp.get("/contacts/<int:contact_id>/")
def get_contact(contact_id):
    return jsonify(contacts_svc.serialize(_owned_contact(contact_id), detail=True))


@bp.put("/contacts/<int:contact_id>/")
def edit_contact(contact_id):
    contact = _owned_contact(contact_id)
    errors = contacts_svc.edit_contact(contact, _json_body(), g.api_user.email)
    if errors:
        db.session.rollback()
        return _bad(errors)
    db.session.commit()
    return jsonify(contacts_svc.serialize(contact, detail=True))


@bp.delete("/contacts/<int:contact_id>/")
def delete_contact(contact_id):
    contacts_svc.delete_contact(_owned_contact(contact_id))
    db.session.commit()
    return "", 204


@bp.post("/contacts/<int:contact_id>/tags/")
def add_contact_tags(contact_id):
    contact = _owned_contact(contact_id)
    body = _json_body()
    errors = {}
    names = contacts_svc.clean_tag_names(body.get("tags"), errors)
    if not errors and not names:
        errors["tags"] = ["Give a list of tag names."]
    if errors:
        return _bad(errors)
    contacts_svc.apply_tags(contact, names)
    db.session.commit()
    return jsonify(contacts_svc.serialize(contact, detail=True))


@bp.delete("/contacts/<int:contact_id>/tags/<name>/")
def remove_contact_tag(contact_id, name):
    contact = _owned_contact(contact_id)
    tag = contacts_svc.find_tag(_org_id(), name) or abort(404)
    if not contacts_svc.remove_tag(contact, tag):
        abort(404)
    db.session.commit()
    return "", 204


# -- campaigns (issue #4) ---------------------------------------------------------------------

from ..services import campaigns as campaigns_svc  # noqa: E402


def _owned_campaign(campaign_id: int):
    return campaigns_svc.get_for_org(_org_id(), campaign_id) or abort(404)


@bp.get("/campaigns/")
def list_campaigns():
    return jsonify([{**campaigns_svc.serialize(c), "enrolled": enrolled}
                    for c, _, enrolled in campaigns_svc.list_for_org(_org_id())])


@bp.post("/campaigns/")
def create_campaign():
    campaign, errors = campaigns_svc.create(_org_id(), _json_body())
    if errors:
        db.session.rollback()
        return _bad(errors)
    db.session.commit()
    return jsonify(campaigns_svc.serialize(campaign, detail=True)), 201


@bp.get("/campaigns/<int:campaign_id>/")
def get_campaign(campaign_id):
    return jsonify(campaigns_svc.serialize(_owned_campaign(campaign_id), detail=True))


@bp.get("/campaigns/<int:campaign_id>/enrollments/")
def list_enrollments(campaign_id):
    campaign = _owned_campaign(campaign_id)
    page = db.paginate(campaigns_svc.enrollments_query(campaign), page=requested_page(),
                       per_page=requested_per_page(100, 500), error_out=False)
    return jsonify({"items": [campaigns_svc.serialize_enrollment(e) for e in page.items], "page": page.page,
                    "pages": page.pages, "total": page.total})


@bp.post("/campaigns/<int:campaign_id>/enrollments/")
def enroll_contact(campaign_id):
    campaign = _owned_campaign(campaign_id)
    body = _json_body()
    contact_id = body.get("contact_id")
    contact = (contacts_svc.get_for_org(_org_id(), contact_id)
               if isinstance(contact_id, int) and not isinstance(contact_id, bool) and 0 < contact_id < 2**31 else None)
    if contact is None:
        return _bad({"contact_id": ["No contact with this id."]})
    enrollment, created = campaigns_svc.enroll(contact, campaign, source="api")
    db.session.commit()
    if created:
        campaigns_svc.queue_step(enrollment)
    return jsonify(campaigns_svc.serialize_enrollment(enrollment)), 201 if created else 200


# -- sign-up pages (issue #5) -------------------------------------------------------------------

from ..models import SUBMISSION_STATUSES  # noqa: E402
from ..services import signups as signups_svc  # noqa: E402


def _owned_signup_page(integration_id: int):
    integration = _owned(integration_id)
    if integration.integration_type != signups_svc.INTEGRATION_TYPE:
        abort(404)
    return integration


@bp.post("/integrations/<int:integration_id>/api-key/")
def create_signup_api_key(integration_id):
    """The key of POST /api/signup/<public id>/, shown this once; a new one replaces the old."""
    key = signups_svc.create_api_key(_owned_signup_page(integration_id), g.api_user)
    db.session.commit()
    return jsonify({"api_key": key}), 201, {"Cache-Control": "no-store"}


@bp.get("/integrations/<int:integration_id>/submissions/")
def list_submissions(integration_id):
    integration = _owned_signup_page(integration_id)
    status = request.args.get("status")
    if status and status not in SUBMISSION_STATUSES:
        return _bad({"status": [f"Choose one of: {', '.join(SUBMISSION_STATUSES)}."]})
    page = db.paginate(signups_svc.submissions_query(integration, status), page=requested_page(),
                       per_page=requested_per_page(50, 200), error_out=False)
    return jsonify({"items": [signups_svc.serialize_submission(s) for s in page.items], "page": page.page,
                    "pages": page.pages, "total": page.total})
