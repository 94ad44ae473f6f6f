"""Token care for connected Meta accounts (a daily job): each token is inspected with debug_token,
its expiry recorded, a Page's long-lived user token extended while it can be, and an account whose
token Meta refuses (error 190, not valid, a required permission revoked) is marked "reconnect needed":
status error, a log line, a banner in the app, and one email to the organisation's admins per incident.
A successful reconnect, or a token found working again, clears the mark."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Integration, MetaApp, utcnow
from ..providers import meta_oauth
from ..providers.base import ProviderError, RetryLater
from . import integrations as svc
from . import meta_app
from .alerts import email_admins
from .meta_connect import CONNECTED_TYPES, TOKEN_FIELD, purge_expired

EXTEND_WITHIN = timedelta(days=14)  # a user token this close to its end is exchanged for a fresh long-lived one
TOKEN_WORDS = {"facebook": "Page access token", "instagram": "Page access token (shared with the Instagram account)",
               "whatsapp": "WhatsApp access token"}
# What each account cannot work without; Lead Ads adds its own when it is on.
REQUIRED_SCOPES = {"facebook": ("pages_messaging",), "instagram": ("instagram_manage_messages",),
                   "whatsapp": ("whatsapp_business_messaging",)}


def check_all() -> dict[str, int]:
    """Every connected account of every organisation with a Meta app. Returns counts by outcome."""
    purge_expired()
    db.session.commit()
    counts: dict[str, int] = {}
    for app in db.session.scalars(select(MetaApp).order_by(MetaApp.id)).all():
        accounts = db.session.scalars(svc.org_integrations(app.organization_id).where(
            Integration.integration_type.in_(CONNECTED_TYPES), Integration.external_id.is_not(None),
            Integration.secrets_ciphertext.is_not(None)).order_by(Integration.id)).all()
        newly_broken = []
        for integration in accounts:
            was_broken = integration.needs_reconnect
            outcome = check_one(integration, app)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "reconnect_needed" and not was_broken:
                newly_broken.append(integration)
        tell_admins_to_reconnect(app.organization_id, newly_broken)
    return counts


def check_one(integration: Integration, app: MetaApp) -> str:
    """valid, extended, reconnect_needed or unchecked (Meta could not be asked; tomorrow will)."""
    secrets = svc.get_secrets(integration)
    token = secrets.get(TOKEN_FIELD[integration.integration_type])
    what = TOKEN_WORDS[integration.integration_type]
    settings, app_secret = svc.provider_settings(), meta_app.app_secret(app)
    if not token:
        return mark_reconnect(integration, f"The {what} is missing")
    try:
        info = meta_oauth.debug_token(settings, app.app_id, app_secret, token)
    except RetryLater as exc:
        current_app.logger.warning("token check of integration %s could not run: %s", integration.id, exc.reason)
        return "unchecked"
    except ProviderError as exc:  # 190 and permission errors: Meta refuses the token itself
        return mark_reconnect(integration, f"{what}: {exc.reason}")
    if not info.is_valid:
        return mark_reconnect(integration, f"Meta says the {what} is no longer valid"
                              + (f" ({info.problem})" if info.problem else ""))
    missing = [scope for scope in required_scopes(integration) if info.scopes is not None and scope not in info.scopes]
    if missing:
        return mark_reconnect(integration, f"The permission{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                           f"{'were' if len(missing) > 1 else 'was'} removed from the {what}")
    integration.token_expires_at = info.expires_at
    extended = _extend_user_token(integration, secrets, app, app_secret)
    if integration.needs_reconnect:
        clear_reconnect(integration, "the token works again")
    db.session.commit()
    return "extended" if extended else "valid"


def required_scopes(integration: Integration) -> tuple[str, ...]:
    scopes = REQUIRED_SCOPES[integration.integration_type]
    if integration.integration_type == "facebook" and (integration.config or {}).get("enable_lead_ads"):
        scopes += (meta_oauth.LEAD_ADS_SCOPE,)
    return scopes


def _extend_user_token(integration: Integration, secrets: dict, app: MetaApp, app_secret: str) -> bool:
    """A Page's user token (kept to read the Page again) lasts about 60 days; while it still works it can
    be exchanged for a new long-lived one. The Page's own token does not depend on it."""
    user_token = secrets.get("access_token") if integration.integration_type == "facebook" else None
    if not user_token:
        return False
    settings = svc.provider_settings()
    try:
        info = meta_oauth.debug_token(settings, app.app_id, app_secret, user_token)
        if not info.is_valid or info.expires_at is None or info.expires_at - utcnow() > EXTEND_WITHIN:
            return False
        fresh = meta_oauth.long_lived_token(settings, app.app_id, app_secret, user_token)
    except ProviderError as exc:
        current_app.logger.info("user token of integration %s not extended: %s", integration.id, exc.reason)
        return False
    svc.store_secrets(integration, {**secrets, "access_token": fresh.access_token})
    until = f" until {(utcnow() + timedelta(seconds=fresh.expires_in)):%Y-%m-%d}" if fresh.expires_in else ""
    svc.log_event(integration, "token_extended", f"The Page's user access token was extended{until}.")
    return True


def mark_reconnect(integration: Integration, problem: str) -> str:
    flag_reconnect(integration, problem)
    db.session.commit()
    return "reconnect_needed"


def flag_reconnect(integration: Integration, problem: str) -> bool:
    """Set the mark, the status and the reason (the caller commits). True when this starts an incident:
    the account did not need reconnecting before."""
    words = f"{problem.rstrip('. ')} — reconnect needed"
    first_time = not integration.needs_reconnect
    integration.needs_reconnect, integration.last_error = True, words
    if first_time:
        integration.error_count += 1
        svc.log_event(integration, "reconnect_needed", words, level="error")
        svc.set_status(integration, "error", words)
    return first_time


def tell_admins_to_reconnect(organization_id: int, integrations: list[Integration]) -> None:
    """One email to each admin for the accounts that newly need reconnecting (none: no email)."""
    if not integrations:
        return
    names = ", ".join(i.name for i in integrations)
    lines = "\n".join(f"- {i.name}: {i.last_error}" for i in integrations)
    email_admins(organization_id, f"Switchboard: reconnect {names}",
                 f"{'This account' if len(integrations) == 1 else 'These accounts'} stopped working:\n{lines}\n\n"
                 "Open Switchboard's Channels page and reconnect: Connect with Meta for Pages and Instagram "
                 "accounts, the WhatsApp form for numbers. Their messages and webhooks wait until then.")


def clear_reconnect(integration: Integration, why: str) -> None:
    integration.needs_reconnect, integration.last_error = False, None
    svc.log_event(integration, "reconnected", f"No longer needs reconnecting: {why}.")
    svc.set_status(integration, "active", why)


def reconnect_needed(organization_id: int) -> list[Integration]:
    """For the banner: the organisation's accounts that need reconnecting."""
    return list(db.session.scalars(svc.org_integrations(organization_id).where(
        Integration.needs_reconnect.is_(True)).order_by(Integration.name).limit(20)))
