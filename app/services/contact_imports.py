"""Importing contacts from a CSV file: the file is checked and stored, then a job upserts each row as
a contact (matched by email, then phone, as every other way in), committing its progress as it goes."""
from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from rq.job import JobStatus
from sqlalchemy import or_, select, update

from ..extensions import db
from ..models import ContactImport, User, utcnow
from ..queue import task_queue
from . import contacts

MAX_BYTES = 5_000_000
MAX_ROWS = 50_000
MAX_PROBLEMS = 100  # refused rows listed on the import's page; all are counted
PROGRESS_EVERY = 100  # rows between commits of the progress
JOB_TIMEOUT_SECONDS = 3600
STALLED_AFTER = timedelta(minutes=10)  # a running import whose progress has not moved for this long lost its worker
LOST_AFTER = timedelta(minutes=2)  # a queued import whose job is not in the queue this long after queueing lost it
SOURCE = "import"
# Column headings as spreadsheets name them, read as the contact's own fields; any other column is a custom field.
HEADINGS = {
    "name": "name", "full_name": "name", "first_name": "first_name", "firstname": "first_name", "given_name": "first_name",
    "last_name": "last_name", "lastname": "last_name", "surname": "last_name", "family_name": "last_name",
    "email": "email", "e_mail": "email", "email_address": "email", "phone": "phone", "phone_number": "phone",
    "mobile": "phone", "mobile_phone": "phone", "tags": "tags", "tag": "tags",
}
Errors = dict[str, list[str]]


def heading_key(heading: str) -> str:
    return "_".join(heading.strip().lower().replace("-", " ").split())


def read_table(raw: bytes) -> tuple[list[str], list[list[str]], Errors]:
    """(headings, rows, errors) of a CSV file: UTF-8 (with or without a byte-order mark), comma- or
    semicolon-separated, a heading row naming an email or a phone column."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [], {"file": ["This file is not UTF-8 text. Save it as “CSV UTF-8” and try again."]}
    if "\x00" in text:
        return [], [], {"file": ["This is not a CSV file."]}
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    try:
        table = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        return [], [], {"file": [f"This CSV file cannot be read: {exc}."]}
    if not table:
        return [], [], {"file": ["The file is empty."]}
    headings, rows = table[0], table[1:]
    keys = {HEADINGS.get(heading_key(h)) for h in headings}
    if not keys & {"email", "phone"}:
        return [], [], {"file": ["The first row must name the columns, with one for email or phone "
                                 "(e.g. name,email,phone,tags)."]}
    if not rows:
        return [], [], {"file": ["The file has a heading row but no contacts."]}
    if len(rows) > MAX_ROWS:
        return [], [], {"file": [f"Import at most {MAX_ROWS:,} contacts at a time; this file has {len(rows):,}."]}
    return headings, rows, {}


def start(user: User, filename: str, raw: bytes, tag: Any) -> tuple[ContactImport | None, Errors]:
    """Check the file, store it and queue its job; nothing is stored when there is an error."""
    errors: Errors = {}
    tag_name = None
    if tag and str(tag).strip():
        tag_name, error = contacts.normalise_tag(tag)
        if error:
            errors["tag"] = [error]
    if len(raw) > MAX_BYTES:
        errors["file"] = [f"Import files of at most {MAX_BYTES // 1_000_000} MB."]
    elif not raw:
        errors["file"] = ["Choose a CSV file."]
    else:
        _, rows, file_errors = read_table(raw)
        errors.update(file_errors)
    if errors:
        return None, errors
    job = ContactImport(organization_id=user.organization_id, started_by=user.email, filename=(filename or "contacts.csv")[:255],
                        tag=tag_name, content=raw.decode("utf-8-sig"), total_rows=len(rows), problems=[])
    db.session.add(job)
    db.session.commit()
    if not queue(job):
        job.status, job.content, job.finished_at = "failed", None, utcnow()
        job.message = "The job queue (Redis) is not reachable, so the import did not start. Try again in a moment."
        db.session.commit()
    return job, {}


def rq_job_id(import_id: int) -> str:
    return f"contact-import-{import_id}"


def queue(job: ContactImport) -> bool:
    try:
        task_queue().enqueue("app.jobs.contacts.run_import", job.id, job_id=rq_job_id(job.id),
                             job_timeout=JOB_TIMEOUT_SECONDS, result_ttl=600, failure_ttl=86400)
    except RedisError:
        return False
    return True


def job_is_waiting(job: ContactImport) -> bool:
    """Whether the import's job is still in Redis, waiting for a worker or taken by one. A Redis that
    restarted without its data, or a queue emptied by hand, loses it."""
    rq_job = task_queue().fetch_job(rq_job_id(job.id))
    return rq_job is not None and rq_job.get_status(refresh=False) in (
        JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED)


def resume_stalled() -> int:
    """Every minute (maintenance sweep): an import whose worker died goes on from its last committed
    row (rows are upserts, so one done twice changes nothing), and one whose queued job was lost is
    queued again. Redis being down leaves both for the next sweep."""
    now = utcnow()
    candidates = db.session.scalars(select(ContactImport).where(or_(
        (ContactImport.status == "running") & (ContactImport.updated_at < now - STALLED_AFTER),
        (ContactImport.status == "queued") & (ContactImport.updated_at < now - LOST_AFTER)))).all()
    resumed = 0
    for job in candidates:
        try:
            if job.status == "queued" and job_is_waiting(job):
                continue
        except RedisError:
            break
        job.status = "queued"
        db.session.commit()
        if not queue(job):
            break  # still "queued", with its job lost: the next sweep tries again
        resumed += 1
    return resumed


def contact_data(headings: list[str], row: list[str], tag: str | None) -> dict[str, Any]:
    """One row as upsert_contact takes it: the contact's fields, tags (comma- or semicolon-separated,
    plus the import's tag) and every other non-empty column as a custom field."""
    data: dict[str, Any] = {"fields": {}, "tags": [tag] if tag else []}
    for heading, value in zip(headings, row):
        value = value.strip()
        key = HEADINGS.get(heading_key(heading))
        if not value:
            continue
        if key == "tags":
            data["tags"] += [t.strip() for t in value.replace(";", ",").split(",") if t.strip()]
        elif key:
            data[key] = value
        elif heading.strip():
            data["fields"][heading.strip()[:100]] = value
    return data


def run(import_id: int) -> str:
    """The job: upsert each row not yet done (a job run again after a crash resumes), then forget the file."""
    # The claim: an import queued twice (its job thought lost, then found) runs once.
    claimed = db.session.execute(update(ContactImport).where(ContactImport.id == import_id, ContactImport.status == "queued")
                                 .values(status="running", updated_at=utcnow())).rowcount
    db.session.commit()
    if claimed != 1:
        return "taken or gone"
    job = db.session.get(ContactImport, import_id, populate_existing=True)
    headings, rows, _ = read_table(job.content.encode())  # checked when the import started
    for number, row in enumerate(rows[job.processed:], start=job.processed + 1):
        contact, created, row_errors = contacts.upsert_contact(job.organization_id, contact_data(headings, row, job.tag),
                                                               source=SOURCE)
        if row_errors:  # refused before anything was written: the rows before it stay
            job.failed += 1
            if len(job.problems) < MAX_PROBLEMS:
                job.problems = [*job.problems, {"row": number + 1, "errors": row_errors}]  # +1: the heading row
        elif created:
            job.created += 1
        else:
            job.updated += 1
        job.processed = number
        if number % PROGRESS_EVERY == 0:
            db.session.commit()
    job.status, job.content, job.finished_at = "done", None, utcnow()
    db.session.commit()
    current_app.logger.info("contact import %s: %s created, %s updated, %s refused", job.id, job.created,
                            job.updated, job.failed)
    return "done"


def get(organization_id: int, import_id: int) -> ContactImport | None:
    return db.session.scalar(select(ContactImport).where(ContactImport.id == import_id,
                                                         ContactImport.organization_id == organization_id))


def recent(organization_id: int, limit: int = 5) -> list[ContactImport]:
    return list(db.session.scalars(select(ContactImport).where(ContactImport.organization_id == organization_id)
                                   .order_by(ContactImport.id.desc()).limit(limit)))
