"""Sign-up pages: take a submission, store it first, answer, then process it (DESIGN rule 1).

A submission arrives three ways: the hosted form at /f/<public id> (and its iframe), the
embedded form (a script on the business's own site, posting with fetch), and the
server-to-server JSON endpoint with the page's API key. Whatever the way, it is checked
for spam (browser forms only: a honeypot field and a signed fill-time token), validated
against the page's form fields, and stored with its raw values before the answer; spam and
invalid submissions are stored too, with their reason, and never processed. A job then
upserts the contact, applies the tag and enrols it in the campaign. The job claims a row
with a conditional UPDATE in the same transaction that does the work, so a crash leaves it
pending for the sweep and a second run finds nothing to do.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as day_start
from collections.abc import Callable
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import escape
from sqlalchemy import Date, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import (SUBMISSION_STATUSES, Integration, Organization, SignupPageView, SignupSubmission, User,
                      new_message_id, utcnow)
from ..providers.signup_page.hosted import ORIGIN, parse_origins
from ..queue import drain_signal
from . import campaigns, contacts
from . import integrations as integrations_svc
from .intake_store import Answer, Copies, intake_database

Errors = dict[str, list[str]]
INTEGRATION_TYPE = "signup_page"
SOURCES = ("hosted", "embed", "api")
MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 100
MAX_TEXT = 500
MAX_LONG_TEXT = 5_000
# Names a browser form posts besides the page's fields. Field names cannot hold a hyphen
# (hosted.FIELD_NAME), so these never collide with one.
TOKEN_FIELD = "form-token"
HONEYPOT_FIELD = "your-website"
TOKEN_SALT = "signup-form-token"
MAX_PROCESSING_ATTEMPTS = 5
DRAIN_QUEUED_FLAG = "switchboard:signups:drain-queued"
DRAIN_BATCH = 500
PAGE_TTL = 60.0  # seconds a process uses its copy of a page, however often its version is confirmed
MAX_PAGES = 1000
INTAKE_ATTEMPTS = 3  # reads of a page that keeps changing under one request before it is answered 503
STATS_DAYS = 30
API_KEY_PREFIX = "sbk_"
THANK_YOU = "Thank you for signing up."
CHECKBOX_TRUE = {"on", "true", "1", "yes"}
CHECKBOX_FALSE = {"", "off", "false", "0", "no"}
# Contact columns filled from form fields of these names; every other field is a custom field.
CONTACT_COLUMNS = ("name", "first_name", "last_name")


# -- the page, as the public routes see it ----------------------------------------------------

@dataclass(frozen=True)
class Page:
    id: int
    public_id: str
    organization_id: int
    name: str
    is_active: bool
    config: dict[str, Any]
    api_key_hash: str | None
    default_country: str
    version: datetime | None = None  # the integration row's updated_at when this copy was read

    @property
    def form_fields(self) -> list[dict[str, Any]]:
        return self.config.get("form_fields") or []

    @property
    def allowed_origins(self) -> list[str]:
        return [o.lower() for o in parse_origins(self.config.get("allowed_origins")) if ORIGIN.match(o)]

    @property
    def redirect_url(self) -> str | None:
        return self.config.get("redirect_url") or None

    def allows_origin(self, origin: str | None) -> bool:
        return bool(origin) and origin.lower().rstrip("/") in self.allowed_origins


# The public routes are the hot path: Core statements built once, run on intake's own engine, and
# each page kept per process for a while. The copy is never trusted on its own: a submission is
# stored only if the page's row is still at the copy's version (every change to the row moves its
# updated_at), and a refusal is given only on a fresh read (find_page(fresh=True)). The organisation's
# default country may be up to PAGE_TTL old: it only reads local phone numbers at intake, and
# processing validates again with the current one.
integrations, submissions = Integration.__table__, SignupSubmission.__table__
FIND_PAGE = (select(integrations.c.id, integrations.c.public_id, integrations.c.organization_id, integrations.c.name,
                    integrations.c.is_active, integrations.c.config, integrations.c.api_key_hash,
                    integrations.c.updated_at, Organization.__table__.c.default_country)
             .join(Organization.__table__, Organization.__table__.c.id == integrations.c.organization_id)
             .where(integrations.c.public_id == bindparam("public_id"),
                    integrations.c.integration_type == INTEGRATION_TYPE))
SUBMISSION_FIELDS = ("id", "source", "fields", "ip", "user_agent", "origin", "fill_seconds", "status", "errors",
                     "spam_reason", "attempts", "received_at")
STORE_IF_CURRENT = insert(submissions).from_select(
    ["organization_id", "integration_id", *SUBMISSION_FIELDS],
    select(integrations.c.organization_id, integrations.c.id,
           *(bindparam(name, type_=submissions.c[name].type) for name in SUBMISSION_FIELDS))
    .where(integrations.c.id == bindparam("integration_id"), integrations.c.updated_at == bindparam("version")))
PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def page_copies() -> Copies:
    """This process's copies of pages by public id."""
    extensions = current_app.extensions
    if "signup_pages" not in extensions:
        extensions["signup_pages"] = Copies(PAGE_TTL, MAX_PAGES)
    return extensions["signup_pages"]


def find_page(public_id: str, *, fresh: bool = False) -> Page | None:
    """The sign-up page with this public id; None for anything else (an unknown id, another type's).
    A copy up to PAGE_TTL old unless `fresh`."""
    if not isinstance(public_id, str) or not PUBLIC_ID.match(public_id):
        return None  # not one we made (models.new_public_id): no query, so no NUL or odd bytes reach the database
    copies = page_copies()
    if not fresh and (page := copies.get(public_id)) is not None:
        return page
    with intake_database().engine.connect() as connection:
        row = connection.execute(FIND_PAGE, {"public_id": public_id}).first()
    page = None if row is None else Page(
        id=row.id, public_id=row.public_id, organization_id=row.organization_id, name=row.name,
        is_active=row.is_active, config=row.config or {}, api_key_hash=row.api_key_hash,
        default_country=row.default_country or "US", version=row.updated_at)
    copies.put(public_id, page)
    return page


# -- the fill-time token and spam --------------------------------------------------------------

def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


def form_token(page: Page) -> str:
    """Signed (page, moment the form was shown): proves a submission came through a form we served,
    and how long the person took to fill it in."""
    return _serializer().dumps([page.public_id, round(time.time(), 2)])


def fill_seconds(page: Page, token: Any) -> float | None:
    """Seconds since the form was shown, or None if the token is missing, forged or another page's."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    try:
        public_id, shown_at = _serializer().loads(token)
    except (BadSignature, ValueError, TypeError):
        return None
    if public_id != page.public_id or not isinstance(shown_at, (int, float)):
        return None
    return max(0.0, round(time.time() - shown_at, 2))


def spam_reason(page: Page, token: Any, honeypot: Any) -> tuple[str | None, float | None]:
    """(why this looks like a bot, or None; fill time in seconds)."""
    seconds = fill_seconds(page, token)
    if honeypot not in (None, ""):
        return "The hidden field that people never see was filled in.", seconds
    if seconds is None:
        return "The form's token is missing or was not made for this page.", None
    minimum = current_app.config["SIGNUP_MIN_FILL_SECONDS"]
    if seconds < minimum:
        return f"Filled in within {seconds:g} s, faster than a person can (minimum {minimum:g} s).", seconds
    return None, seconds


# -- validation against the form's fields ------------------------------------------------------

def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _clean_value(item: dict[str, Any], value: Any, country: str) -> tuple[Any, str | None]:
    """(clean value, error) of one non-blank value for one form field."""
    kind, name = item.get("type", "text"), item["name"]
    if kind == "checkbox":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in CHECKBOX_TRUE | CHECKBOX_FALSE:
            return value.strip().lower() in CHECKBOX_TRUE, None
        return None, "Tick the box or leave it empty."
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value, None
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return None, "Enter a number."
            if number == number and abs(number) < 1e15:  # not NaN, not huge
                return int(number) if number.is_integer() else number, None
        return None, "Enter a number."
    if kind == "phone" or name == "phone":
        return contacts.normalise_phone(value, country)
    if not isinstance(value, str):
        return None, "Give text here."
    if kind == "email" or name == "email":
        return contacts.normalise_email(value)
    text = value.strip()
    if kind == "select":
        return (text, None) if text in item.get("options", []) else (None, "Choose one of the options.")
    if kind == "date":
        try:
            return date.fromisoformat(text).isoformat(), None
        except ValueError:
            return None, "Enter a date as YYYY-MM-DD."
    limit = contacts.LIMITS.get(name, MAX_LONG_TEXT if kind == "textarea" else MAX_TEXT)
    if len(text) > limit:
        return None, f"Keep this under {limit:,} characters."
    return text, None


def validate(page: Page, values: Any) -> tuple[dict[str, Any], Errors]:
    """(clean values by field name, errors by field name) of submitted values."""
    if not isinstance(values, dict):
        return {}, {"body": ["Send the form's fields as an object of names and values."]}
    if len(values) > MAX_FIELDS:
        return {}, {"body": [f"At most {MAX_FIELDS} fields."]}
    known = {item["name"]: item for item in page.form_fields}
    errors: Errors = {str(name)[:64]: ["This form has no such field."] for name in values if name not in known}
    cleaned: dict[str, Any] = {}
    for name, item in known.items():
        value = values.get(name)
        if _blank(value) or (item.get("type") == "checkbox" and value is False):
            if item.get("required"):
                errors[name] = ["Tick this box to continue." if item.get("type") == "checkbox"
                                else "This field is required."]
            continue
        clean, error = _clean_value(item, value, page.default_country)
        if error:
            errors[name] = [error]
        elif item.get("type") == "checkbox" and clean is False and item.get("required"):
            errors[name] = ["Tick this box to continue."]
        else:
            cleaned[name] = clean
    email_field, phone_field = contact_field(page, "email"), contact_field(page, "phone")
    if not errors and not cleaned.get(email_field) and not cleaned.get(phone_field):
        first = email_field or phone_field
        errors[first] = ["Give an email address or a phone number."]
    return cleaned, errors


def contact_field(page: Page, kind: str) -> str | None:
    """The field that holds the contact's email (or phone): the one so named, else the first of that type."""
    names = [item["name"] for item in page.form_fields]
    if kind in names:
        return kind
    return next((item["name"] for item in page.form_fields if item.get("type") == kind), None)


def contact_data(page: Page, cleaned: dict[str, Any]) -> dict[str, Any]:
    """What contacts.upsert_contact takes, from clean values."""
    email_field, phone_field = contact_field(page, "email"), contact_field(page, "phone")
    data: dict[str, Any] = {"email": cleaned.get(email_field), "phone": cleaned.get(phone_field)}
    data.update({name: cleaned[name] for name in CONTACT_COLUMNS if name in cleaned})
    custom = {k: v for k, v in cleaned.items() if k not in (email_field, phone_field, *CONTACT_COLUMNS)}
    if custom:
        data["fields"] = custom
    return data


# -- intake ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Client:
    """Who sent it, as the request says."""
    ip: str | None
    user_agent: str | None
    origin: str | None


@dataclass
class Received:
    submission_id: str | None
    # pending (accepted, to be processed), spam, invalid; or not stored: refused, or stale (the page
    # changed since the copy was read: read it again and receive again)
    status: str
    errors: Errors = field(default_factory=dict)  # only for invalid and refused: a bot is told nothing
    values: dict[str, Any] = field(default_factory=dict)  # as typed, to show the form again


def browser_values(values: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """(the form's values, fill-time token, honeypot) of what a browser form posted."""
    values = dict(values)
    return values, values.pop(TOKEN_FIELD, None), values.pop(HONEYPOT_FIELD, None)


def receive(page: Page, source: str, values: dict[str, Any], client: Client, *, spam: str | None = None,
            seconds: float | None = None) -> Received:
    """Store one submission (spam, invalid or to be processed), durably, and signal the job; or
    nothing if the page changed since `page` was read (status stale). The caller has checked the
    page is active and who is calling (key, origin), and for browser forms worked out `spam` and
    `seconds` with spam_reason(). Too many fields is refused unstored."""
    if len(values) > MAX_FIELDS:
        return Received(None, "refused", {"body": [f"At most {MAX_FIELDS} fields."]}, values)
    if spam:
        status, errors = "spam", {}
    else:
        _, errors = validate(page, values)
        status = "invalid" if errors else "pending"
    submission_id = new_message_id()
    stored = intake_database().run(STORE_IF_CURRENT, {
        "id": submission_id, "integration_id": page.id, "version": page.version, "source": source,
        "fields": values, "ip": (client.ip or "")[:45] or None,
        "user_agent": (client.user_agent or "")[:500] or None, "origin": (client.origin or "")[:300] or None,
        "fill_seconds": seconds, "status": status, "errors": errors or None, "spam_reason": spam,
        "attempts": 0, "received_at": utcnow()}) == 1
    if not stored:
        return Received(None, "stale", {}, values)
    if status == "pending":
        signal_processing()
    return Received(submission_id, status, errors, values)


def _drain_signal():
    return drain_signal(DRAIN_QUEUED_FLAG, "app.jobs.signups.drain_submissions", "sign-up submissions")


def signal_processing() -> bool:
    """Make sure a drain job will read the submissions stored so far (a burst queues one).
    False if Redis is down (the sweep drains)."""
    return _drain_signal().send()


class BodyProblem(Exception):
    """A request body that is not a JSON object of fields: the status to answer and errors by field."""

    def __init__(self, status: int, errors: Errors):
        super().__init__(status)
        self.status, self.errors = status, errors


def json_values(is_json: bool, body: bytes) -> dict[str, Any]:
    """The submitted values of a JSON post, or BodyProblem."""
    if not is_json:
        raise BodyProblem(415, {"body": ["Send JSON with Content-Type: application/json."]})
    try:
        values = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        values = None
    if not isinstance(values, dict):
        raise BodyProblem(400, {"body": ["Send a JSON object of the form's field names and values."]})
    return values


NO_PAGE = "There is no sign-up form at this address."
DEACTIVATED = "This sign-up page is deactivated: it takes no submissions until it is activated again."


def api_intake(public_id: str, presented_key: str | None, read_values: Callable[[], dict[str, Any]],
               client: Client) -> Answer:
    """POST /api/signup/<public id>/: the page, its key, then the body (read_values may raise
    BodyProblem, for the caller to answer), validated and stored. Accepted on the copy of the page; refused only on a fresh read."""
    page, fresh = find_page(public_id), False
    for _ in range(INTAKE_ATTEMPTS):
        refusal = _api_refusal(page, presented_key)
        if refusal is None:
            received = receive(page, "api", read_values(), client)
            if received.status != "stale":
                if received.errors:
                    return Answer(400, {"errors": received.errors})
                return Answer(201, {"submission_id": received.submission_id})
        elif fresh:
            if refusal.status == 401:
                current_app.logger.warning("sign-up API post refused for page %s: %s", page.id, refusal.body["error"])
            return refusal
        page, fresh = find_page(public_id, fresh=True), True  # the page changed, or may have: read it again
    return Answer(503, {"error": "This sign-up page is being changed just now; send it again."})


def _api_refusal(page: Page | None, presented_key: str | None) -> Answer | None:
    if page is None:
        return Answer(404, {"error": NO_PAGE})
    problem = api_key_problem(page, presented_key)
    if problem:
        return Answer(401, {"error": problem})
    if not page.is_active:  # said only to a caller that holds the page's key
        return Answer(403, {"error": DEACTIVATED})
    return None


# -- processing --------------------------------------------------------------------------------

def drain(limit: int = DRAIN_BATCH) -> int:
    """Process pending submissions, oldest first; returns how many were looked at."""
    _drain_signal().take_down()
    pending = db.session.scalars(select(SignupSubmission.id).where(SignupSubmission.status == "pending")
                                 .order_by(SignupSubmission.received_at).limit(limit)).all()
    db.session.rollback()  # end the read transaction: each claim starts its own
    for submission_id in pending:
        process(submission_id)
    if len(pending) == limit:
        signal_processing()
    return len(pending)


def sweep() -> int:
    """Every minute: submissions stored while Redis was down, or whose job was lost."""
    return drain()


def process(submission_id: str) -> str:
    """Upsert the contact, tag it and enrol it, once. The claim (pending → processed) and the work
    commit together: a crash rolls both back, and a second run finds the row taken."""
    claimed = db.session.execute(update(SignupSubmission)
                                 .where(SignupSubmission.id == submission_id, SignupSubmission.status == "pending")
                                 .values(status="processed", attempts=SignupSubmission.attempts + 1,
                                         processed_at=utcnow())).rowcount
    if claimed != 1:
        db.session.rollback()
        return "nothing to do"
    try:
        submission = db.session.get(SignupSubmission, submission_id, populate_existing=True)
        enrollment = _apply(submission)
        status = submission.status
        db.session.commit()
    except Exception:
        db.session.rollback()
        current_app.logger.exception("processing sign-up submission %s crashed", submission_id)
        return _record_failure(submission_id)
    if enrollment is not None:
        campaigns.queue_step(enrollment)
    return status


def _apply(submission: SignupSubmission):
    """The work on a claimed submission; returns a newly created enrolment to queue, if any."""
    integration = db.session.get(Integration, submission.integration_id)
    page = Page(id=integration.id, public_id=integration.public_id, organization_id=integration.organization_id,
                name=integration.name, is_active=integration.is_active, config=integration.config or {},
                api_key_hash=None, default_country=contacts.default_country(integration.organization_id))
    if page.config.get("auto_create_contact") is False:
        return None  # stored and counted; the page makes no contacts
    cleaned, errors = validate(page, submission.fields)
    if not errors:
        contact, _, errors = contacts.upsert_contact(page.organization_id, contact_data(page, cleaned),
                                                     source=f"Sign-up page {page.name}")
    if errors:  # the form changed since the submission was accepted
        submission.status, submission.errors = "invalid", errors
        return None
    submission.contact_id = contact.id
    contacts.add_event(contact, "submission", f"Signed up through {page.name} ({submission.source}).",
                       {"submission_id": submission.id, "integration_id": page.id, "source": submission.source})
    tag_errors: Errors = {}
    tags = contacts.clean_tag_names(page.config.get("apply_tag") or None, tag_errors)
    if tags:
        contacts.apply_tags(contact, tags)
    elif tag_errors:
        contacts.add_event(contact, "note", f"The page's tag was not applied: {tag_errors['tags'][0]}")
    enrollment, created = campaigns.enroll_by_name(contact, page.config.get("trigger_campaign"),
                                                   source=f"sign-up page {page.name}")
    return enrollment if created else None


def _record_failure(submission_id: str) -> str:
    """Count the failed attempt: the sweep tries again, up to MAX_PROCESSING_ATTEMPTS."""
    submission = db.session.get(SignupSubmission, submission_id, populate_existing=True)
    submission.attempts += 1
    if submission.attempts >= MAX_PROCESSING_ATTEMPTS:
        submission.status, submission.processed_at = "failed", utcnow()
        submission.errors = {"processing": ["Processing failed unexpectedly inside Switchboard; the error was logged."]}
    db.session.commit()
    return submission.status


# -- form views (for conversion) ---------------------------------------------------------------

def count_view(page: Page) -> None:
    """One more view of the form today: an upsert on (page, day), on SQLite and PostgreSQL alike."""
    make_insert = postgresql_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = make_insert(SignupPageView).values(integration_id=page.id, day=utcnow().date(),
                                                   organization_id=page.organization_id, views=1)
    db.session.execute(statement.on_conflict_do_update(index_elements=["integration_id", "day"],
                                                       set_={"views": SignupPageView.views + 1}))
    db.session.commit()


# -- API keys ----------------------------------------------------------------------------------

def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(integration: Integration, user: User | None) -> str:
    """A new key for the JSON endpoint, replacing any earlier one; only its SHA-256 is kept. The caller commits."""
    replaced = integration.api_key_hash is not None
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    integration.api_key_hash, integration.api_key_created_at = hash_key(key), utcnow()
    actor = user.email if user else "the system"
    integrations_svc.log_event(integration, "api_key_replaced" if replaced else "api_key_created",
                               f"{actor} {'replaced' if replaced else 'created'} the sign-up API key"
                               + ("; the old key no longer works." if replaced else "."), user=user)
    return key


def api_key_problem(page: Page, presented: str | None) -> str | None:
    """Why this X-API-Key does not open this page, or None when it does."""
    if not page.api_key_hash:
        return ("This sign-up page has no API key yet. Create one on the page in Switchboard, or with "
                "POST /api/integrations/<id>/api-key/.")
    if not presented:
        return "Send the page's API key in the X-API-Key header."
    if len(presented) > 200 or not hmac.compare_digest(hash_key(presented), page.api_key_hash):
        return "The API key is wrong (it may have been replaced)."
    return None


# -- addresses and embed code ------------------------------------------------------------------

def public_urls(integration: Integration) -> dict[str, str]:
    base, public_id = current_app.config["PUBLIC_BASE_URL"], integration.public_id
    title = escape(integration.name)
    return {
        "form_url": f"{base}/f/{public_id}",
        "submit_url": f"{base}/api/signup/{public_id}/",
        "embed_code": f'<script src="{base}/static/signup/embed.js" data-switchboard-form="{public_id}" async></script>',
        "iframe_code": f'<iframe src="{base}/f/{public_id}/frame" title="{title}" width="100%" height="600" '
                       f'loading="lazy"></iframe>',
    }


# -- reading: the submissions list and the stats -----------------------------------------------

def submissions_query(integration: Integration, status: str | None = None):
    """Newest first (served by ix_signup_submissions_integration_received)."""
    query = select(SignupSubmission).where(SignupSubmission.integration_id == integration.id)
    if status in SUBMISSION_STATUSES:
        query = query.where(SignupSubmission.status == status)
    return query.order_by(SignupSubmission.received_at.desc(), SignupSubmission.id.desc())


def serialize_submission(submission: SignupSubmission) -> dict[str, Any]:
    return {"id": submission.id, "source": submission.source, "status": submission.status,
            "fields": submission.fields, "errors": submission.errors or {}, "spam_reason": submission.spam_reason,
            "contact_id": submission.contact_id, "ip": submission.ip, "user_agent": submission.user_agent,
            "origin": submission.origin, "fill_seconds": submission.fill_seconds, "attempts": submission.attempts,
            "received_at": integrations_svc.isoformat(submission.received_at),
            "processed_at": integrations_svc.isoformat(submission.processed_at)}


@dataclass
class DayCounts:
    day: date
    views: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    from_forms: int = 0  # processed submissions through the hosted or embedded form (API ones have no view)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def count(self, status: str) -> int:
        return self.by_status.get(status, 0)

    @property
    def conversion(self) -> float | None:
        return self.from_forms / self.views if self.views else None

    def add(self, status: str, source: str, count: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + count
        if status == "processed" and source != "api":
            self.from_forms += count


@dataclass
class PageStats:
    days: list[DayCounts]
    totals: DayCounts

    @property
    def peak(self) -> int:
        return max((d.total for d in self.days), default=0)


CONVERSION_DEFINITION = ("processed submissions from the hosted or embedded form ÷ views of the form (the hosted "
                         "page, its iframe and the embedded form each count a view when they are shown), per day "
                         "(UTC). Submissions through the JSON API have no view and are not counted in it.")


def page_stats(integration: Integration, days: int = STATS_DAYS, *, today: date | None = None) -> PageStats:
    """Submissions by day (UTC, by when they arrived), status and source, and form views, over `days` days."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    day = func.date(SignupSubmission.received_at, type_=Date)
    rows = db.session.execute(select(day, SignupSubmission.status, SignupSubmission.source, func.count())
                              .where(SignupSubmission.integration_id == integration.id,
                                     SignupSubmission.received_at >= datetime.combine(first, day_start.min))
                              .group_by(day, SignupSubmission.status, SignupSubmission.source)).all()
    views = db.session.execute(select(SignupPageView.day, SignupPageView.views)
                               .where(SignupPageView.integration_id == integration.id,
                                      SignupPageView.day >= first)).all()
    buckets = {first + timedelta(days=i): DayCounts(first + timedelta(days=i)) for i in range(days)}
    totals = DayCounts(today)
    for when, status, source, count in rows:
        when = date.fromisoformat(when) if isinstance(when, str) else when
        if when in buckets:
            buckets[when].add(status, source, count)
            totals.add(status, source, count)
    for when, count in views:
        if when in buckets:
            buckets[when].views += count
            totals.views += count
    return PageStats(days=list(buckets.values()), totals=totals)
