"""What every provider adapter offers, and the errors they raise.

Adapters know one provider's wire format and nothing of Flask or the database:
they take plain values (config, secrets, settings) and return plain results.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

FIELD_KINDS = ("text", "lines", "email", "phone", "url", "host", "int", "secret", "choice", "bool", "json", "generated")


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
    suggest: str | None = None  # "campaigns" or "tags": the form offers the organisation's names

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


@dataclass(frozen=True)
class OutboundMessage:
    """One message to deliver, in plain values. `id` is ours: adapters pass it to the provider
    where it echoes it back in status webhooks (custom args, client references, callback URLs)."""

    id: str
    channel: str
    to: str
    subject: str | None = None
    body: str | None = None
    html: str | None = None
    template: dict[str, Any] | None = None  # WhatsApp: {"name", "language", "parameters": [str, ...]}
    media_url: str | None = None
    status_callback_url: str | None = None  # the integration's webhook URL, for providers that take one per message


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    sandboxed: bool = False


@dataclass(frozen=True)
class InboundWebhook:
    """A webhook request as it arrived, before anything trusts it."""

    method: str
    url: str  # the public URL the provider called (PUBLIC_BASE_URL + path + query), not request.url
    headers: dict[str, str]  # names lower-cased
    body: bytes
    form: tuple[tuple[str, str], ...] = ()  # decoded form fields, in order, when form-encoded
    query: tuple[tuple[str, str], ...] = ()
    received_at: float = 0.0  # Unix time, for timestamp tolerance

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @cached_property
    def json_body(self) -> Any:
        """The body parsed as JSON, once for verify, parse and the de-duplication key alike.
        Raises ValueError (UnicodeDecodeError included) when it is not JSON."""
        return json.loads(self.body)

    def once(self, read: Callable[[InboundWebhook], Any]) -> Any:
        """read(self), worked out once for this request, when verify, parse and the de-duplication
        key each need the same reading of the body. What it raises is not kept: it is raised again."""
        readings = self.__dict__.setdefault("_readings", {})  # beside json_body's cache: frozen fields stay frozen
        if read not in readings:
            readings[read] = read(self)
        return readings[read]


class WebhookRejected(Exception):
    """The request does not prove it comes from the provider (401), or cannot be read (400)."""

    def __init__(self, reason: str, status: int = 401):
        super().__init__(reason)
        self.reason, self.status = reason, status


# What a status webhook can say about a message; processing keeps the furthest state.
EVENT_STATUSES = ("sent", "delivered", "opened", "clicked", "read", "bounced", "failed")


@dataclass(frozen=True)
class StatusEvent:
    """One thing a provider says about one message."""

    dedup_key: str  # unique per event: a second delivery of it changes nothing
    status: str | None  # one of EVENT_STATUSES, or None for events that change no status (deferred, ...)
    description: str  # in plain words: "Delivered", "Bounced: mailbox does not exist"
    provider_message_id: str | None = None
    message_id: str | None = None  # ours, when the provider echoed it back
    occurred_at: float | None = None  # Unix time
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadEvent:
    """A lead a webhook announces (Facebook Lead Ads): the lead itself is fetched when it is processed."""

    leadgen_id: str
    form_id: str | None = None
    page_id: str | None = None
    ad_id: str | None = None
    created_time: float | None = None  # Unix time, by the provider's clock


@dataclass(frozen=True)
class FetchedLead:
    """A lead as the provider gives it: who submitted which form, and their answers."""

    leadgen_id: str
    form_id: str | None = None
    ad_id: str | None = None
    created_time: float | None = None  # Unix time
    field_data: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (question key, answers) in the form's order


class Provider:
    integration_type: ClassVar[str]
    name: ClassVar[str]
    label: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    receives_webhooks: ClassVar[bool] = False
    # Messages per second the provider documents for one account; the integration's rate_limit defaults to it.
    default_rate_limit: ClassVar[float] = 1.0
    # The provider has its own test mode (SendGrid sandbox_mode, Mailgun o:testmode): sandboxed sends still call it.
    has_test_mode: ClassVar[bool] = False
    # Headers of its webhooks worth keeping with the stored body (lower-case): signatures, timestamps.
    webhook_headers: ClassVar[tuple[str, ...]] = ()
    # The provider may deliver events by GET with query parameters (Vonage's receipts can be configured so).
    get_delivers_events: ClassVar[bool] = False

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

    def send(self, config: dict[str, Any], secrets: dict[str, str], message: OutboundMessage, *,
             sandbox: bool) -> SendResult:
        """Deliver one message (or, with sandbox and has_test_mode, have the provider accept it
        without delivering). Raises RetryLater, UseAnotherProvider or GiveUp."""
        raise NotImplementedError

    def verify_webhook(self, config: dict[str, Any], secrets: dict[str, str], request: InboundWebhook) -> None:
        """Raise WebhookRejected unless the raw request proves it comes from the provider
        (signature, timestamp tolerance). Runs before anything else reads the request."""
        raise WebhookRejected("This provider's webhooks are not accepted.", 404)

    def webhook_dedup_key(self, request: InboundWebhook) -> str:
        """What identifies this delivery, so the provider's retry of it is stored once."""
        return hashlib.sha256(request.body + repr(request.form).encode()).hexdigest()

    def parse_webhook(self, config: dict[str, Any], request: InboundWebhook) -> list[StatusEvent | LeadEvent]:
        """Turn a verified webhook into status events (and, for lead sources, lead events).
        Raises WebhookRejected(..., 400) if unreadable."""
        return []

    def act_on_event(self, config: dict[str, Any], secrets: dict[str, str], event: StatusEvent) -> None:
        """Work an event needs beyond a status change, run by the processing job
        (Amazon SNS: confirm a subscription by fetching its SubscribeURL)."""

    def answer_webhook_get(self, config: dict[str, Any], secrets: dict[str, str], request: InboundWebhook) -> str | None:
        """The body for a provider's GET handshake (Meta's hub.challenge), or None when there is none."""
        return None


# Settings names of every provider base URL; config.py gives each its real default.
PROVIDER_API_BASE_NAMES = (
    "SENDGRID_API_BASE", "MAILGUN_API_BASE", "MAILGUN_EU_API_BASE", "MANDRILL_API_BASE",
    "TWILIO_API_BASE", "VONAGE_API_BASE", "PLIVO_API_BASE", "META_GRAPH_API_BASE",
)
