"""Connecting Meta accounts: "Connect with Meta" (OAuth state, code exchange, the pick of a Page,
its Instagram account, the webhook subscription), WhatsApp numbers, disconnecting, and the list of
connected accounts. A connected account is an integration (facebook, instagram or whatsapp) whose
external_id is the id Meta's webhooks name; nothing is stored anywhere else.

Network calls happen outside database transactions, and an account is written only once every
call it needs has succeeded, so a failure leaves nothing half-connected.
"""
from __future__ import annotations

import hashlib
import re
import secrets as token_source
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update

from ..crypto import vault
from ..extensions import db
from ..models import Integration, MetaApp, OAuthState, PendingConnection, User, utcnow
from ..providers import meta_oauth
from ..providers.base import GiveUp, ProviderError, RetryLater, UseAnotherProvider
from . import integrations as svc
from . import meta_app

Errors = dict[str, list[str]]
STATE_LIFETIME = timedelta(minutes=10)
PENDING_LIFETIME = timedelta(minutes=30)
OAUTH_PLATFORMS = ("messenger", "instagram")
PLATFORM_OF_TYPE = {"facebook": "messenger", "instagram": "instagram", "whatsapp": "whatsapp"}
CONNECTED_TYPES = tuple(PLATFORM_OF_TYPE)
PROVIDER_OF_TYPE = {"facebook": "graph_api", "instagram": "graph_api", "whatsapp": "cloud_api"}
TOKEN_FIELD = {"facebook": "page_access_token", "instagram": "page_access_token", "whatsapp": "access_token"}
WHATSAPP_ID = r"\d{5,20}"
MAX_TOKEN = 4096


class ConnectError(Exception):
    """Why connecting did not happen, in words for people; `field` names what to fix (JSON API)."""

    def __init__(self, reason: str, field: str = "meta"):
        super().__init__(reason)
        self.reason, self.field = reason, field


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _require_app(organization_id: int) -> MetaApp:
    app = meta_app.get_app(organization_id)
    if app is None or not meta_app.app_secret(app):
        raise ConnectError(meta_app.NOT_CONFIGURED, "meta_app")
    return app


def lead_ads_in_use(organization_id: int) -> bool:
    """Whether a Facebook integration of the organisation receives Lead Ads leads."""
    configs = db.session.scalars(select(Integration.config).where(Integration.organization_id == organization_id,
                                                                  Integration.integration_type == "facebook"))
    return any((config or {}).get("enable_lead_ads") for config in configs)


def purge_expired() -> None:
    """States and pending connections past their time: the pending ones hold tokens, which must not linger."""
    now = utcnow()
    db.session.execute(delete(OAuthState).where(OAuthState.expires_at < now - timedelta(days=1)))
    db.session.execute(delete(PendingConnection).where(PendingConnection.expires_at < now))


# --- the Login dialog ------------------------------------------------------------------------

def authorization_url(user: User, platform: str, lead_ads: bool | None = None) -> str:
    """A new single-use state bound to `user`, and the dialog address that carries it. Lead Ads'
    permission is asked for when asked, or by default when the organisation already uses Lead Ads.
    The caller commits."""
    if platform not in OAUTH_PLATFORMS:
        raise ConnectError(f"Connect with Meta connects {' or '.join(OAUTH_PLATFORMS)}.", "platform")
    app = _require_app(user.organization_id)
    purge_expired()
    state = token_source.token_urlsafe(32)
    db.session.add(OAuthState(state_hash=_hash(state), organization_id=user.organization_id, user_id=user.id,
                              platform=platform, expires_at=utcnow() + STATE_LIFETIME))
    wants_leads = lead_ads_in_use(user.organization_id) if lead_ads is None else lead_ads
    scopes = meta_oauth.BASE_SCOPES + ((meta_oauth.LEAD_ADS_SCOPE,) if wants_leads else ())
    return meta_oauth.authorization_url(current_app.config["META_OAUTH_DIALOG_URL"], app.app_id,
                                        meta_app.redirect_uri(), state, scopes)


def _claim_state(user: User, state: str | None) -> OAuthState:
    """The state, if it is this user's, unused and unexpired; marked used in one conditional UPDATE so
    that two callbacks cannot both pass. A refused state is left as it was."""
    record = db.session.scalar(select(OAuthState).where(OAuthState.state_hash == _hash(state))) if state else None
    if record is None:
        raise ConnectError("This Connect with Meta answer does not belong to a sign-in started here: start again.",
                           "state")
    if record.user_id != user.id or record.organization_id != user.organization_id:
        raise ConnectError("This Connect with Meta sign-in was started by another user: start it again while "
                           "signed in as yourself.", "state")
    if record.used_at is not None:
        raise ConnectError("This Connect with Meta answer was already used: start again.", "state")
    now = utcnow()
    if record.expires_at <= now:
        raise ConnectError("This Connect with Meta sign-in expired (it lasts 10 minutes): start again.", "state")
    claimed = db.session.execute(update(OAuthState).where(OAuthState.id == record.id, OAuthState.used_at.is_(None),
                                                          OAuthState.expires_at > now).values(used_at=now))
    db.session.commit()
    if claimed.rowcount != 1:
        raise ConnectError("This Connect with Meta answer was already used: start again.", "state")
    return record


def finish_authorization(user: User, args: dict[str, str]) -> PendingConnection:
    """The callback: check the state, then exchange the code for a long-lived token, read the Pages it
    grants (with their Instagram accounts) and keep them, encrypted, until the user picks one."""
    record = _claim_state(user, args.get("state"))
    if args.get("error") or args.get("error_reason") or args.get("error_description"):
        said = args.get("error_description") or args.get("error_reason") or args.get("error")
        raise ConnectError(f"Meta did not grant access: {said[:300]}. Nothing was connected.", "meta")
    code = args.get("code")
    if not code:
        raise ConnectError("Meta's answer held no authorization code. Nothing was connected.", "code")
    app = _require_app(record.organization_id)
    secret, settings = meta_app.app_secret(app), svc.provider_settings()
    try:
        short = meta_oauth.exchange_code(settings, app.app_id, secret, meta_app.redirect_uri(), code)
        token = meta_oauth.long_lived_token(settings, app.app_id, secret, short.access_token)
        info = meta_oauth.debug_token(settings, app.app_id, secret, token.access_token)
        if not info.is_valid or info.app_id != app.app_id:
            raise GiveUp("Meta does not confirm the new token for this app" + (f" ({info.problem})" if info.problem else ""))
        pages = meta_oauth.list_pages(settings, token.access_token)
    except ProviderError as exc:
        raise ConnectError(f"{exc.reason.rstrip('.')}. Nothing was connected.") from None
    if record.platform == "instagram":
        pages = [p for p in pages if p.instagram_id]
        if not pages:
            raise ConnectError("None of the Pages you granted has an Instagram professional account linked to it. "
                               "Link one in the Page's settings, then connect again.", "page_id")
    if not pages:
        raise ConnectError("Meta granted no Pages: choose at least one Page in Meta's dialog, then connect again.",
                           "page_id")
    listed = []
    for page in pages:
        instagram = None
        if page.instagram_id:
            try:
                username = meta_oauth.instagram_username(settings, page.access_token, page.instagram_id)
            except ProviderError:
                username = None  # the pick shows the account by its id; connecting does not need the name
            instagram = {"id": page.instagram_id, "username": username}
        listed.append({"id": page.id, "name": page.name, "category": page.category, "instagram": instagram})
    now = utcnow()
    pending = PendingConnection(
        organization_id=user.organization_id, user_id=user.id, platform=record.platform, pages=listed,
        secrets_ciphertext=vault().encrypt_json({
            "user_token": token.access_token, "meta_user_id": info.user_id, "scopes": list(info.scopes or ()),
            "page_tokens": {page.id: page.access_token for page in pages}}),
        token_expires_at=info.expires_at or (now + timedelta(seconds=token.expires_in) if token.expires_in else None),
        expires_at=now + PENDING_LIFETIME)
    db.session.add(pending)
    db.session.commit()
    return pending


# --- the pick ------------------------------------------------------------------------------

def pending_for(user: User, pending_id: str) -> PendingConnection | None:
    """The user's own pending connection, while it lasts."""
    return db.session.scalar(select(PendingConnection).where(
        PendingConnection.id == pending_id, PendingConnection.user_id == user.id,
        PendingConnection.organization_id == user.organization_id, PendingConnection.expires_at > utcnow()))


def discard(pending: PendingConnection) -> None:
    db.session.delete(pending)
    db.session.commit()


def connect_page(user: User, pending: PendingConnection, page_id: Any) -> list[Integration]:
    """Connect the chosen Page (and its Instagram account): subscribe it to the app's webhooks, then
    store the integrations. The pending connection is used up either way, so its tokens are dropped
    when anything fails. Reconnecting updates the existing integrations."""
    page = next((p for p in pending.pages if isinstance(page_id, str) and p["id"] == page_id), None)
    if page is None:
        raise ConnectError("Choose one of the Pages listed.", "page_id")
    grant = vault().decrypt_json(pending.secrets_ciphertext)
    if db.session.execute(delete(PendingConnection).where(PendingConnection.id == pending.id)).rowcount != 1:
        db.session.rollback()
        raise ConnectError("This choice was already made, or it expired: connect again.", "page_id")
    db.session.commit()
    app = _require_app(user.organization_id)
    secret, settings = meta_app.app_secret(app), svc.provider_settings()
    page_token = grant["page_tokens"][page["id"]]
    lead_ads = meta_oauth.LEAD_ADS_SCOPE in grant.get("scopes", [])
    try:
        info = meta_oauth.debug_token(settings, app.app_id, secret, page_token)
        if not info.is_valid:
            raise UseAnotherProvider("Meta says the Page's token is not valid" + (f" ({info.problem})" if info.problem else ""))
        expires_at = info.expires_at  # None: page tokens from a long-lived user token do not expire
        fields = meta_oauth.PAGE_WEBHOOK_FIELDS + ((meta_oauth.LEAD_ADS_WEBHOOK_FIELD,) if lead_ads else ())
        meta_oauth.subscribe_page(settings, page["id"], page_token, fields)
    except ProviderError as exc:
        raise ConnectError(f"{page['name']} was not connected: {exc.reason.rstrip('.')}. "
                           "Nothing was stored; connect again when this is solved.") from None
    now = utcnow()
    granted = {"meta_user_id": grant.get("meta_user_id") or ""}
    try:
        connected = [_upsert(user, "facebook", page["id"], page["name"], {
            "page_id": page["id"], "enable_messenger": True, "enable_lead_ads": lead_ads,
            "page_access_token": page_token, "access_token": grant["user_token"]}, granted, expires_at, now)]
        instagram = page.get("instagram")
        if instagram:
            name = f"@{instagram['username']}" if instagram.get("username") else f"Instagram {instagram['id']}"
            connected.append(_upsert(user, "instagram", instagram["id"], name, {
                "instagram_account_id": instagram["id"], "username": instagram.get("username") or "",
                "page_id": page["id"], "page_access_token": page_token}, granted, expires_at, now))
        db.session.commit()
    except Exception:
        db.session.rollback()
        _unsubscribe_quietly(settings, page["id"], page_token)
        raise
    return connected


def _upsert(user: User, integration_type: str, external_id: str, name: str, values: dict[str, Any],
            granted: dict[str, str], expires_at: datetime | None, now: datetime) -> Integration:
    """Create or update the organisation's integration of this type for this Meta id, connected."""
    integration = _find(user.organization_id, integration_type, external_id)
    reconnecting = integration is not None
    if integration is None:
        integration, errors = svc.create_integration(user.organization_id, user, integration_type, name[:200],
                                                     PROVIDER_OF_TYPE[integration_type])
        if errors:
            raise ConnectError(" ".join(m for ms in errors.values() for m in ms))
        integration.external_id = external_id
    errors = svc.configure(integration, values, user, partial=True)
    if errors:
        raise ConnectError(" ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
    svc.store_secrets(integration, {**svc.get_secrets(integration), **granted})
    integration.token_expires_at, integration.subscribed_at = expires_at, now
    integration.needs_reconnect, integration.last_error, integration.is_active = False, None, True
    integration.consecutive_failures = 0
    verb = "reconnected" if reconnecting else "connected"
    svc.log_event(integration, verb, f"{user.email} {verb} {integration.name} with Meta; webhooks subscribed.",
                  user=user)
    svc.set_status(integration, "active", f"{verb} with Meta", user=user)
    return integration


def _find(organization_id: int, integration_type: str, external_id: str) -> Integration | None:
    return db.session.scalar(svc.org_integrations(organization_id).where(
        Integration.integration_type == integration_type, Integration.external_id == external_id)
        .order_by(Integration.id).limit(1))


def _unsubscribe_quietly(settings, page_id: str, page_token: str) -> None:
    try:
        meta_oauth.unsubscribe_page(settings, page_id, page_token)
    except ProviderError as exc:
        current_app.logger.warning("could not undo the webhook subscription of page %s: %s", page_id, exc.reason)


# --- WhatsApp --------------------------------------------------------------------------------

WHATSAPP_FIELDS = ("phone_number_id", "business_account_id", "access_token")


def connect_whatsapp(user: User, data: Any) -> tuple[Integration | None, Errors]:
    """Check the number against the Graph API (readable with the token, one of the business account's
    numbers, a token of the organisation's app), subscribe the business account to the app's webhooks,
    then store the integration. Errors by field; nothing is stored on failure."""
    if not isinstance(data, dict):
        return None, {"body": ["Send a JSON object."]}
    errors: Errors = {name: ["This field is not known."] for name in sorted(set(data) - set(WHATSAPP_FIELDS))}
    values = {}
    for name, what in (("phone_number_id", "phone number ID"), ("business_account_id", "WhatsApp Business Account ID")):
        value = data.get(name)
        value = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not value:
            errors[name] = [f"Give the {what} (WhatsApp → API Setup in the Meta App Dashboard)."]
        elif not re.fullmatch(WHATSAPP_ID, value):
            errors[name] = [f"The {what} is a number of 5 to 20 digits."]
        values[name] = value
    token = data.get("access_token")
    token = token.strip() if isinstance(token, str) else ""
    if not token:
        errors["access_token"] = ["Give an access token with whatsapp_business_messaging (a system user token)."]
    elif len(token) > MAX_TOKEN or re.search(r"\s", token):
        errors["access_token"] = ["This is not an access token."]
    if errors:
        return None, errors
    app = meta_app.get_app(user.organization_id)
    if app is None or not meta_app.app_secret(app):
        return None, {"meta_app": [meta_app.NOT_CONFIGURED]}
    number_id, waba_id = values["phone_number_id"], values["business_account_id"]
    settings = svc.provider_settings()
    try:
        number = meta_oauth.phone_number(settings, token, number_id)
    except (UseAnotherProvider, GiveUp) as exc:
        field = "access_token" if isinstance(exc, UseAnotherProvider) else "phone_number_id"
        return None, {field: [exc.reason]}
    except RetryLater as exc:
        return None, {"meta": [exc.reason]}
    try:
        numbers = meta_oauth.business_number_ids(settings, token, waba_id)
    except ProviderError as exc:
        return None, {"business_account_id": [f"The numbers of business account {waba_id} could not be read: {exc.reason}"]}
    if numbers is not None and number_id not in numbers:
        return None, {"business_account_id": [f"Phone number ID {number_id} is not one of the numbers of WhatsApp "
                                              f"Business Account {waba_id}: check both IDs under WhatsApp → API Setup."]}
    try:
        info = meta_oauth.debug_token(settings, app.app_id, meta_app.app_secret(app), token)
    except ProviderError as exc:
        return None, {"access_token": [f"Meta could not confirm the token: {exc.reason}"]}
    if not info.is_valid:
        return None, {"access_token": ["Meta says this token is not valid" + (f" ({info.problem})." if info.problem else ".")]}
    if info.app_id and info.app_id != app.app_id:
        return None, {"access_token": [f"This token was issued for another Meta app ({info.app_id}), not app "
                                       f"{app.app_id}: its webhooks would not reach Switchboard."]}
    try:
        meta_oauth.subscribe_business_account(settings, token, waba_id)
    except ProviderError as exc:
        return None, {"business_account_id": [f"Meta refused to subscribe the business account to the app's "
                                              f"webhooks: {exc.reason}"]}
    shown = number.display_phone_number or number_id
    name = f"{number.verified_name} ({shown})" if number.verified_name else f"WhatsApp {shown}"
    try:
        integration = _upsert(user, "whatsapp", number_id, name, {**values, "access_token": token},
                              {"meta_user_id": info.user_id}, info.expires_at, utcnow())
        db.session.commit()
    except ConnectError as exc:
        db.session.rollback()
        return None, {"meta": [exc.reason]}
    return integration, {}


# --- disconnecting ----------------------------------------------------------------------------

def connected_account(organization_id: int, integration_id: int) -> Integration | None:
    """A Meta account of the organisation (None for another organisation's, or for other integrations)."""
    integration = svc.get_for_org(organization_id, integration_id)
    if integration is None or integration.integration_type not in CONNECTED_TYPES or not integration.external_id:
        return None
    return integration


@dataclass
class Disconnected:
    accounts: list[Integration]
    unsubscribe_problem: str | None  # why Meta could not be told, when it could not


def disconnect(integration: Integration, user: User | None) -> Disconnected:
    """Remove the account's tokens and unsubscribe it from the app's webhooks. A Page takes its Instagram
    account with it (they share the Page's token). A Graph failure still removes our tokens."""
    secrets = svc.get_secrets(integration)
    token = secrets.get(TOKEN_FIELD[integration.integration_type])
    accounts = [integration]
    page_id = (integration.config or {}).get("page_id")
    if integration.integration_type == "facebook":
        accounts += [i for i in _connected(integration.organization_id, "instagram")
                     if (i.config or {}).get("page_id") == page_id]
    problem = None
    if token and not _still_subscribed_by_another(integration):
        settings = svc.provider_settings()
        try:
            if integration.integration_type == "whatsapp":
                meta_oauth.unsubscribe_business_account(settings, token, integration.config["business_account_id"])
            else:
                meta_oauth.unsubscribe_page(settings, page_id, token)
        except ProviderError as exc:
            problem = exc.reason
    actor = user.email if user else "The system"
    for account in accounts:
        svc.store_secrets(account, {})
        account.subscribed_at = account.token_expires_at = None
        account.needs_reconnect, account.is_active = False, False
        words = f"{actor} disconnected {account.name}: its tokens were removed"
        words += f", but Meta could not be told to stop its webhooks ({problem})." if problem else \
            " and its webhooks unsubscribed."
        svc.log_event(account, "disconnected", words, level="warning" if problem else "info", user=user)
        svc.set_status(account, "inactive", "disconnected", user=user)
    db.session.commit()
    return Disconnected(accounts, problem)


def _connected(organization_id: int, integration_type: str) -> list[Integration]:
    return list(db.session.scalars(svc.org_integrations(organization_id).where(
        Integration.integration_type == integration_type, Integration.external_id.is_not(None),
        Integration.secrets_ciphertext.is_not(None))))


def _still_subscribed_by_another(integration: Integration) -> bool:
    """Whether another connected account needs the same subscription: a Page's Instagram account whose
    Page stays connected, or another number of the same WhatsApp business account."""
    config = integration.config or {}
    if integration.integration_type == "instagram":
        return any((i.config or {}).get("page_id") == config.get("page_id")
                   for i in _connected(integration.organization_id, "facebook"))
    if integration.integration_type == "whatsapp":
        return any(i.id != integration.id and (i.config or {}).get("business_account_id") == config.get("business_account_id")
                   for i in _connected(integration.organization_id, "whatsapp"))
    return False


# --- the list ---------------------------------------------------------------------------------

def accounts(organization_id: int) -> list[Integration]:
    """The organisation's Meta accounts: Pages, Instagram accounts, WhatsApp numbers."""
    return list(db.session.scalars(svc.org_integrations(organization_id).where(
        Integration.integration_type.in_(CONNECTED_TYPES), Integration.external_id.is_not(None))
        .order_by(Integration.integration_type, Integration.name, Integration.id)))


def is_connected(integration: Integration) -> bool:
    return integration.secrets_ciphertext is not None


def serialize(integration: Integration, app: MetaApp | None) -> dict[str, Any]:
    """GET /api/platforms/ — a view onto the integration; the webhook address is the organisation's app's."""
    return {
        "id": integration.id,
        "platform": PLATFORM_OF_TYPE[integration.integration_type],
        "name": integration.name,
        "status": integration.status,
        "external_id": integration.external_id,
        "token_expires_at": svc.isoformat(integration.token_expires_at),
        "last_sync_at": svc.isoformat(integration.last_sync_at),
        "webhook_url": meta_app.webhook_url(app) if app else None,
        "verify_token": app.verify_token if app else None,
    }


def serialize_pending(pending: PendingConnection) -> dict[str, Any]:
    return {"id": pending.id, "platform": pending.platform, "expires_at": svc.isoformat(pending.expires_at),
            "pages": pending.pages}
