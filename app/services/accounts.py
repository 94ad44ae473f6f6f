"""Organisations, users and API tokens."""
from __future__ import annotations

import functools
import hashlib
import secrets
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import geocoder
from sqlalchemy import func, select, update

from ..extensions import db
from ..models import ROLES, ApiToken, Integration, Organization, User, utcnow

MIN_PASSWORD = 10
Errors = dict[str, list[str]]


def first_run_needed() -> bool:
    return db.session.scalar(select(func.count()).select_from(User)) == 0


def normalise_email(value: str) -> str:
    return validate_email(value.strip(), check_deliverability=False).normalized.lower()


def _user_errors(email: str, password: str) -> tuple[str | None, Errors]:
    errors: Errors = {}
    clean = None
    try:
        clean = normalise_email(email or "")
    except EmailNotValidError as exc:
        errors["email"] = [f"Enter a valid email address: {exc}"]
    if clean and db.session.scalar(select(User.id).where(User.email == clean)):
        errors["email"] = ["A user with this email already exists."]
    if len(password or "") < MIN_PASSWORD:
        errors["password"] = [f"Use at least {MIN_PASSWORD} characters."]
    return clean, errors


def add_user(organization: Organization, email: str, password: str, role: str) -> tuple[User | None, Errors]:
    clean, errors = _user_errors(email, password)
    if role not in ROLES:
        errors["role"] = [f"Choose one of: {', '.join(ROLES)}."]
    if errors:
        return None, errors
    user = User(organization=organization, email=clean, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user, {}


def _other_admins(user: User) -> int:
    """Admins of the user's organisation besides them, their rows locked where the database can, so
    that two admins demoting or removing each other at once cannot leave the organisation without one."""
    return len(db.session.scalars(select(User.id).where(User.organization_id == user.organization_id,
                                                        User.role == "admin", User.id != user.id)
                                  .with_for_update()).all())


def change_role(user: User, role: Any) -> Errors:
    """Make a team member admin or staff; the organisation keeps at least one admin. The caller commits."""
    if role not in ROLES:
        return {"role": [f"Choose one of: {', '.join(ROLES)}."]}
    if user.role == "admin" and role != "admin" and _other_admins(user) == 0:
        return {"role": [f"{user.email} is the only admin. Make someone else admin first."]}
    user.role = role
    return {}


def remove_user(acting: User, user: User) -> Errors:
    """An admin removes a team member: they are signed out at their next request and their API tokens
    stop working; what they did stays in the logs by their email. Nobody removes themself, so the
    organisation keeps its acting admin. The caller commits."""
    if user.id == acting.id:
        return {"user": ["You cannot remove yourself. Ask another admin."]}
    db.session.delete(user)
    return {}


def set_up_first_run(organization_name: str, email: str, password: str) -> tuple[User | None, Errors]:
    """Create the organisation and its first admin; refused once any user exists."""
    if not first_run_needed():
        return None, {"email": ["Switchboard is already set up: sign in instead."]}
    name = (organization_name or "").strip()
    org_errors = {} if 0 < len(name) <= 200 else {"organization_name": ["Give your organisation a name."]}
    _, errors = _user_errors(email, password)
    if org_errors or errors:
        return None, {**org_errors, **errors}
    return add_user(Organization(name=name), email, password, "admin")


def find_or_create_organization(name: str) -> Organization:
    org = db.session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(name=name)
        db.session.add(org)
        db.session.flush()
    return org


def authenticate(email: str, password: str) -> User | None:
    try:
        clean = normalise_email(email or "")
    except EmailNotValidError:
        return None
    user = db.session.scalar(select(User).where(User.email == clean))
    if user is None or not user.check_password(password or ""):
        return None
    return user


def change_password(user: User, current: str, new: str) -> Errors:
    if not user.check_password(current or ""):
        return {"current_password": ["This is not your current password."]}
    if len(new or "") < MIN_PASSWORD:
        return {"new_password": [f"Use at least {MIN_PASSWORD} characters."]}
    _replace_password(user, new)
    return {}


def reset_password(user: User, new: str) -> Errors:
    """An admin gives a team member a new password (they forgot theirs, or it leaked). The caller commits."""
    if len(new or "") < MIN_PASSWORD:
        return {"password": [f"Use at least {MIN_PASSWORD} characters."]}
    _replace_password(user, new)
    return {}


def _replace_password(user: User, new: str) -> None:
    """Every session signed in with the old password ends at its next request (User.get_id)."""
    user.set_password(new)
    user.session_version += 1


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_count(user: User) -> int:
    return db.session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id))


MAX_TOKEN_NAME = 100


def create_api_token(user: User, name: str | None = None) -> str:
    """A new bearer token; only its hash is stored, so this is the one time it is seen."""
    token = "sb_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(organization_id=user.organization_id, user_id=user.id, token_hash=_token_hash(token),
                            name=name))
    return token


def clean_token_name(value: Any) -> tuple[str | None, Errors]:
    name = " ".join(str(value or "").split())
    if not name:
        return None, {"name": ["Say what the token is for, e.g. “Website backend”."]}
    if len(name) > MAX_TOKEN_NAME:
        return None, {"name": [f"Keep the name under {MAX_TOKEN_NAME} characters."]}
    return name, {}


def tokens_of(user: User) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def revoke_token(token: ApiToken) -> None:
    """The token stops working at the next request (the caller commits)."""
    db.session.delete(token)


def token_of(user: User, token_id: int) -> ApiToken | None:
    """One of the user's own tokens (None for anyone else's)."""
    return db.session.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id))


def user_for_token(token: str) -> User | None:
    if not token or len(token) > 200:
        return None
    api_token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if api_token is None:
        return None
    now = utcnow()
    if api_token.last_used_at is None or (now - api_token.last_used_at).total_seconds() > 60:
        # At most once a minute, committed now: a request that only reads commits nothing of its own, and
        # this runs before the request's work (the API's authentication), so nothing else is pending.
        db.session.execute(update(ApiToken).where(ApiToken.id == api_token.id).values(last_used_at=now))
        db.session.commit()
    return api_token.user


@functools.cache
def country_choices() -> tuple[tuple[str, str], ...]:
    """(ISO code, "Name (+calling code)") for every region phonenumbers knows, by name."""
    choices = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        name = geocoder.country_name_for_number(example, "en") if example else ""
        choices.append((region, f"{name or region} (+{phonenumbers.country_code_for_region(region)})"))
    return tuple(sorted(choices, key=lambda choice: choice[1]))


def update_organization(organization: Organization, name: Any, default_country: Any) -> Errors:
    """Rename the organisation and set the country that local phone numbers are read in."""
    errors: Errors = {}
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        errors["name"] = ["Give the organisation a name of at most 200 characters."]
    if not isinstance(default_country, str) or default_country.upper() not in phonenumbers.SUPPORTED_REGIONS:
        errors["default_country"] = ["Choose a country from the list."]
    if errors:
        return errors
    if default_country.upper() != organization.default_country:
        # Sign-up intake validates phone numbers with copies of its pages that carry this country, and
        # trusts a copy only while its page is at the copy's version: move the version, so the next
        # post reads the page (and the new country) again.
        db.session.execute(update(Integration).where(Integration.organization_id == organization.id,
                                                     Integration.integration_type == "signup_page")
                           .values(updated_at=utcnow()))
    organization.name, organization.default_country = name.strip(), default_country.upper()
    return {}
