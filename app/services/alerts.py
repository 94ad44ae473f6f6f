"""Telling an organisation's admins: an email to each, through the organisation's own email
integration and the outbound pipeline (stored, then queued), like any other message."""
from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import User
from .messaging import enqueue, first_in_line, store, validate_request


def email_admins(organization_id: int, subject: str, body: str, *, excluding: set[int] | frozenset[int] = frozenset()) -> int:
    """Queue one email per admin through the first active email integration not in `excluding`
    (the failing one itself, say). Commits; returns how many were queued (0 without an email integration)."""
    via = first_in_line(organization_id, "email", excluding=set(excluding))
    if via is None:
        return 0
    admins = db.session.scalars(select(User).where(User.organization_id == organization_id,
                                                   User.role == "admin").order_by(User.id)).all()
    alerts = []
    for admin in admins:
        request, errors = validate_request(organization_id, {"integration_id": via.id, "to": admin.email,
                                                             "subject": subject, "body": body})
        if not errors:
            alerts.append(store(organization_id, request))
    db.session.commit()
    for alert in alerts:
        enqueue(alert)
    return len(alerts)
