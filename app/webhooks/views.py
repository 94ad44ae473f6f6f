"""Providers' webhooks: public, so every request proves itself by its signature (services/webhooks.py)."""
import json

from flask import Response, request

from ..services import meta_webhooks, webhooks
from . import bp


@bp.route("/<provider>/<public_id>/", methods=["GET", "POST"])
def receive(provider, public_id):
    return _respond(webhooks.intake(provider, public_id, webhooks.inbound_from_request(request)))


@bp.route("/meta/<public_id>/", methods=["GET", "POST"])
def receive_meta(public_id):
    """The organisation's Meta app address: its Pages, Instagram accounts and WhatsApp numbers."""
    return _respond(meta_webhooks.intake(public_id, webhooks.inbound_from_request(request)))


def _respond(answer: webhooks.Answer) -> Response:
    if isinstance(answer.body, str):
        return Response(answer.body, status=answer.status, mimetype="text/plain")
    # Plain json.dumps of a few fixed keys: the hot path skips jsonify's provider machinery.
    return Response(json.dumps(answer.body), status=answer.status, mimetype="application/json")
