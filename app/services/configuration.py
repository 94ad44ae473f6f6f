"""Validation of an integration's configuration, driven by its adapter's declared fields.

The HTML forms and the JSON API both come through here, so both give the same
errors by field name, and an empty secret keeps the stored value.
"""
from __future__ import annotations

import json
import re
import secrets as token_source
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from ..providers.base import Field, Provider
from ..providers.net import private_host_error

MAX_TEXT = 500
MAX_LINES = 2000  # a field of several lines (a list of origins)
MAX_JSON = 20_000
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
TRUE_WORDS = {"1", "true", "on", "yes", "y"}
FALSE_WORDS = {"0", "false", "off", "no", "n", ""}


class FieldError(ValueError):
    pass


@dataclass
class ConfigResult:
    config: dict[str, Any]
    secrets: dict[str, str]
    errors: dict[str, list[str]] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _clean(f: Field, value: Any, allow_private: bool) -> Any:
    """Return the normalised value of one field, or raise FieldError with a plain message."""
    if f.kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise FieldError("Choose yes or no.")
    if f.kind == "json":
        if isinstance(value, str):
            if len(value) > MAX_JSON:
                raise FieldError(f"Keep this under {MAX_JSON} characters.")
            try:
                return json.loads(value)
            except ValueError as exc:
                raise FieldError(f"This is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        if isinstance(value, (list, dict)):
            return value
        raise FieldError("Give JSON here.")
    if f.kind == "int":
        if isinstance(value, bool):
            raise FieldError("Enter a whole number.")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise FieldError("Enter a whole number.") from None
        if f.min_value is not None and number < f.min_value or f.max_value is not None and number > f.max_value:
            raise FieldError(f"Enter a number from {f.min_value} to {f.max_value}.")
        return number
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise FieldError("Give text here.")
    text = str(value).strip()
    if f.kind == "lines":
        text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
        if len(text) > MAX_LINES:
            raise FieldError(f"Keep this under {MAX_LINES} characters.")
        return text
    if len(text) > MAX_TEXT and f.kind != "secret":
        raise FieldError(f"Keep this under {MAX_TEXT} characters.")
    if len(text) > 4096:
        raise FieldError("This value is too long.")
    if f.kind == "email":
        try:
            return validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise FieldError(f"Enter a valid email address: {exc}") from None
    if f.kind == "phone":
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            raise FieldError("Enter the number in international format, starting with + and the country code.") from None
        if not phonenumbers.is_valid_number(number):
            raise FieldError("This is not a valid phone number.")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if f.kind == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FieldError("Enter a full URL starting with https://.")
        return text
    if f.kind == "host":
        if not HOSTNAME.match(text) and not re.match(r"^[0-9a-fA-F:.\[\]]+$", text):
            raise FieldError("Enter a host name such as smtp.example.com.")
        problem = private_host_error(text, allow_private, resolve=False)
        if problem:
            raise FieldError(problem)
        return text.lower()
    if f.kind == "choice":
        allowed = [key for key, _ in f.choices]
        if text not in allowed:
            raise FieldError(f"Choose one of: {', '.join(allowed)}.")
        return text
    if f.pattern and not re.match(f.pattern, text):
        raise FieldError(f.pattern_message or "This value has the wrong format.")
    return text


def generated_value() -> str:
    return token_source.token_urlsafe(24)


def initial_config(provider: type[Provider]) -> dict[str, Any]:
    """A new integration's configuration: declared defaults and generated values (verify tokens)."""
    config = {f.name: f.default for f in provider.fields if f.default is not None and not f.is_secret}
    config.update({f.name: generated_value() for f in provider.fields if f.kind == "generated"})
    return config


def validate_config(
    provider: type[Provider],
    adapter: Provider,
    data: dict[str, Any],
    stored_config: dict[str, Any],
    stored_secrets: dict[str, str],
    *,
    partial: bool,
    allow_private: bool,
) -> ConfigResult:
    """Validate submitted values against the adapter's fields.

    partial=True (the JSON API) keeps stored values for fields not given;
    partial=False (the HTML form) takes every non-secret field from `data`.
    Secrets left empty keep their stored value in both cases.
    """
    config = dict(stored_config)
    new_secrets = dict(stored_secrets)
    errors: dict[str, list[str]] = {}
    known = {f.name for f in provider.fields}
    for name in sorted(set(data) - known):
        errors[name] = ["This field is not known for this provider."]

    for f in provider.fields:
        if f.kind == "generated":
            config[f.name] = config.get(f.name) or generated_value()
            continue
        given = f.name in data
        if f.is_secret:
            if given and not _blank(data[f.name]):
                try:
                    new_secrets[f.name] = _clean(f, data[f.name], allow_private)
                except FieldError as exc:
                    errors[f.name] = [str(exc)]
            if f.required and not new_secrets.get(f.name) and f.name not in errors:
                errors[f.name] = ["This field is required."]
            continue
        if not given and partial:
            value = config.get(f.name)
        elif not given or _blank(data[f.name]):
            value = False if f.kind == "bool" else None
        else:
            try:
                value = _clean(f, data[f.name], allow_private)
            except FieldError as exc:
                errors[f.name] = [str(exc)]
                continue
        if value is None and f.default is not None and not given and f.name not in stored_config:
            value = f.default
        if f.required and _blank(value) and not (isinstance(value, (list, dict)) and value):
            errors[f.name] = ["This field is required."]
            continue
        config[f.name] = value

    for stale in set(config) - known:
        config.pop(stale)
    if not errors:
        for name, messages in adapter.validate(config, new_secrets).items():
            errors.setdefault(name, []).extend(messages)
    changed = sorted(
        [f.name for f in provider.fields if not f.is_secret and config.get(f.name) != stored_config.get(f.name)]
        + [f.name for f in provider.fields if f.is_secret and new_secrets.get(f.name) != stored_secrets.get(f.name)]
    )
    return ConfigResult(config=config, secrets=new_secrets, errors=errors, changed=changed)
