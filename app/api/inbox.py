"""The inbox's JSON API (issue #5): conversations, their messages, replies, read state, templates,
sync and daily figures. Bearer tokens (views.authenticate); other organisations' ids are 404."""
from flask import abort, g, jsonify, request, url_for
from redis.exceptions import RedisError

from ..extensions import db
from ..media.views import file_response
from ..pagination import requested_page, requested_per_page
from ..services import inbox
from ..services import integrations as svc
from . import bp
from .views import _bad, _json_body, _org_id


def _owned_conversation(conversation_id: int):
    return inbox.get_for_org(_org_id(), conversation_id) or abort(404)


def _message_json(conversation_id: int, message) -> dict:
    data = inbox.serialize_message(message)
    if data["media"] and data["media"]["stored"]:
        data["media"]["url"] = url_for("api.conversation_message_media", conversation_id=conversation_id,
                                       message_id=message.id)
    return data


@bp.get("/conversations/")
def list_conversations():
    channel, integration_id = request.args.get("channel"), request.args.get("integration_id")
    errors = {}
    if channel and channel not in inbox.PLATFORMS:
        errors["channel"] = [f"Choose one of: {', '.join(inbox.PLATFORMS)}."]
    if integration_id and (not integration_id.isdigit() or int(integration_id) >= 2**31):
        errors["integration_id"] = ["Give an integration id."]
    if errors:
        return _bad(errors)
    query = inbox.conversations_query(_org_id(), channel=channel or None,
                                      integration_id=int(integration_id) if integration_id else None,
                                      search=request.args.get("q"))
    page = db.paginate(inbox.with_details(query), page=requested_page(),
                       per_page=requested_per_page(inbox.PER_PAGE, 200), error_out=False)
    return jsonify({"items": [inbox.serialize_conversation(c) for c in page.items], "page": page.page,
                    "pages": page.pages, "total": page.total})


@bp.get("/conversations/<int:conversation_id>/")
def get_conversation(conversation_id):
    conversation = _owned_conversation(conversation_id)
    before = request.args.get("before", type=int)
    messages = inbox.messages_of(conversation, before=before if before and before < 2**31 else None,
                                 limit=requested_per_page(50, 200))
    return jsonify({**inbox.serialize_conversation(conversation),
                    "messages": [_message_json(conversation.id, m) for m in messages]})


@bp.post("/conversations/<int:conversation_id>/messages/")
def reply(conversation_id):
    conversation = _owned_conversation(conversation_id)
    message, errors, refusal = inbox.send_reply(conversation, g.api_user, _json_body())
    if errors:
        return _bad(errors)
    if refusal:
        return jsonify({"error": refusal, "window": inbox.serialize_window(inbox.window(conversation))}), 409
    return jsonify({"id": message.id, "status": message.status}), 202


@bp.post("/conversations/<int:conversation_id>/read/")
def mark_read(conversation_id):
    queued = inbox.open_conversation(_owned_conversation(conversation_id))
    return jsonify({"unread_count": 0, "marking_read_at_provider": queued}), 202


@bp.get("/conversations/<int:conversation_id>/templates/")
def conversation_templates(conversation_id):
    conversation = _owned_conversation(conversation_id)
    if conversation.channel != "whatsapp":
        return jsonify([])
    return jsonify([inbox.serialize_template(t) for t in inbox.approved_templates(conversation.integration)])


@bp.get("/conversations/<int:conversation_id>/messages/<int:message_id>/media")
def conversation_message_media(conversation_id, message_id):
    conversation = _owned_conversation(conversation_id)
    found = inbox.media_file(_org_id(), message_id, conversation_id=conversation.id)
    if found is None:
        abort(404)
    return file_response(found.chunks, found.mime_type, found.filename)


def _owned_account(integration_id: int):
    return svc.get_for_org(_org_id(), integration_id) or abort(404)


@bp.post("/platforms/<int:integration_id>/sync")
def sync_platform(integration_id):
    integration = _owned_account(integration_id)
    if not inbox.syncable(integration):
        return _bad({"integration_id": ["Only Messenger and Instagram accounts are synced."]})
    try:
        job_id = inbox.request_sync(integration)
    except RedisError:
        return jsonify({"error": "The job queue is unavailable; try again in a moment."}), 503
    return jsonify({"job_id": job_id, "status": "queued" if job_id else "already syncing"}), 202


@bp.post("/platforms/<int:integration_id>/templates/sync")
def sync_platform_templates(integration_id):
    integration = _owned_account(integration_id)
    if integration.integration_type != "whatsapp":
        return _bad({"integration_id": ["Only WhatsApp accounts have message templates."]})
    try:
        job_id = inbox.request_template_sync(integration)
    except RedisError:
        return jsonify({"error": "The job queue is unavailable; try again in a moment."}), 503
    return jsonify({"job_id": job_id, "status": "queued"}), 202


@bp.get("/inbox/stats/")
def inbox_stats():
    days = request.args.get("days", 30, type=int)
    return jsonify(inbox.daily_stats(_org_id(), days))
