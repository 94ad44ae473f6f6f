"""Contacts and tags: normalise, validate, upsert (one contact per email and per phone, even
under concurrency), tag, search, serialise. Errors are a dict by field name."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db
from ..models import Contact, ContactEvent, Organization, Tag, contact_tags
from .integrations import isoformat

Errors = dict[str, list[str]]
FIELDS = {"name", "first_name", "last_name", "email", "phone", "fields", "tags", "source"}
LIMITS = {"name": 200, "first_name": 100, "last_name": 100, "source": 100}
MAX_TAG = 100
MAX_TAGS = 50
MAX_CUSTOM_FIELDS = 100
MAX_FIELD_KEY = 100
MAX_FIELD_VALUE = 10_000
UPSERT_ATTEMPTS = 10


# -- normalisation ---------------------------------------------------------------------------

def normalise_email(value: Any) -> tuple[str | None, str | None]:
    """(lowercase address, error). Empty gives (None, None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if not isinstance(value, str):
        return None, "Give the email address as text."
    if len(value) > 320:
        return None, "An email address is at most 320 characters."
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower(), None
    except EmailNotValidError as exc:
        return None, f"Not a valid email address: {exc}"


def normalise_phone(value: Any, default_country: str | None = "US") -> tuple[str | None, str | None]:
    """(E.164 number, error). Local numbers are read in default_country. Empty gives (None, None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None, "Give the phone number as text."
    if len(value) > 50:
        return None, "A phone number is at most 50 characters."
    try:
        number = phonenumbers.parse(value.strip(), (default_country or "US").upper())
    except phonenumbers.NumberParseException:
        return None, "Not a phone number. Give it with + and the country code, e.g. +14155552671."
    if not phonenumbers.is_valid_number(number):
        return None, "Not a valid phone number. Give it with + and the country code, e.g. +14155552671."
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def normalise_tag(value: Any) -> tuple[str | None, str | None]:
    """(display name with spaces collapsed, error)."""
    if not isinstance(value, str) or not value.strip():
        return None, "Give the tag a name."
    name = " ".join(value.split())
    if len(name) > MAX_TAG:
        return None, f"A tag name is at most {MAX_TAG} characters."
    return name, None


def tag_key(name: str) -> str:
    return " ".join(name.split()).casefold()[:MAX_TAG]


def default_country(organization_id: int) -> str:
    return db.session.scalar(select(Organization.default_country).where(Organization.id == organization_id)) or "US"


# -- validation ------------------------------------------------------------------------------

def _clean_fields(value: Any, errors: Errors) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["fields"] = ["Give custom fields as an object of names and values."]
        return {}
    if len(value) > MAX_CUSTOM_FIELDS:
        errors["fields"] = [f"At most {MAX_CUSTOM_FIELDS} custom fields."]
        return {}
    cleaned = {}
    for key, item in value.items():
        if not key.strip() or len(key) > MAX_FIELD_KEY:
            errors["fields"] = [f"Each custom field needs a name of 1 to {MAX_FIELD_KEY} characters."]
            return {}
        if isinstance(item, list) and all(isinstance(i, str) for i in item):
            item = [i[:MAX_FIELD_VALUE] for i in item[:100]]
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            errors["fields"] = [f"“{key[:40]}”: a custom field holds text, a number, true/false or a list of text."]
            return {}
        if isinstance(item, str) and len(item) > MAX_FIELD_VALUE:
            errors["fields"] = [f"“{key[:40]}”: keep values under {MAX_FIELD_VALUE:,} characters."]
            return {}
        cleaned[key.strip()] = item
    return cleaned


def clean_tag_names(value: Any, errors: Errors, field: str = "tags") -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        errors[field] = ["Give a list of tag names."]
        return []
    if len(value) > MAX_TAGS:
        errors[field] = [f"At most {MAX_TAGS} tags at once."]
        return []
    names, seen = [], set()
    for item in value:
        name, error = normalise_tag(item)
        if error:
            errors[field] = [error]
            return []
        if tag_key(name) not in seen:
            seen.add(tag_key(name))
            names.append(name)
    return names


def validate(organization_id: int, data: Any) -> tuple[dict[str, Any], Errors]:
    """The cleaned contact data, or errors by field. Needs an email or a phone."""
    if not isinstance(data, dict):
        return {}, {"body": ["Send a JSON object."]}
    errors: Errors = {name: ["Unknown field."] for name in sorted(set(data) - FIELDS)}
    cleaned: dict[str, Any] = {}
    for name, limit in LIMITS.items():
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            cleaned[name] = None
        elif not isinstance(value, str):
            errors[name] = ["Give text here."]
        elif len(value.strip()) > limit:
            errors[name] = [f"Keep this under {limit} characters."]
        else:
            cleaned[name] = " ".join(value.split())
    email, error = normalise_email(data.get("email"))
    if error:
        errors["email"] = [error]
    phone, error = normalise_phone(data.get("phone"), default_country(organization_id))
    if error:
        errors["phone"] = [error]
    cleaned.update(email=email, phone=phone)
    cleaned["fields"] = _clean_fields(data.get("fields"), errors)
    cleaned["tags"] = clean_tag_names(data.get("tags"), errors)
    if not errors and not email and not phone:
        errors["email"] = ["Give an email address or a phone number."]
    if not errors:
        if cleaned.get("name") and not cleaned.get("first_name") and not cleaned.get("last_name"):
            first, _, last = cleaned["name"].partition(" ")
            cleaned["first_name"], cleaned["last_name"] = first[:100], (last[:100] or None)
        elif not cleaned.get("name") and (cleaned.get("first_name") or cleaned.get("last_name")):
            cleaned["name"] = " ".join(p for p in (cleaned.get("first_name"), cleaned.get("last_name")) if p)[:200]
    return cleaned, errors


# -- upsert ----------------------------------------------------------------------------------

def add_event(contact: Contact, kind: str, description: str, data: dict | None = None) -> ContactEvent:
    event = ContactEvent(contact_id=contact.id, kind=kind, description=description, data=data or {})
    db.session.add(event)
    return event


def find_match(organization_id: int, email: str | None, phone: str | None, lock: bool = False) -> Contact | None:
    """The contact with this email, else the one with this phone, freshly read (and, with lock,
    locked for update where the database can)."""
    for column, value in ((Contact.email, email), (Contact.phone, phone)):
        if value:
            query = select(Contact).where(Contact.organization_id == organization_id, column == value)
            if lock:
                query = query.with_for_update()
            contact = db.session.scalar(query.execution_options(populate_existing=True))
            if contact is not None:
                return contact
    return None


def _taken(contact: Contact, column, value: str) -> bool:
    return db.session.scalar(select(Contact.id).where(Contact.organization_id == contact.organization_id,
                                                      column == value, Contact.id != contact.id)) is not None


def _merge(contact: Contact, cleaned: dict[str, Any]) -> list[str]:
    """Fill the contact's missing values and merge custom fields; the names of what changed."""
    changed = []
    for name in ("name", "first_name", "last_name", "source"):
        if cleaned.get(name) and not getattr(contact, name):
            setattr(contact, name, cleaned[name])
            changed.append(name)
    for name, column in (("email", Contact.email), ("phone", Contact.phone)):
        # A value that belongs to another contact stays there: the constraint keeps one owner.
        if cleaned.get(name) and not getattr(contact, name) and not _taken(contact, column, cleaned[name]):
            setattr(contact, name, cleaned[name])
            changed.append(name)
    fields = dict(contact.fields or {})
    new_fields = {k: v for k, v in cleaned.get("fields", {}).items() if fields.get(k) != v}
    if new_fields:
        fields.update(new_fields)
        contact.fields = fields
        changed.extend(f"fields.{k}" for k in new_fields)
    return changed


def upsert_contact(organization_id: int, data: Any, source: str | None = None
                   ) -> tuple[Contact | None, bool, Errors]:
    """(contact, created, errors). Matches by email, then by phone, and updates that contact;
    otherwise creates one. Two simultaneous upserts of one person make one contact: the insert
    runs in a SAVEPOINT and a unique violation means "someone else just made it", so look again;
    an update of a contact changed meanwhile (version mismatch) is redone on fresh values, so
    no merge is lost. The caller commits."""
    cleaned, errors = validate(organization_id, data)
    if errors:
        return None, False, errors
    if source and not cleaned.get("source"):
        cleaned["source"] = source[:LIMITS["source"]]
    for attempt in range(UPSERT_ATTEMPTS):
        contact = find_match(organization_id, cleaned["email"], cleaned["phone"], lock=attempt > 0)
        created = contact is None
        try:
            with db.session.begin_nested():
                if created:
                    contact = Contact(organization_id=organization_id, **{
                        k: cleaned.get(k) for k in ("name", "first_name", "last_name", "email", "phone", "source")},
                        fields=cleaned["fields"])
                    db.session.add(contact)
                    db.session.flush()
                    changed = []
                else:
                    changed = _merge(contact, cleaned)
                    db.session.flush()
        except (IntegrityError, StaleDataError):
            continue  # the savepoint is rolled back; the other writer's row is visible now
        if created:
            add_event(contact, "created", f"Created from {cleaned.get('source') or 'an unknown source'}.",
                      {"source": cleaned.get("source")})
        elif changed:
            add_event(contact, "updated", f"Updated from {cleaned.get('source') or 'an unknown source'}: "
                      + ", ".join(changed) + ".", {"changed": changed, "source": cleaned.get("source")})
        if cleaned["tags"]:
            apply_tags(contact, cleaned["tags"])
        return contact, created, {}
    return None, False, {"email": ["This contact is being changed by another request. Try again."]}


EDITABLE = ("name", "first_name", "last_name", "email", "phone", "fields")
TAKEN = {"email": "Another contact already has this email address.",
         "phone": "Another contact already has this phone number."}


def edit_contact(contact: Contact, data: Any, editor: str) -> Errors:
    """Staff's correction of a contact: each field given replaces the stored value (an empty one clears
    it; custom fields are replaced as a whole), the others stay. The contact keeps an email or a phone,
    and an email or phone of another contact is refused. Recorded on the timeline; the caller commits."""
    if not isinstance(data, dict):
        return {"body": ["Send a JSON object."]}
    unknown = sorted(set(data) - set(EDITABLE))
    if unknown:
        return {name: ["This field cannot be edited here." if name in FIELDS else "Unknown field."] for name in unknown}
    current = {name: getattr(contact, name) for name in EDITABLE}
    merged = {**current, **data}
    parts_before = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    if ((contact.name or "") == parts_before and " ".join(str(merged.get("name") or "").split()) == parts_before
            and any(k in data for k in ("first_name", "last_name"))):
        merged["name"] = None  # a name made of first and last name follows them (validate() joins them again)
    cleaned, errors = validate(contact.organization_id, merged)
    if errors:
        return errors
    for name, column in (("email", Contact.email), ("phone", Contact.phone)):
        if cleaned[name] and cleaned[name] != current[name] and _taken(contact, column, cleaned[name]):
            errors[name] = [TAKEN[name]]
    if errors:
        return errors
    changed = [name for name in EDITABLE if cleaned[name] != current[name]]
    if not changed:
        return {}
    try:
        with db.session.begin_nested():
            for name in changed:
                setattr(contact, name, cleaned[name])
            db.session.flush()
    except IntegrityError:  # taken by a contact made since the check above
        db.session.refresh(contact)
        return {"email" if "email" in changed else "phone": ["Another contact took this value just now. Try again."]}
    except StaleDataError:  # a sign-up or lead updated the contact meanwhile
        return {"body": ["This contact was changed meanwhile. Reload it and make your change again."]}
    add_event(contact, "updated", f"Edited by {editor}: " + ", ".join(changed) + ".",
              {"changed": changed, "editor": editor})
    return {}


def delete_contact(contact: Contact) -> None:
    """Delete the contact with its tags, timeline and campaign enrolments (their steps stop). Messages,
    conversations, sign-up submissions and leads that concern them are kept, no longer linked."""
    db.session.execute(delete(Contact).where(Contact.id == contact.id))


# -- tags ------------------------------------------------------------------------------------

def get_or_create_tag(organization_id: int, name: str) -> Tag:
    key = tag_key(name)
    query = select(Tag).where(Tag.organization_id == organization_id, Tag.normalized_name == key)
    for _ in range(UPSERT_ATTEMPTS):
        tag = db.session.scalar(query)
        if tag is not None:
            return tag
        try:
            with db.session.begin_nested():
                tag = Tag(organization_id=organization_id, name=name, normalized_name=key)
                db.session.add(tag)
                db.session.flush()
            return tag
        except IntegrityError:
            continue
    raise RuntimeError(f"could not create tag {name!r}")


def apply_tags(contact: Contact, names: list[str]) -> list[Tag]:
    """Add tags (created when new) to the contact; the tags that were newly applied."""
    added = []
    for name in names:
        tag = get_or_create_tag(contact.organization_id, name)
        if tag in contact.tags:
            continue
        try:
            with db.session.begin_nested():
                db.session.execute(contact_tags.insert().values(contact_id=contact.id, tag_id=tag.id))
        except IntegrityError:
            continue  # applied by a simultaneous request
        added.append(tag)
    if added:
        db.session.expire(contact, ["tags"])
        add_event(contact, "tagged", "Tagged " + ", ".join(t.name for t in added) + ".",
                  {"tags": [t.name for t in added]})
    return added


def remove_tag(contact: Contact, tag: Tag) -> bool:
    result = db.session.execute(contact_tags.delete().where(contact_tags.c.contact_id == contact.id,
                                                            contact_tags.c.tag_id == tag.id))
    if not result.rowcount:
        return False
    db.session.expire(contact, ["tags"])
    add_event(contact, "untagged", f"Tag {tag.name} removed.", {"tags": [tag.name]})
    return True


def find_tag(organization_id: int, name: str) -> Tag | None:
    return db.session.scalar(select(Tag).where(Tag.organization_id == organization_id,
                                               Tag.normalized_name == tag_key(name)))


def get_tag(organization_id: int, tag_id: int) -> Tag | None:
    return db.session.scalar(select(Tag).where(Tag.organization_id == organization_id, Tag.id == tag_id))


def rename_tag(tag: Tag, new_name: Any) -> Errors:
    name, error = normalise_tag(new_name)
    if error:
        return {"name": [error]}
    other = find_tag(tag.organization_id, name)
    if other is not None and other.id != tag.id:
        return {"name": [f"There is already a tag called {other.name}."]}
    try:
        with db.session.begin_nested():
            tag.name, tag.normalized_name = name, tag_key(name)
            db.session.flush()
    except IntegrityError:
        return {"name": ["There is already a tag with this name."]}
    return {}


def delete_tag(tag: Tag) -> None:
    db.session.delete(tag)


def tags_with_counts(organization_id: int) -> list[tuple[Tag, int]]:
    count = func.count(contact_tags.c.contact_id)
    rows = db.session.execute(select(Tag, count).outerjoin(contact_tags, contact_tags.c.tag_id == Tag.id)
                              .where(Tag.organization_id == organization_id)
                              .group_by(Tag.id).order_by(Tag.normalized_name)).all()
    return [(tag, n) for tag, n in rows]


def tag_names(organization_id: int) -> list[str]:
    return list(db.session.scalars(select(Tag.name).where(Tag.organization_id == organization_id)
                                   .order_by(Tag.normalized_name)))


# -- reading ---------------------------------------------------------------------------------

def get_for_org(organization_id: int, contact_id: int) -> Contact | None:
    return db.session.scalar(select(Contact).where(Contact.organization_id == organization_id,
                                                   Contact.id == contact_id))


def list_query(organization_id: int, search: str | None = None, tag: str | None = None,
               email: str | None = None, phone: str | None = None):
    """Newest first. search: name, email or phone contains (phone digits also match formatted input)."""
    query = select(Contact).where(Contact.organization_id == organization_id)
    if email:
        query = query.where(Contact.email == email)
    if phone:
        query = query.where(Contact.phone == phone)
    if search and search.strip():
        term = search.strip()[:200]
        conditions = [Contact.name.icontains(term, autoescape=True), Contact.email.icontains(term, autoescape=True),
                      Contact.phone.contains(term, autoescape=True)]
        digits = re.sub(r"\D", "", term)
        if len(digits) >= 3 and digits != term:
            conditions.append(Contact.phone.contains(digits, autoescape=True))
        query = query.where(or_(*conditions))
    if tag:
        query = query.where(Contact.id.in_(
            select(contact_tags.c.contact_id).join(Tag, Tag.id == contact_tags.c.tag_id)
            .where(Tag.organization_id == organization_id, Tag.normalized_name == tag_key(tag))))
    return query.order_by(Contact.created_at.desc(), Contact.id.desc())


CSV_COLUMNS = ("id", "name", "first_name", "last_name", "email", "phone", "tags", "source", "created_at", "fields")
CSV_BATCH = 500
FORMULA_START = ("=", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A value a spreadsheet shows as text: a cell that would start a formula (=, @, or + and - before
    anything but a number) gets a leading apostrophe. Phone numbers (+14155552671) stay as they are."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) or (text[:1] in ("+", "-") and not text[1:].replace(" ", "").isdigit()):
        return "'" + text
    return text


def export_rows(organization_id: int, search: str | None = None, tag: str | None = None) -> Iterator[list[str]]:
    """The contacts of the list (same search and tag), newest first, as CSV rows after a header row;
    read in batches, so that the ORM never holds a large list at once."""
    yield list(CSV_COLUMNS)
    query = list_query(organization_id, search=search, tag=tag).options(selectinload(Contact.tags))
    for contact in db.session.scalars(query.execution_options(yield_per=CSV_BATCH)):
        values = {**{name: getattr(contact, name) for name in CSV_COLUMNS[:8]},
                  "tags": ", ".join(t.name for t in contact.tags), "created_at": isoformat(contact.created_at),
                  "fields": json.dumps(contact.fields, ensure_ascii=False) if contact.fields else ""}
        yield [csv_cell(values[name]) for name in CSV_COLUMNS]


def serialize(contact: Contact, detail: bool = False) -> dict[str, Any]:
    data = {"id": contact.id, "name": contact.name, "email": contact.email, "phone": contact.phone,
            "tags": [t.name for t in contact.tags], "source": contact.source,
            "created_at": isoformat(contact.created_at)}
    if detail:
        data.update(first_name=contact.first_name, last_name=contact.last_name, fields=contact.fields or {},
                    updated_at=isoformat(contact.updated_at),
                    timeline=[serialize_event(e) for e in contact.events])
    return data


def serialize_event(event: ContactEvent) -> dict[str, Any]:
    return {"kind": event.kind, "description": event.description, "data": event.data or {},
            "occurred_at": isoformat(event.occurred_at)}
