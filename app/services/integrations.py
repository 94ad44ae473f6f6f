"""Business rules for integrations: create, configure, update, delete, serialise, log.

Secrets are encrypted as one JSON object per integration, never returned and never logged.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from ..crypto import vault
from ..extensions import db
from ..models import INTEGRATION_STATUSES, LOG_LEVELS, Integration, IntegrationLog, User, utcnow
from ..providers import INTEGRATION_TYPES, Provider, ProviderSettings, provider_class
from ..providers.base import PROVIDER_API_BASE_NAMES
from .configuration import initial_config, validate_config

Errors = dict[str, list[str]]
MAX_NAME = 200
SENDING_TYPES = ("email", "sms", "whatsapp")


def provider_settings() -> ProviderSettings:
    cfg = current_app.config
    return ProviderSettings(
        api_bases={name: cfg[name] for name in PROVIDER_API_BASE_NAMES},
        timeout=cfg["PROVIDER_TIMEOUT_SECONDS"],
        allow_private_network=cfg["ALLOW_PRIVATE_NETWORK"],
        aws_endpoint_url=cfg["AWS_ENDPOINT_URL"],
        meta_api_version=cfg["META_API_VERSION"],
    )


def provider_of(integration: Integration) -> type[Provider]:
    cls = provider_class(integration.integration_type, integration.provider)
    if cls is None:
        raise LookupError(f"No adapter for {integration.integration_type}/{integration.provider}")
    return cls


def adapter_for(integration: Integration) -> Provider:
    return provider_of(integration)(provider_settings())


def get_secrets(integration: Integration) -> dict[str, str]:
    return vault().decrypt_json(integration.secrets_ciphertext)


def store_secrets(integration: Integration, values: dict[str, str]) -> None:
    integration.secrets_ciphertext = vault().encrypt_json(values) if values else None


def missing_required(integration: Integration, secrets: dict[str, str]) -> list[str]:
    """Labels of required fields that were never filled in."""
    config = integration.config or {}
    return [f.label for f in provider_of(integration).fields
            if f.required and not (secrets.get(f.name) if f.is_secret else config.get(f.name) not in (None, "", [], {}))]


def webhook_url(integration: Integration) -> str | None:
    if not provider_of(integration).receives_webhooks:
        return None
    base = current_app.config["PUBLIC_BASE_URL"]
    return f"{base}/api/webhooks/{integration.provider}/{integration.public_id}/"


def log_event(integration: Integration, event: str, message: str, *, level: str = "info",
              details: dict[str, Any] | None = None, user: User | None = None) -> IntegrationLog:
    entry = IntegrationLog(
        organization_id=integration.organization_id, integration_id=integration.id, level=level,
        event=event, message=message, details=details or {}, user_id=user.id if user else None,
    )
    db.session.add(entry)
    return entry


def _actor(user: User | None) -> str:
    return user.email if user else "the system"


def org_integrations(organization_id: int):
    return select(Integration).where(Integration.organization_id == organization_id)


def get_for_org(organization_id: int, integration_id: int) -> Integration | None:
    """The integration if it belongs to the organisation; None otherwise (views answer 404)."""
    return db.session.scalar(org_integrations(organization_id).where(Integration.id == integration_id))


def list_for_org(organization_id: int, integration_type: str | None = None) -> list[Integration]:
    query = org_integrations(organization_id).order_by(Integration.integration_type, Integration.name, Integration.id)
    if integration_type:
        query = query.where(Integration.integration_type == integration_type)
    return list(db.session.scalars(query))


# What a list row shows: never the config or the ciphertext.
LIST_COLUMNS = (Integration.id, Integration.integration_type, Integration.provider, Integration.name,
                Integration.status, Integration.is_active, Integration.last_tested_at, Integration.error_count)


def hub_cards(organization_id: int, per_type: int) -> dict[str, tuple[list, int]]:
    """For each type: its first `per_type` integrations by name, and how many it has. One query."""
    ranked = select(
        *LIST_COLUMNS,
        func.row_number().over(partition_by=Integration.integration_type,
                               order_by=(Integration.name, Integration.id)).label("rank"),
        func.count().over(partition_by=Integration.integration_type).label("total"),
    ).where(Integration.organization_id == organization_id).subquery()
    cards: dict[str, tuple[list, int]] = {key: ([], 0) for key in INTEGRATION_TYPES}
    for row in db.session.execute(select(ranked).where(ranked.c.rank <= per_type).order_by(ranked.c.rank)):
        items, _ = cards.setdefault(row.integration_type, ([], 0))
        items.append(row)
        cards[row.integration_type] = (items, row.total)
    return cards


def type_list_query(organization_id: int, integration_type: str):
    return (select(*LIST_COLUMNS).where(Integration.organization_id == organization_id,
                                        Integration.integration_type == integration_type)
            .order_by(Integration.name, Integration.id))


def _clean_name(name: Any) -> tuple[str | None, list[str]]:
    if not isinstance(name, str) or not name.strip():
        return None, ["Give the integration a name."]
    if len(name.strip()) > MAX_NAME:
        return None, [f"Keep the name under {MAX_NAME} characters."]
    return name.strip(), []


def create_integration(organization_id: int, user: User | None, integration_type: Any, name: Any,
                       provider: Any) -> tuple[Integration | None, Errors]:
    errors: Errors = {}
    kind = INTEGRATION_TYPES.get(integration_type) if isinstance(integration_type, str) else None
    if kind is None:
        errors["integration_type"] = [f"Choose one of: {', '.join(INTEGRATION_TYPES)}."]
    elif provider in (None, "") and len(kind.providers) == 1:
        provider = kind.providers[0].name
    elif not isinstance(provider, str) or kind.provider(provider) is None:
        errors["provider"] = [f"Choose one of: {', '.join(p.name for p in kind.providers)}."]
    clean_name, name_errors = _clean_name(name)
    if name_errors:
        errors["name"] = name_errors
    if errors:
        return None, errors
    integration = Integration(organization_id=organization_id, integration_type=integration_type,
                              provider=provider, name=clean_name, status="pending", is_active=True,
                              config=initial_config(kind.provider(provider)))
    db.session.add(integration)
    db.session.flush()
    log_event(integration, "created", f"{_actor(user)} added {kind.label} integration “{clean_name}” ({provider}).",
              user=user)
    return integration, {}


def configure(integration: Integration, data: dict[str, Any], user: User | None, *, partial: bool) -> Errors:
    """Validate and store configuration; nothing changes when there is an error."""
    cls = provider_of(integration)
    stored = get_secrets(integration)
    result = validate_config(cls, cls(provider_settings()), data, integration.config or {}, stored,
                             partial=partial, allow_private=current_app.config["ALLOW_PRIVATE_NETWORK"])
    if result.errors:
        return result.errors
    if result.changed:
        integration.config = result.config
        store_secrets(integration, result.secrets)
        integration.updated_at = utcnow()
        log_event(integration, "config_changed",
                  f"{_actor(user)} changed {', '.join(result.changed)}.",
                  details={"fields": result.changed}, user=user)
    return {}


def set_status(integration: Integration, status: str, reason: str, *, user: User | None = None) -> None:
    if integration.status == status:
        return
    previous, integration.status = integration.status, status
    log_event(integration, "status_changed", f"Status changed from {previous} to {status}: {reason}",
              level="error" if status == "error" else "info",
              details={"from": previous, "to": status}, user=user)


def update(integration: Integration, data: dict[str, Any], user: User | None) -> Errors:
    """Apply name, is_active and status (the API's PUT and the edit form)."""
    errors: Errors = {}
    name = integration.name
    if "name" in data:
        name, name_errors = _clean_name(data["name"])
        if name_errors:
            errors["name"] = name_errors
    is_active = integration.is_active
    if "is_active" in data:
        if not isinstance(data["is_active"], bool):
            errors["is_active"] = ["Give true or false."]
        else:
            is_active = data["is_active"]
    status = data.get("status", integration.status)
    if status not in INTEGRATION_STATUSES:
        errors["status"] = [f"Choose one of: {', '.join(INTEGRATION_STATUSES)}."]
    sending = _sending_settings(integration, data, errors)
    if errors:
        return errors
    for setting, value in sending.items():
        if getattr(integration, setting) != value:
            log_event(integration, "sending_changed", f"{_actor(user)} set {setting.replace('_', ' ')} to {value}.",
                      details={"field": setting, "value": value}, user=user)
            setattr(integration, setting, value)
    if name != integration.name:
        log_event(integration, "renamed", f"{_actor(user)} renamed “{integration.name}” to “{name}”.", user=user)
        integration.name = name
    if "status" in data and status == "inactive":
        is_active = False
    if is_active != integration.is_active:
        integration.is_active = is_active
        verb = "activated" if is_active else "deactivated"
        log_event(integration, verb, f"{_actor(user)} {verb} the integration.", user=user)
    if not is_active:
        status = "inactive"
    elif status == "inactive":
        status = "pending"  # reactivated: it needs a passing test to be active again
    set_status(integration, status, f"set by {_actor(user)}", user=user)
    integration.updated_at = utcnow()
    return {}


MAX_RATE_LIMIT = 10_000.0


def _sending_settings(integration: Integration, data: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """priority (int, lower first), rate_limit (messages per second, null for the provider's default), sandbox."""
    values: dict[str, Any] = {}
    if "priority" in data:
        value = data["priority"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
            errors["priority"] = ["Give a whole number from 0 to 1000000; lower is tried first."]
        else:
            values["priority"] = value
    if "rate_limit" in data:
        value = data["rate_limit"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0.01 <= value <= MAX_RATE_LIMIT):
            errors["rate_limit"] = [f"Give messages per second from 0.01 to {MAX_RATE_LIMIT:g}, or null for the default."]
        else:
            values["rate_limit"] = float(value) if value is not None else None
    if "sandbox" in data:
        if not isinstance(data["sandbox"], bool):
            errors["sandbox"] = ["Give true or false."]
        else:
            values["sandbox"] = data["sandbox"]
    if values and integration.integration_type not in SENDING_TYPES:
        for name in values:
            errors[name] = ["Only email, SMS and WhatsApp integrations send messages."]
    return values


def delete(integration: Integration, user: User | None) -> None:
    current_app.logger.info("integration %s (%s) deleted by %s", integration.id, integration.provider, _actor(user))
    db.session.delete(integration)


def isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def serialize(integration: Integration) -> dict[str, Any]:
    cls = provider_of(integration)
    stored = get_secrets(integration)
    config = integration.config or {}
    data = {
        "id": integration.id,
        "integration_type": integration.integration_type,
        "name": integration.name,
        "provider": integration.provider,
        "status": integration.status,
        "is_active": integration.is_active,
        "config": {f.name: config.get(f.name) for f in cls.fields if not f.is_secret},
        "secrets": {f.name: bool(stored.get(f.name)) for f in cls.secret_fields()},
        "last_tested_at": isoformat(integration.last_tested_at),
        "last_sync_at": isoformat(integration.last_sync_at),
        "last_error": integration.last_error,
        "error_count": integration.error_count,
        "created_at": isoformat(integration.created_at),
        "updated_at": isoformat(integration.updated_at),
    }
    url = webhook_url(integration)
    if url:
        data["webhook_url"] = url
    if integration.integration_type == "signup_page":
        from .signups import public_urls
        data.update(public_urls(integration), has_api_key=integration.api_key_hash is not None,
                    api_key_created_at=isoformat(integration.api_key_created_at))
    if integration.integration_type in SENDING_TYPES:
        data.update(priority=integration.priority, sandbox=integration.sandbox,
                    rate_limit=integration.rate_limit or cls.default_rate_limit,
                    rate_limit_is_default=integration.rate_limit is None)
    return data


def logs_query(integration: Integration, level: str | None):
    """Newest first. `integration` is already scoped to the organisation, so its id alone selects."""
    query = select(IntegrationLog).where(IntegrationLog.integration_id == integration.id)
    if level in LOG_LEVELS:
        query = query.where(IntegrationLog.level == level)
    return query.order_by(IntegrationLog.id.desc())


def serialize_log(entry: IntegrationLog) -> dict[str, Any]:
    return {"id": entry.id, "level": entry.level, "event": entry.event, "message": entry.message,
            "details": entry.details or {}, "user": entry.user.email if entry.user else None,
            "created_at": isoformat(entry.created_at)}


def stats(organization_id: int) -> dict[str, Any]:
    """Counts by type and status, and errors over the last 24 hours by hour."""
    rows = db.session.execute(
        select(Integration.integration_type, Integration.status, func.count())
        .where(Integration.organization_id == organization_id)
        .group_by(Integration.integration_type, Integration.status)
    ).all()
    by_type = {key: {"total": 0, **{s: 0 for s in INTEGRATION_STATUSES}} for key in INTEGRATION_TYPES}
    by_status = {s: 0 for s in INTEGRATION_STATUSES}
    for kind, status, count in rows:
        if kind in by_type and status in by_status:
            by_type[kind][status] += count
            by_type[kind]["total"] += count
            by_status[status] += count
    now = utcnow()
    since = now - timedelta(hours=24)
    error_times = db.session.scalars(
        select(IntegrationLog.created_at).where(IntegrationLog.organization_id == organization_id,
                                                IntegrationLog.level == "error",
                                                IntegrationLog.created_at >= since)
    ).all()
    hours = [0] * 24
    for moment in error_times:
        hours[min(23, int((moment - since).total_seconds() // 3600))] += 1
    return {"total": sum(by_status.values()), "by_type": by_type, "by_status": by_status,
            "errors_last_24h": len(error_times),
            "errors_by_hour": [{"hour": isoformat(since + timedelta(hours=i)), "count": c} for i, c in enumerate(hours)]}
