"""Database models. Every row belongs to an organisation (DESIGN rule 4)."""
import secrets
import uuid
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow() -> datetime:
    """Naive UTC, so SQLite and PostgreSQL store the same thing."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_public_id() -> str:
    return secrets.token_urlsafe(16)


class Organization(db.Model):
    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # ISO 3166 country of local phone numbers ("4155552671" is +14155552671 with "US").
    default_country: Mapped[str] = mapped_column(String(2), default="US", server_default="US")


ROLES = ("admin", "staff")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="staff")
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")  # moves when the password changes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organization: Mapped[Organization] = relationship()

    def get_id(self) -> str:
        """What a signed-in session keeps (Flask-Login): the id and the session version, so that a new
        password signs out every session made with the old one (app.load_user compares them)."""
        return f"{self.id}.{self.session_version}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class ApiToken(db.Model):
    """A bearer token for the JSON API; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(100))  # what it is for, e.g. "Website backend"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


INTEGRATION_STATUSES = ("active", "inactive", "error", "pending")


class Integration(db.Model):
    __tablename__ = "integrations"
    __table_args__ = (Index("ix_integrations_org_type", "organization_id", "integration_type"),
                      Index("ix_integrations_type_external_id", "integration_type", "external_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_type: Mapped[str] = mapped_column(String(30))
    provider: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    is_active: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Fernet token of a JSON object holding every secret field (see app/crypto.py).
    secrets_ciphertext: Mapped[str | None] = mapped_column(Text)
    last_tested_at: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    error_count: Mapped[int] = mapped_column(default=0)
    # Sending: lower priority is tried first; rate_limit in messages per second (None: the provider's default).
    priority: Mapped[int] = mapped_column(default=100, server_default="100")
    rate_limit: Mapped[float | None]
    sandbox: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Provider-side send failures in a row; enough of them mark the integration as in error.
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    # Connected Meta accounts: the Page, Instagram account or WhatsApp phone number id that Meta's
    # webhooks name, so one webhook address per organisation can find the integration.
    external_id: Mapped[str | None] = mapped_column(String(64))
    token_expires_at: Mapped[datetime | None]  # None: unknown or never expires
    subscribed_at: Mapped[datetime | None]  # when the account was subscribed to the app's webhooks
    needs_reconnect: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Sign-up pages: SHA-256 of the X-API-Key of the server-to-server endpoint (the key is shown once).
    api_key_hash: Mapped[str | None] = mapped_column(String(64))
    api_key_created_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


LOG_LEVELS = ("info", "warning", "error")


class IntegrationLog(db.Model):
    """What happened to an integration: tests, configuration changes, errors, status changes.

    Never holds a secret's value: details name the fields that changed.
    """

    __tablename__ = "integration_logs"
    __table_args__ = (
        Index("ix_integration_logs_integration_id_id", "integration_id", "id"),
        Index("ix_integration_logs_integration_level_id", "integration_id", "level", "id"),
        Index("ix_integration_logs_org_level_created", "organization_id", "level", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10), default="info")
    event: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship()


TEST_STATUSES = ("queued", "running", "passed", "failed")


class ConnectionTest(db.Model):
    """One run of "test connection"; its id is also the RQ job id."""

    __tablename__ = "connection_tests"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    message: Mapped[str | None] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    @property
    def done(self) -> bool:
        return self.status in ("passed", "failed")


MESSAGE_STATUSES = ("queued", "scheduled", "sending", "sent", "delivered", "opened", "clicked", "read",
                    "bounced", "failed", "sandboxed")
CHANNELS = ("email", "sms", "whatsapp")


def new_message_id() -> str:
    return uuid.uuid4().hex


class Message(db.Model):
    """An outbound message: a row (with its own id) before anything is sent."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key", name="uq_messages_org_idempotency_key"),
        Index("ix_messages_org_created", "organization_id", "created_at"),
        Index("ix_messages_integration_created", "integration_id", "created_at"),
        Index("ix_messages_provider_message_id", "provider_message_id"),
        Index("ix_messages_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_message_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # The integration that will send (or finally sent) it; failover moves it.
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(998))
    body: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    template: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    media_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    bulk_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # Who it went to and which campaign step sent it, when it was sent for a contact or a campaign.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    campaign_step_id: Mapped[int | None] = mapped_column(ForeignKey("campaign_steps.id", ondelete="SET NULL"),
                                                         index=True)
    send_at: Mapped[datetime | None]
    sending_started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    events: Mapped[list["MessageEvent"]] = relationship(order_by="MessageEvent.id", cascade="all, delete-orphan",
                                                        passive_deletes=True)


class MessageEvent(db.Model):
    """The message's timeline: queued, sending, failover, retries, sent, and what webhooks said."""

    __tablename__ = "message_events"
    __table_args__ = (UniqueConstraint("message_id", "dedup_key", name="uq_message_events_message_dedup"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="SET NULL"))
    dedup_key: Mapped[str | None] = mapped_column(String(255))  # a webhook event's own key
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


WEBHOOK_STATUSES = ("pending", "processing", "processed", "failed")


def _only_rows_with(column: str) -> dict[str, Any]:
    condition = sa.text(f"{column} IS NOT NULL")
    return {"sqlite_where": condition, "postgresql_where": condition}


class WebhookEvent(db.Model):
    """A verified webhook, stored before it is acknowledged; a job processes it. It arrived at one
    integration's address, or at the organisation's Meta app address (meta_app_id), whose posts
    can concern several connected accounts at once."""

    __tablename__ = "webhook_events"
    # An event arrives at one of the two addresses, so each address's indexes hold only its rows:
    # intake writes two index entries fewer per event (a third of its INSERT on SQLite).
    __table_args__ = (
        Index("uq_webhook_events_integration_dedup", "integration_id", "dedup_key", unique=True,
              **_only_rows_with("integration_id")),
        Index("ix_webhook_events_integration_id_id", "integration_id", "id", **_only_rows_with("integration_id")),
        Index("uq_webhook_events_meta_app_dedup", "meta_app_id", "dedup_key", unique=True,
              **_only_rows_with("meta_app_id")),
        Index("ix_webhook_events_meta_app_id_id", "meta_app_id", "id", **_only_rows_with("meta_app_id")),
        Index("ix_webhook_events_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    meta_app_id: Mapped[int | None] = mapped_column(ForeignKey("meta_apps.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(30))
    dedup_key: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    form: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    processed_at: Mapped[datetime | None]  # while "processing": when the drain took it


contact_tags = sa.Table(
    "contact_tags", db.metadata,
    sa.Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Contact(db.Model):
    """A person of an organisation. One contact per email and one per phone (NULLs allowed many times)."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("organization_id", "email", name="uq_contacts_org_email"),
        UniqueConstraint("organization_id", "phone", name="uq_contacts_org_phone"),
        Index("ix_contacts_org_created", "organization_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))  # normalised, lowercase
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # custom fields
    source: Mapped[str | None] = mapped_column(String(100))
    # Optimistic locking: an update of a row someone else changed meanwhile fails and is redone.
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    tags: Mapped[list["Tag"]] = relationship(secondary=contact_tags, order_by="Tag.name", back_populates="contacts")
    events: Mapped[list["ContactEvent"]] = relationship(order_by="ContactEvent.id", cascade="all, delete-orphan",
                                                        passive_deletes=True)

    @property
    def display_name(self) -> str:
        return self.name or self.email or self.phone or f"Contact {self.id}"


class Tag(db.Model):
    """A label on contacts; names are unique per organisation regardless of case."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("organization_id", "normalized_name", name="uq_tags_org_normalized_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    normalized_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(secondary=contact_tags, back_populates="tags")


class ContactEvent(db.Model):
    """A contact's timeline: created, updated, tagged, and later submissions, leads and messages."""

    __tablename__ = "contact_events"
    __table_args__ = (Index("ix_contact_events_contact_id_id", "contact_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(db.Model):
    """A named sequence of steps; each enrolled contact goes through them once."""

    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("organization_id", "normalized_name", name="uq_campaigns_org_normalized_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    normalized_name: Mapped[str] = mapped_column(String(200))  # sign-up pages and Lead Ads name their campaign
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    steps: Mapped[list["CampaignStep"]] = relationship(order_by="CampaignStep.position", cascade="all, delete-orphan",
                                                       passive_deletes=True)


class CampaignStep(db.Model):
    """Send one message, `delay_minutes` after the previous step (or after enrolment, for the first)."""

    __tablename__ = "campaign_steps"
    __table_args__ = (UniqueConstraint("campaign_id", "position", name="uq_campaign_steps_campaign_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int]  # 0, 1, 2 ...
    delay_minutes: Mapped[int] = mapped_column(default=0)
    # Either a given integration, or the channel's first active integration when the step runs.
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(String(998))
    body: Mapped[str | None] = mapped_column(Text)  # with {{first_name}}-style placeholders
    template: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # WhatsApp: {"name", "language", "parameters"}
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


ENROLLMENT_STATUSES = ("active", "completed", "stopped")


class CampaignEnrollment(db.Model):
    """A contact in a campaign: once per campaign (unique), with the next step and when it is due."""

    __tablename__ = "campaign_enrollments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", name="uq_campaign_enrollments_campaign_contact"),
        Index("ix_campaign_enrollments_status_next_run", "status", "next_run_at"),
        Index("ix_campaign_enrollments_contact_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    source: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="active")
    next_position: Mapped[int] = mapped_column(default=0)  # the position of the step that runs next
    next_run_at: Mapped[datetime | None]
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]

    campaign: Mapped[Campaign] = relationship()
    contact: Mapped[Contact] = relationship()


class ContactImport(db.Model):
    """A CSV file of contacts being imported by a job, with its progress and the rows it could not take.
    The file's text is kept only until the job has read it all."""

    __tablename__ = "contact_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    started_by: Mapped[str] = mapped_column(String(320))
    filename: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str | None] = mapped_column(String(100))  # applied to every imported contact
    content: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued, running, done, failed
    total_rows: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the first rows refused, and why
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)  # moves with the progress
    finished_at: Mapped[datetime | None]

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed")


SUBMISSION_STATUSES = ("pending", "processed", "spam", "invalid", "failed")
SUBMISSION_SOURCES = ("hosted", "embed", "api")


class SignupSubmission(db.Model):
    """A sign-up as it arrived, stored before it is processed (DESIGN rule 1)."""

    __tablename__ = "signup_submissions"
    __table_args__ = (
        Index("ix_signup_submissions_integration_received", "integration_id", "received_at"),
        Index("ix_signup_submissions_status_received", "status", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_message_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(10))  # hosted, embed or api
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the raw submitted values
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    origin: Mapped[str | None] = mapped_column(String(300))
    fill_seconds: Mapped[float | None]  # from showing the form to submitting it
    status: Mapped[str] = mapped_column(String(10), default="pending")
    errors: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    spam_reason: Mapped[str | None] = mapped_column(String(200))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class SignupPageView(db.Model):
    """How many times a sign-up form was shown on a day (UTC): the hosted page, its iframe and the
    embedded form. Submissions from the form divided by these is the page's conversion."""

    __tablename__ = "signup_page_views"

    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    views: Mapped[int] = mapped_column(default=0)


LEAD_STATUSES = ("pending", "processed", "failed")


class Lead(db.Model):
    """A Facebook Lead Ads lead: one per leadgen_id per organisation, however often it is announced."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("organization_id", "leadgen_id", name="uq_leads_org_leadgen_id"),
        Index("ix_leads_integration_received", "integration_id", "received_at"),
        Index("ix_leads_status_received", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    leadgen_id: Mapped[str] = mapped_column(String(64))
    form_id: Mapped[str | None] = mapped_column(String(64))
    page_id: Mapped[str | None] = mapped_column(String(64))
    ad_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10), default="webhook")  # webhook or import
    created_time: Mapped[datetime | None]  # when the person submitted the form, by Meta's clock
    field_data: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # Graph's field_data, once fetched
    status: Mapped[str] = mapped_column(String(10), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class MetaApp(db.Model):
    """An organisation's Meta app: App ID, the App Secret (encrypted, write-only) and the one
    webhook address Meta posts to for every Page, Instagram account and WhatsApp number it connects."""

    __tablename__ = "meta_apps"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), unique=True)
    app_id: Mapped[str] = mapped_column(String(32))
    secrets_ciphertext: Mapped[str | None] = mapped_column(Text)  # Fernet JSON {"app_secret": ...}
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)  # in the webhook URL
    verify_token: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_urlsafe(24))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthState(db.Model):
    """An OAuth `state`: random, single-use (used_at), expiring, bound to the user who started."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the state sent to Meta
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))  # messenger or instagram
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PendingConnection(db.Model):
    """What Meta granted, kept while the user picks the page to connect: the long-lived user token
    (encrypted) and the pages it manages (page tokens encrypted too). Nothing is connected until
    the pick; the row expires."""

    __tablename__ = "pending_connections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_public_id)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))
    pages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # id, name, category, instagram: {id, username}
    secrets_ciphertext: Mapped[str | None] = mapped_column(Text)  # {"user_token", "page_tokens": {page id: token}}
    token_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


PLATFORMS = ("messenger", "instagram", "whatsapp")
CONVERSATION_MESSAGE_STATUSES = ("received", "queued", "sending", "sent", "delivered", "read", "failed")


class Conversation(db.Model):
    """A thread with one person on one connected account (Page, Instagram account, WhatsApp number)."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("integration_id", "external_user_id", name="uq_conversations_integration_user"),
        Index("ix_conversations_org_last_message", "organization_id", "last_message_at"),
        Index("ix_conversations_org_channel_last_message", "organization_id", "channel", "last_message_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))  # messenger, instagram or whatsapp
    external_user_id: Mapped[str] = mapped_column(String(64))  # PSID, IGSID or WhatsApp wa_id
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))  # the person's profile name
    last_message_at: Mapped[datetime | None]
    last_message_preview: Mapped[str | None] = mapped_column(String(200))
    last_inbound_at: Mapped[datetime | None]  # opens the 24-hour window
    unread_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    integration: Mapped[Integration] = relationship()
    contact: Mapped[Contact | None] = relationship()


class ConversationMessage(db.Model):
    """One message of a conversation, in or out. Inbound ones are unique by the provider's id
    (mid / wamid), so a webhook delivered twice or a sync that sees it again adds nothing."""

    __tablename__ = "conversation_messages"
    __table_args__ = (
        UniqueConstraint("integration_id", "provider_message_id", name="uq_conversation_messages_provider_id"),
        Index("ix_conversation_messages_conversation_id_id", "conversation_id", "id"),
        Index("ix_conversation_messages_org_created", "organization_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(3))  # in or out
    kind: Mapped[str] = mapped_column(String(20), default="text")  # text, image, audio, video, file, template, ...
    text: Mapped[str | None] = mapped_column(Text)
    # Media: {"type", "mime_type", "provider_media_id" or "url", "filename", "caption", "storage_key", "size", "error"}
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    template: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"name", "language", "parameters"}
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10), default="received")
    error: Mapped[str | None] = mapped_column(Text)
    sent_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # when it was sent or received
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageTemplate(db.Model):
    """A WhatsApp message template synced from the business account."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("integration_id", "name", "language", name="uq_message_templates_name_language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(15))
    status: Mapped[str] = mapped_column(String(20))  # APPROVED, PENDING, REJECTED, PAUSED, ...
    category: Mapped[str | None] = mapped_column(String(30))
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    parameter_count: Mapped[int] = mapped_column(default=0)  # body placeholders {{1}}..{{n}}
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlatformDailyStat(db.Model):
    """Messages in and out and conversations per day, per platform, per organisation (hourly roll-up)."""

    __tablename__ = "platform_daily_stats"
    __table_args__ = (UniqueConstraint("organization_id", "day", "platform", name="uq_platform_daily_stats_org_day_platform"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    day: Mapped[date]
    platform: Mapped[str] = mapped_column(String(10))
    messages_in: Mapped[int] = mapped_column(default=0)
    messages_out: Mapped[int] = mapped_column(default=0)
    conversations: Mapped[int] = mapped_column(default=0)  # conversations with a message that day
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DataDeletionRequest(db.Model):
    """A Meta data deletion (or deauthorize) callback: what was asked, what was deleted, and the
    confirmation code whose status page Meta shows the person."""

    __tablename__ = "data_deletion_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(12))  # deletion or deauthorize
    app_scoped_user_id: Mapped[str] = mapped_column(String(64))
    confirmation_code: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, completed
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # counts of what was deleted
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
