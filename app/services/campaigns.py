"""Campaigns: a named sequence of steps, each sending one message after a delay.

A contact is enrolled once per campaign (a unique constraint). Each step runs as an RQ job
scheduled at the enrolment's `next_run_at`; the job claims the step by moving `next_position`
forward in the same transaction that stores the step's message, so a duplicated or retried job
never sends a step twice, and a crash before the commit leaves the step due for the sweep.
Messages go out through the outbound pipeline (messaging.store + enqueue).
"""
from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import (CHANNELS, Campaign, CampaignEnrollment, CampaignStep, Contact, Message, utcnow)
from ..queue import task_queue
from . import contacts as contacts_svc
from . import integrations as integrations_svc
from . import messaging

Errors = dict[str, list[str]]
MAX_NAME = 200
MAX_STEPS = 50
MAX_DELAY_MINUTES = 365 * 24 * 60
LOST_AFTER = timedelta(minutes=2)  # a due step whose job has not run by then is queued again by the sweep
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^}]*))?\}\}")
STEP_FIELDS = {"delay_minutes", "integration_id", "channel", "subject", "body", "template"}


# -- placeholders ----------------------------------------------------------------------------

def contact_values(contact: Contact) -> dict[str, str]:
    values = {k: str(v) for k, v in (contact.fields or {}).items() if isinstance(v, (str, int, float))}
    values.update({f"fields.{k}": v for k, v in list(values.items())})
    for name in ("name", "first_name", "last_name", "email", "phone"):
        values[name] = getattr(contact, name) or ""
    return values


def fill(text: str | None, values: dict[str, str]) -> str | None:
    """Replace {{first_name}} (or {{first_name|there}}, with a fallback for an empty value) from the contact."""
    if text is None:
        return None
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1)) or (m.group(2) or "").strip(), text)


# -- reading ---------------------------------------------------------------------------------

def normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()[:MAX_NAME]


def get_for_org(organization_id: int, campaign_id: int) -> Campaign | None:
    return db.session.scalar(select(Campaign).where(Campaign.organization_id == organization_id,
                                                    Campaign.id == campaign_id))


def find_by_name(organization_id: int, name: str | None) -> Campaign | None:
    if not name or not name.strip():
        return None
    return db.session.scalar(select(Campaign).where(Campaign.organization_id == organization_id,
                                                    Campaign.normalized_name == normalise_name(name)))


def list_for_org(organization_id: int) -> list[tuple[Campaign, int, int]]:
    """(campaign, steps, enrolled) by name."""
    steps = (select(func.count()).where(CampaignStep.campaign_id == Campaign.id).correlate(Campaign)
             .scalar_subquery())
    enrolled = (select(func.count()).where(CampaignEnrollment.campaign_id == Campaign.id).correlate(Campaign)
                .scalar_subquery())
    rows = db.session.execute(select(Campaign, steps, enrolled).where(Campaign.organization_id == organization_id)
                              .order_by(Campaign.normalized_name)).all()
    return [(c, s, e) for c, s, e in rows]


def names(organization_id: int) -> list[str]:
    return list(db.session.scalars(select(Campaign.name).where(Campaign.organization_id == organization_id)
                                   .order_by(Campaign.normalized_name)))


def enrollments_query(campaign: Campaign):
    return (select(CampaignEnrollment).where(CampaignEnrollment.campaign_id == campaign.id)
            .order_by(CampaignEnrollment.enrolled_at.desc(), CampaignEnrollment.id.desc()))


def step_message_counts(campaign: Campaign) -> dict[int, dict[str, int]]:
    """{step id: {status: count}} of the messages each step sent."""
    rows = db.session.execute(select(Message.campaign_step_id, Message.status, func.count())
                              .join(CampaignStep, CampaignStep.id == Message.campaign_step_id)
                              .where(CampaignStep.campaign_id == campaign.id)
                              .group_by(Message.campaign_step_id, Message.status)).all()
    counts: dict[int, dict[str, int]] = {}
    for step_id, status, count in rows:
        counts.setdefault(step_id, {})[status] = count
    return counts


def enrollment_counts(campaign: Campaign) -> dict[str, int]:
    rows = db.session.execute(select(CampaignEnrollment.status, func.count())
                              .where(CampaignEnrollment.campaign_id == campaign.id)
                              .group_by(CampaignEnrollment.status)).all()
    return {status: count for status, count in rows}


def describe_delay(minutes: int) -> str:
    if not minutes:
        return "right away"
    for unit, size in (("day", 1440), ("hour", 60)):
        if minutes % size == 0:
            count = minutes // size
            return f"after {count} {unit}{'s' if count != 1 else ''}"
    return f"after {minutes} minute{'s' if minutes != 1 else ''}"


def step_messages(step: CampaignStep, limit: int = 20) -> list[Message]:
    return list(db.session.scalars(select(Message).where(Message.campaign_step_id == step.id)
                                   .order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)))


# -- validation ------------------------------------------------------------------------------

def _clean_step(organization_id: int, data: Any, errors: Errors, prefix: str) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        errors[prefix.rstrip(".") or "step"] = ["Give each step as an object."]
        return None
    for name in sorted(set(data) - STEP_FIELDS):
        errors[f"{prefix}{name}"] = ["This field is not known."]
    step: dict[str, Any] = {}
    delay = data.get("delay_minutes", 0)
    if isinstance(delay, str) and delay.strip().isdigit():
        delay = int(delay.strip())
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_MINUTES:
        errors[f"{prefix}delay_minutes"] = [f"Give whole minutes from 0 to {MAX_DELAY_MINUTES:,}."]
    else:
        step["delay_minutes"] = delay
    integration_id, channel = data.get("integration_id"), data.get("channel")
    if integration_id not in (None, ""):
        if isinstance(integration_id, str) and integration_id.isdigit():
            integration_id = int(integration_id)
        integration = (integrations_svc.get_for_org(organization_id, integration_id)
                       if isinstance(integration_id, int) and not isinstance(integration_id, bool)
                       and 0 < integration_id < 2**31 else None)
        if integration is None or integration.integration_type not in CHANNELS:
            errors[f"{prefix}integration_id"] = ["No email, SMS or WhatsApp integration with this id."]
        else:
            step["integration_id"], step["channel"] = integration.id, integration.integration_type
    elif channel in CHANNELS:
        step["integration_id"], step["channel"] = None, channel
    else:
        errors[f"{prefix}channel"] = [f"Give integration_id, or a channel: {', '.join(CHANNELS)}."]
    if "channel" not in step:
        return None
    content_errors: Errors = {}
    content = messaging.validate_content(step["channel"], {k: data.get(k) for k in ("subject", "body", "template")},
                                         content_errors)
    errors.update({f"{prefix}{name}": problems for name, problems in content_errors.items()})
    step.update(subject=content["subject"], body=content["body"], template=content["template"])
    return step


def _clean_name(organization_id: int, name: Any, campaign: Campaign | None, errors: Errors) -> str | None:
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["Give the campaign a name."]
        return None
    clean = " ".join(name.split())
    if len(clean) > MAX_NAME:
        errors["name"] = [f"Keep the name under {MAX_NAME} characters."]
        return None
    other = find_by_name(organization_id, clean)
    if other is not None and (campaign is None or other.id != campaign.id):
        errors["name"] = [f"There is already a campaign called {other.name}."]
        return None
    return clean


def _clean_description(value: Any, errors: Errors) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 2000:
        errors["description"] = ["Give text of at most 2,000 characters."]
        return None
    return value.strip() or None


# -- writing ---------------------------------------------------------------------------------

def create(organization_id: int, data: Any) -> tuple[Campaign | None, Errors]:
    """{"name", "description"?, "is_active"?, "steps"?: [step, ...]}; nothing is stored when there is an error."""
    if not isinstance(data, dict):
        return None, {"body": ["Send a JSON object."]}
    errors: Errors = {k: ["This field is not known."] for k in sorted(set(data) - {"name", "description", "is_active", "steps"})}
    name = _clean_name(organization_id, data.get("name"), None, errors)
    description = _clean_description(data.get("description"), errors)
    is_active = data.get("is_active", True)
    if not isinstance(is_active, bool):
        errors["is_active"] = ["Give true or false."]
    raw_steps = data.get("steps") or []
    if not isinstance(raw_steps, list) or len(raw_steps) > MAX_STEPS:
        errors["steps"] = [f"Give a list of at most {MAX_STEPS} steps."]
        raw_steps = []
    steps = [_clean_step(organization_id, item, errors, f"steps[{i}].") for i, item in enumerate(raw_steps)]
    if errors:
        return None, errors
    campaign = Campaign(organization_id=organization_id, name=name, normalized_name=normalise_name(name),
                        description=description, is_active=is_active)
    campaign.steps = [CampaignStep(position=i, **step) for i, step in enumerate(steps)]
    db.session.add(campaign)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        return None, {"name": ["There is already a campaign with this name."]}
    return campaign, {}


def update_details(campaign: Campaign, data: dict[str, Any]) -> Errors:
    errors: Errors = {}
    name = _clean_name(campaign.organization_id, data.get("name", campaign.name), campaign, errors)
    description = _clean_description(data.get("description", campaign.description), errors)
    is_active = data.get("is_active", campaign.is_active)
    if not isinstance(is_active, bool):
        errors["is_active"] = ["Give true or false."]
    if errors:
        return errors
    resumed = is_active and not campaign.is_active
    campaign.name, campaign.normalized_name = name, normalise_name(name)
    campaign.description, campaign.is_active = description, is_active
    if resumed:  # steps that came due while paused run now
        db.session.execute(update(CampaignEnrollment).where(CampaignEnrollment.campaign_id == campaign.id,
                                                            CampaignEnrollment.status == "active",
                                                            CampaignEnrollment.next_run_at < utcnow())
                           .values(next_run_at=utcnow()))
    return {}


def add_step(campaign: Campaign, data: Any) -> tuple[CampaignStep | None, Errors]:
    errors: Errors = {}
    if len(campaign.steps) >= MAX_STEPS:
        return None, {"step": [f"A campaign has at most {MAX_STEPS} steps."]}
    values = _clean_step(campaign.organization_id, data, errors, "")
    if errors:
        return None, errors
    step = CampaignStep(campaign_id=campaign.id, position=len(campaign.steps), **values)
    campaign.steps.append(step)
    db.session.flush()
    # Contacts that finished every earlier step go on to the new one.
    db.session.execute(update(CampaignEnrollment).where(CampaignEnrollment.campaign_id == campaign.id,
                                                        CampaignEnrollment.status == "completed")
                       .values(status="active", completed_at=None,
                               next_run_at=utcnow() + timedelta(minutes=step.delay_minutes)))
    return step, {}


def update_step(step: CampaignStep, data: Any) -> Errors:
    errors: Errors = {}
    campaign = db.session.get(Campaign, step.campaign_id)
    values = _clean_step(campaign.organization_id, data, errors, "")
    if errors:
        return errors
    for name, value in values.items():
        setattr(step, name, value)
    return {}


def delete_step(step: CampaignStep) -> None:
    """Later steps move up one place; enrolments waiting for a later step keep waiting for the same step."""
    campaign_id, position = step.campaign_id, step.position
    db.session.delete(step)
    db.session.flush()
    later = db.session.scalars(select(CampaignStep).where(CampaignStep.campaign_id == campaign_id,
                                                          CampaignStep.position > position)
                               .order_by(CampaignStep.position)).all()
    for item in later:
        item.position -= 1
        db.session.flush()
    db.session.execute(update(CampaignEnrollment).where(CampaignEnrollment.campaign_id == campaign_id,
                                                        CampaignEnrollment.next_position > position)
                       .values(next_position=CampaignEnrollment.next_position - 1))
    db.session.expire_all()


def delete(campaign: Campaign) -> None:
    db.session.delete(campaign)


# -- enrolling -------------------------------------------------------------------------------

def enroll(contact: Contact, campaign: Campaign, source: str | None = None) -> tuple[CampaignEnrollment | None, bool]:
    """(enrolment, created). Enrolling a contact twice does nothing: the second call returns the
    first enrolment. The caller commits, then calls queue_step() for a created enrolment."""
    existing = _enrollment(campaign.id, contact.id)
    if existing is not None:
        return existing, False
    first = db.session.scalar(select(CampaignStep).where(CampaignStep.campaign_id == campaign.id,
                                                         CampaignStep.position == 0))
    now = utcnow()
    enrollment = CampaignEnrollment(organization_id=campaign.organization_id, campaign_id=campaign.id,
                                    contact_id=contact.id, source=(source or "")[:100] or None,
                                    status="active" if first else "completed", next_position=0,
                                    next_run_at=now + timedelta(minutes=first.delay_minutes) if first else None,
                                    enrolled_at=now, completed_at=None if first else now)
    try:
        with db.session.begin_nested():
            db.session.add(enrollment)
            db.session.flush()
    except IntegrityError:  # enrolled by a simultaneous request
        return _enrollment(campaign.id, contact.id), False
    contacts_svc.add_event(contact, "enrolled", f"Enrolled in campaign {campaign.name}"
                           + (f" from {source}." if source else "."), {"campaign_id": campaign.id})
    return enrollment, True


def enroll_by_name(contact: Contact, name: str | None, source: str | None = None
                   ) -> tuple[CampaignEnrollment | None, bool]:
    """Enrol in the organisation's campaign of this name (sign-up pages and Lead Ads name theirs).
    (None, False) when there is no such campaign: the contact is kept, with a timeline note."""
    if not name or not name.strip():
        return None, False
    campaign = find_by_name(contact.organization_id, name)
    if campaign is None:
        contacts_svc.add_event(contact, "note", f"Campaign “{name.strip()[:100]}” does not exist, so no campaign "
                               "was started.", {"campaign": name.strip()[:100]})
        return None, False
    return enroll(contact, campaign, source)


def _enrollment(campaign_id: int, contact_id: int) -> CampaignEnrollment | None:
    return db.session.scalar(select(CampaignEnrollment).where(CampaignEnrollment.campaign_id == campaign_id,
                                                              CampaignEnrollment.contact_id == contact_id))


def stop(enrollment: CampaignEnrollment) -> None:
    enrollment.status, enrollment.next_run_at = "stopped", None


def step_job_id(enrollment_id: int, position: int) -> str:
    return f"campaign-{enrollment_id}-step-{position}"


def queue_step(enrollment: CampaignEnrollment) -> bool:
    """Queue the enrolment's next step at its time (after the commit that made it due).
    False when Redis is down: the sweep queues it later."""
    if enrollment.status != "active" or enrollment.next_run_at is None:
        return False
    from ..jobs.campaigns import run_campaign_step
    job_id = step_job_id(enrollment.id, enrollment.next_position)
    try:
        queue = task_queue()
        if enrollment.next_run_at > utcnow():
            queue.enqueue_at(enrollment.next_run_at.replace(tzinfo=UTC), run_campaign_step, enrollment.id,
                             enrollment.next_position, job_id=job_id, result_ttl=600, failure_ttl=7 * 86400)
        else:
            queue.enqueue(run_campaign_step, enrollment.id, enrollment.next_position, job_id=job_id,
                          result_ttl=600, failure_ttl=7 * 86400)
        return True
    except RedisError:
        current_app.logger.warning("Redis unavailable: campaign step for enrolment %s waits for the sweep",
                                   enrollment.id)
        return False


# -- running a step --------------------------------------------------------------------------

def run_step(enrollment_id: int, position: int) -> str:
    """Send the step at `position` for this enrolment, once; then schedule the next one."""
    enrollment = db.session.get(CampaignEnrollment, enrollment_id)
    if enrollment is None or enrollment.status != "active" or enrollment.next_position != position:
        return "nothing to do"  # stopped, deleted, or this step already ran
    if enrollment.next_run_at and enrollment.next_run_at > utcnow() + timedelta(seconds=5):
        return "not due"  # the step was rescheduled; its own job will come
    campaign = db.session.get(Campaign, enrollment.campaign_id)
    if not campaign.is_active:
        return "paused"  # resuming makes it due again, and the sweep queues it
    steps = campaign.steps
    # The claim: only one job moves the enrolment past this step, in the transaction that stores its message.
    claimed = db.session.execute(update(CampaignEnrollment).where(CampaignEnrollment.id == enrollment_id,
                                                                  CampaignEnrollment.status == "active",
                                                                  CampaignEnrollment.next_position == position)
                                 .values(next_position=position + 1)).rowcount
    if claimed != 1:
        db.session.rollback()
        return "nothing to do"
    message = None
    if position < len(steps):
        message = _send(enrollment, campaign, steps[position])
    following = steps[position + 1] if position + 1 < len(steps) else None
    now = utcnow()
    values = ({"next_run_at": now + timedelta(minutes=following.delay_minutes)} if following
              else {"status": "completed", "next_run_at": None, "completed_at": now})
    db.session.execute(update(CampaignEnrollment).where(CampaignEnrollment.id == enrollment_id).values(**values))
    db.session.commit()
    if message is not None:
        messaging.enqueue(message)
    db.session.refresh(enrollment)
    queue_step(enrollment)
    return "sent" if message is not None else "skipped"


def _send(enrollment: CampaignEnrollment, campaign: Campaign, step: CampaignStep) -> Message | None:
    """Store the step's message for the contact (the caller commits and queues it); None when it cannot go."""
    contact = db.session.get(Contact, enrollment.contact_id)
    to = contact.email if step.channel == "email" else contact.phone
    label = f"Campaign {campaign.name}, step {step.position + 1}"
    if not to:
        contacts_svc.add_event(contact, "campaign", f"{label} skipped: the contact has no "
                               f"{'email address' if step.channel == 'email' else 'phone number'}.",
                               {"campaign_id": campaign.id, "step_id": step.id})
        return None
    values = contact_values(contact)
    template = step.template
    if template:
        template = {**template, "parameters": [fill(str(p), values) for p in template.get("parameters") or []]}
    data = {"to": to, "subject": fill(step.subject, values), "body": fill(step.body, values), "template": template,
            "idempotency_key": f"campaign-{enrollment.id}-step-{step.id}"}
    data.update({"integration_id": step.integration_id} if step.integration_id else {"channel": step.channel})
    request, errors = messaging.validate_request(campaign.organization_id,
                                                 {k: v for k, v in data.items() if v not in (None, "")})
    if errors:
        why = "; ".join(f"{name}: {' '.join(problems)}" for name, problems in errors.items())
        contacts_svc.add_event(contact, "campaign", f"{label} skipped: {why}",
                               {"campaign_id": campaign.id, "step_id": step.id})
        return None
    existing = messaging.existing_for_key(campaign.organization_id, request.idempotency_key)
    if existing is not None:
        return None
    message = messaging.store(campaign.organization_id, request)
    message.contact_id, message.campaign_step_id = contact.id, step.id
    contacts_svc.add_event(contact, "message", f"{label}: {step.channel} message queued to {to}.",
                           {"campaign_id": campaign.id, "step_id": step.id, "message_id": message.id})
    return message


def sweep() -> int:
    """Every minute: queue due steps whose job was lost (Redis was down, or a worker died)."""
    due = db.session.scalars(select(CampaignEnrollment).join(Campaign, Campaign.id == CampaignEnrollment.campaign_id)
                             .where(CampaignEnrollment.status == "active", Campaign.is_active.is_(True),
                                    CampaignEnrollment.next_run_at < utcnow() - LOST_AFTER)
                             .limit(5000)).all()
    return sum(queue_step(enrollment) for enrollment in due)


# -- serialising -----------------------------------------------------------------------------

def serialize_step(step: CampaignStep) -> dict[str, Any]:
    return {"id": step.id, "position": step.position, "delay_minutes": step.delay_minutes,
            "integration_id": step.integration_id, "channel": step.channel, "subject": step.subject,
            "body": step.body, "template": step.template}


def serialize(campaign: Campaign, *, detail: bool = False) -> dict[str, Any]:
    data = {"id": campaign.id, "name": campaign.name, "description": campaign.description,
            "is_active": campaign.is_active, "steps": [serialize_step(s) for s in campaign.steps],
            "created_at": integrations_svc.isoformat(campaign.created_at)}
    if detail:
        counts = step_message_counts(campaign)
        for step in data["steps"]:
            step["messages"] = counts.get(step["id"], {})
        data["enrollments"] = enrollment_counts(campaign)
    return data


def serialize_enrollment(enrollment: CampaignEnrollment) -> dict[str, Any]:
    return {"id": enrollment.id, "campaign_id": enrollment.campaign_id, "contact_id": enrollment.contact_id,
            "status": enrollment.status, "next_position": enrollment.next_position,
            "next_run_at": integrations_svc.isoformat(enrollment.next_run_at), "source": enrollment.source,
            "enrolled_at": integrations_svc.isoformat(enrollment.enrolled_at),
            "completed_at": integrations_svc.isoformat(enrollment.completed_at)}
