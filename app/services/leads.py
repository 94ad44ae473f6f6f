"""Facebook Lead Ads: leads recorded once per organisation, fetched from the Graph API, processed.

A lead comes by webhook (a `leadgen` change: the webhook event is stored first, and its processing
records the Lead row and commits it before Meta is asked for the answers) or by an import (pages of
a form's leads, answers included). The unique (organisation, leadgen_id) makes a lead announced
twice one lead. A lead that could not be processed keeps its reason and stays re-runnable: a replay
of its webhook event or an import runs it again, and one that is processed is never run twice.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Contact, Integration, Lead, User, utcnow
from ..providers.base import FetchedLead, LeadEvent, ProviderError, RetryLater, UseAnotherProvider, WebhookRejected
from ..providers.facebook.graph_api import answer_target, answer_targets
from ..queue import redis_connection, task_queue
from . import campaigns, contacts
from . import integrations as svc

SOURCE = "Facebook Lead Ads"
RECENT_LEADS = 20
MAX_NOTE = 2000
# Imports: progress lives in Redis where every web process can read it; one import per integration at a time.
IMPORT_PROGRESS_KEY = "switchboard:lead-import:{}"
IMPORT_LOCK_KEY = "switchboard:lead-import-lock:{}"
IMPORT_STALE_SECONDS = 300  # a running import updates its progress far more often; silence this long means it died
IMPORT_KEEP_SECONDS = 7 * 86400
IMPORT_TIMEOUT_SECONDS = 3600
MAX_IMPORT_PAGES = 100  # per form: 10,000 leads


class ImportNotPossible(RuntimeError):
    """Why an import cannot start, in plain words."""


# -- recording and processing -------------------------------------------------------------------

def receive(integration: Integration, events: list[LeadEvent]) -> str | None:
    """Webhook processing: record and process each announced lead. Returns a note on leads the
    integration does not take, or None. Raises WebhookRejected 503 when Meta said to try again later
    (the webhook event goes back to pending), 422 when Meta refused to give a lead (the event fails
    with the reason; replay it, or import, once the cause is fixed)."""
    notes, later, refused = [], [], []
    for event in events:
        why_not = _not_taken(integration, event)
        if why_not:
            notes.append(why_not)
            continue
        lead, _ = record(integration, event.leadgen_id, source="webhook", form_id=event.form_id,
                         page_id=event.page_id, ad_id=event.ad_id, created_time=event.created_time)
        db.session.commit()  # the lead is kept before Meta is asked for it
        try:
            process_lead(lead)
        except RetryLater as exc:
            later.append(exc.reason)
        except ProviderError as exc:
            refused.append(exc.reason)
    if later:
        raise WebhookRejected(_join(later), 503)
    if refused:
        raise WebhookRejected(_join(refused), 422)
    return _join(notes) or None


def _not_taken(integration: Integration, event: LeadEvent) -> str | None:
    """Why this integration does not take the lead (the webhook event keeps it for a replay), or None."""
    config = integration.config or {}
    lead = f"Lead {event.leadgen_id} was not taken:"
    if not config.get("enable_lead_ads"):
        return f"{lead} Lead Ads is switched off for this integration (switch it on, then replay this event)."
    if not integration.is_active:
        return f"{lead} the integration is deactivated (activate it, then replay this event)."
    if config.get("page_id") and event.page_id and event.page_id != config["page_id"]:
        return f"{lead} it comes from page {event.page_id}, and this integration takes page {config['page_id']}."
    if config.get("lead_form_id") and event.form_id and event.form_id != config["lead_form_id"]:
        return f"{lead} it comes from form {event.form_id}, and this integration takes only form {config['lead_form_id']}."
    return None


def record(integration: Integration, leadgen_id: str, *, source: str, form_id: str | None = None,
           page_id: str | None = None, ad_id: str | None = None, created_time: float | None = None
           ) -> tuple[Lead, bool]:
    """(the organisation's lead with this leadgen_id, whether it was new). Two simultaneous
    announcements make one row: the insert runs in a savepoint and a unique violation means the
    other one made it. The caller commits."""
    query = select(Lead).where(Lead.organization_id == integration.organization_id, Lead.leadgen_id == leadgen_id)
    lead = db.session.scalar(query)
    if lead is None:
        try:
            with db.session.begin_nested():
                lead = Lead(organization_id=integration.organization_id, integration_id=integration.id,
                            leadgen_id=leadgen_id, source=source, status="pending", attempts=0)
                db.session.add(lead)
                db.session.flush()
            created = True
        except IntegrityError:
            lead, created = db.session.scalar(query), False
    else:
        created = False
    # What one announcement lacks, another (or the import) may bring.
    lead.form_id = lead.form_id or form_id
    lead.page_id = lead.page_id or page_id
    lead.ad_id = lead.ad_id or ad_id
    lead.created_time = lead.created_time or _datetime(created_time)
    return lead, created


def process_lead(lead: Lead, fetched: FetchedLead | None = None) -> str:
    """Fetch the lead's answers (unless an import page brought them), then make or update its
    contact, tag it and enrol it. Returns the lead's status. A Graph error is recorded on the lead
    (and, when Meta refused the token, on the integration) and raised again for the caller."""
    if lead.status == "processed":
        return lead.status
    integration = db.session.get(Integration, lead.integration_id)
    lead.attempts = Lead.attempts + 1
    db.session.commit()
    if fetched is None:
        try:
            fetched = svc.adapter_for(integration).fetch_lead(integration.config or {}, svc.get_secrets(integration),
                                                              lead.leadgen_id)
        except ProviderError as exc:
            _record_failure(integration, lead, exc)
            raise
        if integration.status == "error" and integration.is_active:
            _meta_answers_again(integration)
    return _make_contact(integration, lead, fetched)


def _record_failure(integration: Integration, lead: Lead, exc: ProviderError) -> None:
    lead.error = exc.reason
    if not isinstance(exc, RetryLater):
        lead.status = "failed"
    if isinstance(exc, UseAnotherProvider):
        _meta_refused(integration, exc.reason, f"Lead {lead.leadgen_id} could not be fetched from Meta")
    db.session.commit()


def _meta_refused(integration: Integration, reason: str, what: str) -> None:
    """Meta refused the token or a permission: nothing works until someone reconnects, so the
    integration is in error with the reason. Logged once per reason, not once per lead."""
    first_time = integration.status != "error" or integration.last_error != reason
    integration.last_error = reason
    integration.error_count += 1
    if first_time:
        svc.log_event(integration, "lead_fetch_failed", f"{what}: {reason}", level="error")
    if integration.is_active:
        svc.set_status(integration, "error", reason)


def _meta_answers_again(integration: Integration) -> None:
    """A lead fetched with the integration's token: whatever put it in error (a refused token since
    replaced, a failed test) no longer stops it, so it is active again without waiting for a test."""
    integration.error_count, integration.last_error = 0, None
    svc.log_event(integration, "lead_fetch_recovered", "Meta answered again: a lead was fetched with the page's token.")
    svc.set_status(integration, "active", "a lead was fetched from Meta")
    db.session.commit()


def _make_contact(integration: Integration, lead: Lead, fetched: FetchedLead) -> str:
    # The claim: of two processings of one lead (a webhook and an import at once), one finishes it.
    claimed = db.session.execute(update(Lead).where(Lead.id == lead.id, Lead.status != "processed")
                                 .values(status="processed", processed_at=utcnow(), error=None)).rowcount
    if claimed != 1:
        db.session.rollback()
        return "processed"
    lead.field_data = [{"name": key, "values": list(values)} for key, values in fetched.field_data]
    lead.form_id = lead.form_id or fetched.form_id
    lead.ad_id = lead.ad_id or fetched.ad_id
    lead.created_time = lead.created_time or _datetime(fetched.created_time)
    config = integration.config or {}
    if not config.get("auto_create_contacts", True):
        db.session.commit()
        return lead.status
    data, notes = contact_data(integration.organization_id, fetched, config.get("lead_field_mapping"))
    if not data.get("email") and not data.get("phone"):
        lead.status = "failed"
        lead.error = _join(["The lead has neither an email address nor a phone number, so no contact was made; "
                            "its answers are kept with the lead.", *notes])
        db.session.commit()
        return lead.status
    contact, created, errors = contacts.upsert_contact(integration.organization_id, data, source=SOURCE)
    if errors:
        lead.status = "failed"
        lead.error = "No contact was made: " + " ".join(m for messages in errors.values() for m in messages)
        db.session.commit()
        return lead.status
    answers = {key: ", ".join(values) for key, values in fetched.field_data}
    contacts.add_event(contact, "lead", f"Lead from Facebook Lead Ads form {lead.form_id or 'unknown'}"
                       + (" (imported)." if lead.source == "import" else "."),
                       {"leadgen_id": lead.leadgen_id, "form_id": lead.form_id, "ad_id": lead.ad_id,
                        "integration_id": integration.id, "answers": answers})
    tag, _ = contacts.normalise_tag(config.get("apply_tag") or "")
    if tag:
        contacts.apply_tags(contact, [tag])
    enrollment, enrolled = campaigns.enroll_by_name(contact, config.get("trigger_campaign_on_lead"), SOURCE)
    lead.contact_id = contact.id
    lead.error = _join(notes) or None
    db.session.commit()
    if enrolled:
        campaigns.queue_step(enrollment)
    return lead.status


def contact_data(organization_id: int, fetched: FetchedLead, mapping: Any) -> tuple[dict[str, Any], list[str]]:
    """The contact's data from the lead's answers, and notes on answers that could not go where
    they were mapped (kept as custom fields instead). The first answer for a contact field wins."""
    country = contacts.default_country(organization_id)
    data: dict[str, Any] = {"fields": {}}
    notes = []
    for key, answer, target in answer_targets(fetched.field_data, mapping):
        if target == "skip":
            continue
        if target in ("email", "phone"):
            value, error = (contacts.normalise_email(answer) if target == "email"
                            else contacts.normalise_phone(answer, country))
            if error:
                notes.append(f"The answer to “{key}” is not a valid {'email address' if target == 'email' else 'phone number'}, "
                             "so it was kept as a custom field.")
            if value and not data.get(target):
                data[target] = value
                continue
        elif target in ("name", "first_name", "last_name") and not data.get(target):
            data[target] = answer[:contacts.LIMITS[target]]
            continue
        name = target.removeprefix("fields.") if target.startswith("fields.") else key
        if len(data["fields"]) < contacts.MAX_CUSTOM_FIELDS:
            data["fields"][name] = answer[:contacts.MAX_FIELD_VALUE]
    return data, notes


def _datetime(moment: float | None) -> datetime | None:
    return datetime.fromtimestamp(moment, UTC).replace(tzinfo=None) if moment else None


def _join(parts: list[str]) -> str:
    unique = list(dict.fromkeys(p for p in parts if p))
    return " ".join(unique)[:MAX_NOTE]


# -- reading ------------------------------------------------------------------------------------

def recent_leads(integration: Integration, limit: int = RECENT_LEADS) -> list[tuple[Lead, Contact | None]]:
    """The latest leads, newest first, each with its contact."""
    rows = db.session.execute(select(Lead, Contact).outerjoin(Contact, Contact.id == Lead.contact_id)
                              .where(Lead.integration_id == integration.id)
                              .order_by(Lead.received_at.desc(), Lead.id.desc()).limit(limit)).all()
    return [(lead, contact) for lead, contact in rows]


def lead_counts(integration: Integration) -> dict[str, int]:
    rows = db.session.execute(select(Lead.status, func.count()).where(Lead.integration_id == integration.id)
                              .group_by(Lead.status)).all()
    return {status: count for status, count in rows}


def form_choices(integration: Integration) -> list[dict]:
    """The page's lead forms from Meta. Raises ProviderError with plain words."""
    return svc.adapter_for(integration).lead_forms(integration.config or {}, svc.get_secrets(integration))


def form_questions(integration: Integration) -> list[dict]:
    """The chosen form's questions from Meta, each with where its answer goes now ("target")."""
    form_id = (integration.config or {}).get("lead_form_id")
    if not form_id:
        return []
    questions = svc.adapter_for(integration).form_questions(integration.config or {}, svc.get_secrets(integration),
                                                            form_id)
    mapping = (integration.config or {}).get("lead_field_mapping")
    return [{**q, "target": answer_target(q["key"], mapping)} for q in questions]


# -- changing the Lead Ads settings ---------------------------------------------------------------

def choose_form(integration: Integration, form_id: str, user: User | None) -> dict[str, list[str]]:
    """Take leads from this form only ("" for every form of the page). Errors by field; the caller commits."""
    return svc.configure(integration, {"lead_form_id": form_id}, user, partial=True)


def save_mapping(integration: Integration, mapping: Any, user: User | None) -> dict[str, list[str]]:
    """Store the field mapping (a dict, or its JSON text). Errors by field; the caller commits."""
    return svc.configure(integration, {"lead_field_mapping": mapping}, user, partial=True)


def mapping_from_rows(integration: Integration, rows: list[tuple[str, str, str]]) -> dict[str, str]:
    """The mapping after the editor's rows (question key, target, custom field name): entries for
    questions not on the form are kept, and a row that says what the default says adds nothing."""
    mapping = dict((integration.config or {}).get("lead_field_mapping") or {})
    for key, target, field_name in rows:
        mapping.pop(key, None)
        if target == "fields":
            target = f"fields.{field_name.strip() or key}"
        if target != answer_target(key, None):
            mapping[key] = target
    return mapping


# -- importing recent leads -----------------------------------------------------------------------

def import_problem(integration: Integration) -> str | None:
    config, secrets = integration.config or {}, svc.get_secrets(integration)
    if not config.get("enable_lead_ads"):
        return "Switch on “Receive Lead Ads leads” (Edit) before importing leads."
    if not integration.is_active:
        return "The integration is deactivated: activate it before importing leads."
    if not config.get("page_id") and not config.get("lead_form_id"):
        return "Set the Page ID (or choose a lead form) before importing leads."
    if not secrets.get("page_access_token") and not secrets.get("access_token"):
        return "Set the page access token before importing leads."
    return None


def start_import(integration: Integration, user: User | None) -> dict[str, Any]:
    """Queue an import of recent leads; its progress. While one runs, starting again gives its progress.
    Raises ImportNotPossible with the reason in plain words."""
    problem = import_problem(integration)
    if problem:
        raise ImportNotPossible(problem)
    from ..jobs.leads import import_recent_leads
    import_id = uuid.uuid4().hex
    try:
        redis = redis_connection()
        if not redis.set(IMPORT_LOCK_KEY.format(integration.id), import_id, nx=True, ex=IMPORT_STALE_SECONDS):
            return import_progress(integration) or {}
        progress = {"id": import_id, "status": "queued", "forms": None, "forms_done": 0, "pages": 0, "seen": 0,
                    "new": 0, "already": 0, "processed": 0, "failed": 0, "error": None,
                    "started_at": time.time(), "updated_at": time.time(), "finished_at": None}
        _save_progress(integration.id, progress)
        task_queue().enqueue(import_recent_leads, integration.id, import_id, job_id=f"lead-import-{import_id}",
                             job_timeout=IMPORT_TIMEOUT_SECONDS, result_ttl=3600, failure_ttl=86400)
    except RedisError:
        raise ImportNotPossible("The job queue (Redis) is not reachable, so the import could not start. "
                                "Try again in a moment.") from None
    svc.log_event(integration, "lead_import_started",
                  f"{user.email if user else 'The system'} started an import of recent leads.", user=user)
    db.session.commit()
    return import_progress(integration) or progress


def import_progress(integration: Integration) -> dict[str, Any] | None:
    """The latest import's progress, or None. An import silent for too long is reported as stopped."""
    try:
        progress = _load_progress(integration.id)
    except RedisError:
        return {"status": "unknown", "error": "The job queue (Redis) is not reachable, so the import's progress "
                                              "cannot be read right now."}
    if progress and progress["status"] in ("queued", "running") \
            and time.time() - progress["updated_at"] > IMPORT_STALE_SECONDS:
        progress["status"] = "stopped"
        progress["error"] = ("The import stopped without finishing (no worker took it, or the worker stopped). "
                             "What was imported is kept: start it again.")
    return progress


def _load_progress(integration_id: int) -> dict[str, Any] | None:
    raw = redis_connection().get(IMPORT_PROGRESS_KEY.format(integration_id))
    return json.loads(raw) if raw is not None else None


def _save_progress(integration_id: int, progress: dict[str, Any]) -> None:
    progress["updated_at"] = time.time()
    redis = redis_connection()
    redis.set(IMPORT_PROGRESS_KEY.format(integration_id), json.dumps(progress), ex=IMPORT_KEEP_SECONDS)
    if progress["status"] in ("queued", "running"):
        redis.expire(IMPORT_LOCK_KEY.format(integration_id), IMPORT_STALE_SECONDS)


def run_import(integration_id: int, import_id: str) -> dict[str, Any] | str:
    """The import job: page through the chosen form's leads (or every form's), record each lead,
    and process those not processed yet. Progress is saved page by page, and every ten leads."""
    integration = db.session.get(Integration, integration_id)
    progress = _load_progress(integration_id)
    if integration is None or progress is None or progress.get("id") != import_id:
        return "superseded"
    progress.update(status="running", error=None)
    _save_progress(integration.id, progress)
    adapter, config, secrets = svc.adapter_for(integration), integration.config or {}, svc.get_secrets(integration)
    try:
        form_ids = [config["lead_form_id"]] if config.get("lead_form_id") else \
            [form["id"] for form in adapter.lead_forms(config, secrets)]
        progress["forms"] = len(form_ids)
        for form_id in form_ids:
            after = None
            for _ in range(MAX_IMPORT_PAGES):
                page, after = adapter.form_leads(config, secrets, form_id, after)
                progress["pages"] += 1
                for fetched in page:
                    _import_one(integration, fetched, progress)
                _save_progress(integration.id, progress)
                if not after:
                    break
            progress["forms_done"] += 1
        progress["status"] = "finished"
    except ProviderError as exc:
        db.session.rollback()
        if isinstance(exc, UseAnotherProvider):
            _meta_refused(db.session.get(Integration, integration_id), exc.reason, "The import of recent leads stopped")
        progress["status"] = "failed"
        progress["error"] = exc.reason + (" The leads imported so far are kept: run the import again later."
                                          if isinstance(exc, RetryLater) else "")
    except Exception:
        db.session.rollback()
        current_app.logger.exception("lead import %s crashed", import_id)
        progress["status"] = "failed"
        progress["error"] = "The import failed unexpectedly inside Switchboard; the error was logged."
    progress["finished_at"] = time.time()
    _save_progress(integration_id, progress)
    redis = redis_connection()
    if redis.get(IMPORT_LOCK_KEY.format(integration_id)) == import_id.encode():
        redis.delete(IMPORT_LOCK_KEY.format(integration_id))
    integration = db.session.get(Integration, integration_id)
    svc.log_event(integration, "lead_import_finished", import_summary(progress),
                  level="info" if progress["status"] == "finished" else "error")
    db.session.commit()
    return progress


def _import_one(integration: Integration, fetched: FetchedLead, progress: dict[str, Any]) -> None:
    lead, created = record(integration, fetched.leadgen_id, source="import", form_id=fetched.form_id,
                           ad_id=fetched.ad_id, created_time=fetched.created_time)
    db.session.commit()
    progress["seen"] += 1
    if created:
        progress["new"] += 1
    if lead.status == "processed":
        progress["already"] += 1
    elif process_lead(lead, fetched) == "processed":
        progress["processed"] += 1
    else:
        progress["failed"] += 1
    if progress["seen"] % 10 == 0:
        _save_progress(integration.id, progress)


def import_summary(progress: dict[str, Any]) -> str:
    counts = (f"{progress['seen']} lead{'' if progress['seen'] == 1 else 's'} read from Meta, {progress['new']} new, "
              f"{progress['processed']} processed, {progress['already']} already here, "
              f"{progress['failed']} failed")
    if progress["status"] == "finished":
        return f"Import of recent leads finished: {counts}."
    return f"Import of recent leads {progress['status']}: {progress.get('error') or ''} So far: {counts}."
