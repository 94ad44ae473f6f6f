"""What every provider adapter offers, and the errors they raise.

Adapters know one provider's wire format and nothing of Flask or the database:
they take plain values (config, secrets, settings) and return plain results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

FIELD_KINDS = ("text", "email", "phone", "url", "host", "int", "secret", "choice", "bool", "json", "generated")


@dataclass(frozen=True)
class Field:
    """One configuration field; forms, validation, masking and the API come from it."""

    name: str
    label: str
    kind: str = "text"
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    default: Any = None
    placeholder: str = ""
    pattern: str | None = None
    pattern_message: str = ""
    min_value: int | None = None
    max_value: int | None = None

    def __post_init__(self):
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"unknown field kind {self.kind!r}")

    @property
    def is_secret(self) -> bool:
        return self.kind == "secret"


@dataclass(frozen=True)
class ProviderSettings:
    """Deployment settings an adapter needs: base URLs, timeouts, network policy."""

    api_bases: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    allow_private_network: bool = False
    aws_endpoint_url: str | None = None
    meta_api_version: str = "v25.0"

    def api_base(self, name: str) -> str:
        return self.api_bases[name].rstrip("/")


class ProviderError(Exception):
    """A failure with a reason a person can read. Jobs act on the subclass alone."""

    def __init__(self, reason: str, *, retry_after: float | None = None, http_status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.http_status = http_status


class RetryLater(ProviderError):
    """Timeouts, connection errors, 429 (with Retry-After), 5xx: the same call may pass later."""


class UseAnotherProvider(ProviderError):
    """The provider's side is broken or our credentials were refused or revoked."""


class GiveUp(ProviderError):
    """The recipient or the content is wrong; no retry and no other provider will help."""


class Provider:
    integration_type: ClassVar[str]
    name: ClassVar[str]
    label: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    receives_webhooks: ClassVar[bool] = False

    def __init__(self, settings: ProviderSettings):
        self.settings = settings

    @classmethod
    def field(cls, name: str) -> Field:
        return next(f for f in cls.fields if f.name == name)

    @classmethod
    def secret_fields(cls) -> list[Field]:
        return [f for f in cls.fields if f.is_secret]

    def validate(self, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        """Checks across fields, after each field passed on its own. Returns errors by field."""
        return {}

    def check(self, config: dict[str, Any], secrets: dict[str, str]) -> str:
        """Prove the credentials against the real API without sending a message.

        Returns a short description of what was proven; raises ProviderError otherwise.
        """
        raise NotImplementedError


# Settings names of every provider base URL; config.py gives each its real default.
PROVIDER_API_BASE_NAMES = (
    "SENDGRID_API_BASE", "MAILGUN_API_BASE", "MAILGUN_EU_API_BASE", "MANDRILL_API_BASE",
    "TWILIO_API_BASE", "VONAGE_API_BASE", "PLIVO_API_BASE", "META_GRAPH_API_BASE",
)
