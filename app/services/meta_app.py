"""The organisation's Meta app: App ID and App Secret (encrypted, write-only), the one webhook address
Meta posts to for everything it connects, and the addresses to paste into Meta's App Dashboard."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select

from ..crypto import vault
from ..extensions import db
from ..models import Integration, MetaApp, User
from ..providers import meta_oauth
from ..providers.base import ProviderError, RetryLater
from .integrations import provider_settings

Errors = dict[str, list[str]]
APP_ID = re.compile(r"\d{1,32}")
MAX_SECRET = 256
NOT_CONFIGURED = ("Meta App credentials not configured: save your Meta app's App ID and App Secret in Settings "
                  "(App Dashboard → App settings → Basic) first.")
INVALID_APP_ID = "Invalid App ID format: the App ID is a number (App Dashboard → App settings → Basic)."


def get_app(organization_id: int) -> MetaApp | None:
    return db.session.scalar(select(MetaApp).where(MetaApp.organization_id == organization_id))


def by_public_id(public_id: str) -> MetaApp | None:
    return db.session.scalar(select(MetaApp).where(MetaApp.public_id == public_id))


def app_secret(app: MetaApp) -> str:
    return vault().decrypt_json(app.secrets_ciphertext).get("app_secret") or ""


@dataclass
class SaveResult:
    app: MetaApp | None
    errors: Errors
    note: str = ""  # what the check against Meta found


def save_credentials(organization_id: int, user: User, app_id: Any, secret: Any) -> SaveResult:
    """Check and store the credentials; an empty secret keeps the stored one. The pair is tried against
    Meta with an app token; nothing is stored when Meta refuses it. The caller commits."""
    errors: Errors = {}
    app = get_app(organization_id)
    if isinstance(app_id, int) and not isinstance(app_id, bool):
        app_id = str(app_id)  # JSON clients may send the number as a number
    app_id = app_id.strip() if isinstance(app_id, str) else app_id
    if app_id in (None, ""):
        errors["app_id"] = ["Give the App ID of your Meta app."]
    elif not isinstance(app_id, str) or not APP_ID.fullmatch(app_id):
        errors["app_id"] = [INVALID_APP_ID]
    if secret is not None and not isinstance(secret, str):
        errors["app_secret"] = ["Give the App Secret as text."]
        secret = None
    secret = (secret or "").strip() or (app_secret(app) if app else "")
    if not secret and "app_secret" not in errors:
        errors["app_secret"] = ["Give the App Secret of your Meta app."]
    elif len(secret) > MAX_SECRET or re.search(r"\s", secret):
        errors["app_secret"] = ["This is not an App Secret: it is one word of letters and digits."]
    if errors:
        return SaveResult(None, errors)
    try:
        name = meta_oauth.app_name(provider_settings(), app_id, secret)
        note = f"Meta accepted the credentials of app {app_id}" + (f" ({name})." if name else ".")
    except RetryLater as exc:
        note = f"Saved without checking them with Meta: {exc.reason}"
    except ProviderError as exc:
        return SaveResult(None, {"app_secret": [f"Meta refused this App ID and App Secret: {exc.reason}"]})
    if app is None:
        app = MetaApp(organization_id=organization_id, app_id=app_id)
        db.session.add(app)
    changed = app.app_id != app_id or app_secret(app) != secret
    app.app_id = app_id
    app.secrets_ciphertext = vault().encrypt_json({"app_secret": secret})
    if changed:
        current_app.logger.info("Meta app credentials of organisation %s changed by user %s", organization_id, user.id)
    return SaveResult(app, {}, note)


def webhook_url(app: MetaApp) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/api/webhooks/meta/{app.public_id}/"


def redirect_uri() -> str:
    """Where Meta's Login dialog sends the browser back; registered in the app's Facebook Login settings."""
    return f"{current_app.config['PUBLIC_BASE_URL']}/api/platforms/callback"


def deletion_callback_url(app: MetaApp) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/api/meta/{app.public_id}/data-deletion/"


def deauthorize_callback_url(app: MetaApp) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL']}/api/meta/{app.public_id}/deauthorize/"


def summary(app: MetaApp | None) -> dict[str, Any]:
    """What the settings page and the API show: never the secret, only that one is set."""
    if app is None:
        return {"configured": False, "redirect_uri": redirect_uri()}
    return {"configured": True, "app_id": app.app_id, "app_secret_set": bool(app_secret(app)),
            "webhook_url": webhook_url(app), "verify_token": app.verify_token, "redirect_uri": redirect_uri(),
            "data_deletion_url": deletion_callback_url(app), "deauthorize_url": deauthorize_callback_url(app)}


def with_app_credentials(integration: Integration, config: dict, secrets: dict) -> tuple[dict, dict]:
    """A Facebook integration connected with Meta has no App ID or App Secret of its own: its adapter
    gets the organisation's (adapters stay free of the database)."""
    if integration.integration_type != "facebook" or (config.get("app_id") and secrets.get("app_secret")):
        return config, secrets
    app = get_app(integration.organization_id)
    if app is None:
        return config, secrets
    return {**config, "app_id": app.app_id}, {**secrets, "app_secret": app_secret(app)}
