"""Meta's data deletion and deauthorize callbacks. Meta posts a signed_request naming the app-scoped id
of a person who removed the app (deauthorize) or asked for their data to be deleted (deletion).

What is deleted, within the organisation whose Meta app was called:
- both kinds: the tokens that person granted (the connected Pages, Instagram accounts and WhatsApp
  numbers whose grant names them) and their app-scoped id; those accounts stay listed, without
  tokens, as "reconnect needed", so the business keeps the history of its own conversations and
  can connect them again with another admin; pending connections (Pages granted but not yet picked).
- deletion only, as well: conversations held with that id on Messenger or Instagram, with their
  messages, and contacts known only through them (no email and no phone from elsewhere).
The request is recorded with a confirmation code and what was deleted; its status page shows both.
No call to Meta is made: the person's grant is gone already, and the answer must be quick.
"""
from __future__ import annotations

import re
import secrets as token_source
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select

from ..crypto import vault
from ..extensions import db
from ..models import (Contact, Conversation, ConversationMessage, DataDeletionRequest, Integration, MetaApp,
                      PendingConnection, utcnow)
from ..providers import meta_oauth
from . import integrations as svc
from . import meta_app
from .meta_connect import CONNECTED_TYPES
from .meta_tokens import flag_reconnect, tell_admins_to_reconnect

KINDS = ("deletion", "deauthorize")
APP_SCOPED_ID = re.compile(r"\d{1,64}")
WORDS = {"deletion": "asked Meta to delete their data", "deauthorize": "removed the app in Facebook"}


class CallbackRefused(Exception):
    def __init__(self, reason: str, status: int):
        super().__init__(reason)
        self.reason, self.status = reason, status


def handle(app: MetaApp, kind: str, signed_request: Any) -> DataDeletionRequest:
    """Verify the signed_request with the app's secret, delete, record. CallbackRefused when it does not
    prove itself; nothing changes then."""
    secret = meta_app.app_secret(app)
    if not secret:
        raise CallbackRefused("This Meta app has no App Secret saved, so no signed_request can be verified.", 403)
    try:
        payload = meta_oauth.parse_signed_request(signed_request if isinstance(signed_request, str) else "", secret)
    except meta_oauth.SignedRequestRefused as exc:
        raise CallbackRefused(exc.reason, exc.status) from None
    user_id = payload.get("user_id")
    user_id = str(user_id) if isinstance(user_id, (str, int)) and not isinstance(user_id, bool) else ""
    if not APP_SCOPED_ID.fullmatch(user_id):
        raise CallbackRefused("The signed_request names no user_id.", 400)
    summary, newly_broken = delete_user_data(app.organization_id, user_id, kind)
    request = DataDeletionRequest(organization_id=app.organization_id, kind=kind, app_scoped_user_id=user_id,
                                  confirmation_code=token_source.token_hex(10), status="completed",
                                  summary=summary, completed_at=utcnow())
    db.session.add(request)
    db.session.commit()
    tell_admins_to_reconnect(app.organization_id, newly_broken)
    return request


def delete_user_data(organization_id: int, user_id: str, kind: str) -> tuple[dict[str, int], list[Integration]]:
    """Delete in the session (the caller commits); returns what was deleted, and the accounts that
    newly need reconnecting (their admins are told once the deletion is committed)."""
    granted = [i for i in db.session.scalars(svc.org_integrations(organization_id).where(
        Integration.integration_type.in_(CONNECTED_TYPES), Integration.secrets_ciphertext.is_not(None)))
        if svc.get_secrets(i).get("meta_user_id") == user_id]
    newly_broken = []
    for integration in granted:
        svc.store_secrets(integration, {})
        integration.subscribed_at = integration.token_expires_at = None
        svc.log_event(integration, "access_removed", f"The person who connected {integration.name} {WORDS[kind]}: "
                                                     "its tokens were deleted.", level="warning")
        if flag_reconnect(integration, f"The person who connected it {WORDS[kind]}"):
            newly_broken.append(integration)
    pending = [p.id for p in db.session.scalars(select(PendingConnection).where(
        PendingConnection.organization_id == organization_id))
        if vault().decrypt_json(p.secrets_ciphertext).get("meta_user_id") == user_id]
    if pending:
        db.session.execute(delete(PendingConnection).where(PendingConnection.id.in_(pending)))
    summary = {"connections": len(granted), "pending_connections": len(pending), "conversations": 0,
               "messages": 0, "contacts": 0}
    if kind == "deletion":
        summary.update(_delete_conversations(organization_id, user_id))
    return summary, newly_broken


def _delete_conversations(organization_id: int, user_id: str) -> dict[str, int]:
    conversations = db.session.execute(select(Conversation.id, Conversation.contact_id).where(
        Conversation.organization_id == organization_id, Conversation.channel.in_(("messenger", "instagram")),
        Conversation.external_user_id == user_id)).all()
    if not conversations:
        return {}
    ids = [c.id for c in conversations]
    messages = db.session.scalar(select(func.count()).select_from(ConversationMessage)
                                 .where(ConversationMessage.conversation_id.in_(ids)))
    contact_ids = {c.contact_id for c in conversations if c.contact_id is not None}
    db.session.execute(delete(Conversation).where(Conversation.id.in_(ids)))
    only_known_here = list(db.session.scalars(select(Contact.id).where(
        Contact.id.in_(contact_ids), Contact.email.is_(None), Contact.phone.is_(None),
        ~select(Conversation.id).where(Conversation.contact_id == Contact.id).exists())))
    if only_known_here:
        db.session.execute(delete(Contact).where(Contact.id.in_(only_known_here)))
    return {"conversations": len(ids), "messages": messages, "contacts": len(only_known_here)}


def by_code(code: str) -> DataDeletionRequest | None:
    return db.session.scalar(select(DataDeletionRequest).where(DataDeletionRequest.confirmation_code == code))


def status_url(request: DataDeletionRequest) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/meta/deletion/{request.confirmation_code}"
