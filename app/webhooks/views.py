"""Providers' webhooks: public, so every request proves itself by its signature (services/webhooks.py)."""
from flask import Response, jsonify, request

from ..services import meta_webhooks, webhooks
from . import bp


@bp.route("/<provider>/<public_id>/", methods=["GET", "POST"])
def receive(provider, public_id):
    answer = webhooks.intake(provider, public_id, webhooks.inbound_from_request(request))
    if isinstance(answer.body, str):
        return Response(answer.body, status=answer.status, mimetype="text/plain")
    return jsonify(answer.body), answer.status


@bp.route("/meta/<public_id>/", methods=["GET", "POST"])
def receive_meta(public_id):
    """The organisation's Meta app address: its Pages, Instagram accounts and WhatsApp numbers."""
    answer = meta_webhooks.intake(public_id, webhooks.inbound_from_request(request))
    if isinstance(answer.body, str):
        return Response(answer.body, status=answer.status, mimetype="text/plain")
    return jsonify(answer.body), answer.status
