"""The JSON API of connected Meta accounts (issue 5): the organisation's Meta app, Connect with Meta,
WhatsApp numbers, the accounts, disconnecting. GET /api/platforms/callback, which a browser reaches
without a bearer token, lives with the pages (app/platforms/views.py)."""
from flask import abort, g, jsonify, request

from ..extensions import db
from ..services import meta_app, meta_connect
from ..services.meta_connect import ConnectError
from . import bp
from .views import _bad, _json_body, _org_id


@bp.post("/meta/credentials/")
def save_meta_credentials():
    if not g.api_user.is_admin:
        return jsonify({"error": "Only admins can change the organisation's Meta app."}), 403
    body = _json_body()
    unknown = sorted(set(body) - {"app_id", "app_secret"})
    if unknown:
        return _bad({name: ["This field is not known."] for name in unknown})
    result = meta_app.save_credentials(_org_id(), g.api_user, body.get("app_id"), body.get("app_secret"))
    if result.errors:
        db.session.rollback()
        return _bad(result.errors)
    db.session.commit()
    return jsonify({**meta_app.summary(result.app), "checked": result.note})


@bp.get("/platforms/")
def list_platforms():
    app = meta_app.get_app(_org_id())
    return jsonify([meta_connect.serialize(account, app) for account in meta_connect.accounts(_org_id())])


@bp.get("/platforms/<platform>/connect")
def start_connect(platform):
    if platform not in meta_connect.OAUTH_PLATFORMS:
        abort(404)
    lead_ads = request.args.get("lead_ads")
    if lead_ads not in (None, "0", "1"):
        return _bad({"lead_ads": ["Give 1 to ask for the Lead Ads permission, 0 not to."]})
    try:
        url = meta_connect.authorization_url(g.api_user, platform, None if lead_ads is None else lead_ads == "1")
    except ConnectError as exc:
        db.session.rollback()
        return _bad({exc.field: [exc.reason]})
    db.session.commit()
    return jsonify({"authorization_url": url})


@bp.post("/platforms/pending/<pending_id>/connect")
def connect_pending(pending_id):
    """The pick after an API client's callback: {"page_id"} of one of the pending connection's Pages."""
    pending = meta_connect.pending_for(g.api_user, pending_id) or abort(404)
    body = _json_body()
    try:
        connected = meta_connect.connect_page(g.api_user, pending, body.get("page_id"))
    except ConnectError as exc:
        db.session.rollback()
        return _bad({exc.field: [exc.reason]})
    app = meta_app.get_app(_org_id())
    return jsonify([meta_connect.serialize(account, app) for account in connected]), 201


@bp.post("/platforms/whatsapp/connect")
def connect_whatsapp():
    integration, errors = meta_connect.connect_whatsapp(g.api_user, _json_body())
    if errors:
        return _bad(errors)
    return jsonify(meta_connect.serialize(integration, meta_app.get_app(_org_id()))), 201


@bp.delete("/platforms/<int:integration_id>/disconnect")
def disconnect(integration_id):
    account = meta_connect.connected_account(_org_id(), integration_id) or abort(404)
    result = meta_connect.disconnect(account, g.api_user)
    app = meta_app.get_app(_org_id())
    return jsonify({"disconnected": [meta_connect.serialize(a, app) for a in result.accounts],
                    "unsubscribed": result.unsubscribe_problem is None,
                    "message": "Tokens removed; " + (f"Meta could not be told to stop the webhooks: "
                                                     f"{result.unsubscribe_problem}" if result.unsubscribe_problem
                                                     else "webhooks unsubscribed.")})
