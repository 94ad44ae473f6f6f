"""Contacts list, contact detail with tags and timeline, editing and deleting a contact, tag management."""
import csv
import io
from datetime import date

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..pagination import requested_page
from ..services import contact_imports
from ..services import contacts as svc
from ..forms import ActionForm
from . import bp
from .forms import ContactForm, ImportForm, TagForm

PAGE_SIZE = 50
FORM_ALLOWANCE = 100_000  # the import form's other fields and multipart framing


@bp.before_request
@login_required
def require_login():
    return None


def _owned(contact_id: int):
    return svc.get_for_org(current_user.organization_id, contact_id) or abort(404)


def _owned_tag(tag_id: int):
    return svc.get_tag(current_user.organization_id, tag_id) or abort(404)


@bp.get("/contacts")
def index():
    search = (request.args.get("q") or "").strip()[:200]
    tag = (request.args.get("tag") or "").strip()[:100]
    query = svc.list_query(current_user.organization_id, search=search or None, tag=tag or None)
    page = db.paginate(query, page=requested_page(), per_page=PAGE_SIZE, error_out=False)
    return render_template("contacts/index.html", page=page, search=search, tag=tag,
                           tags=svc.tag_names(current_user.organization_id))


@bp.get("/contacts/export.csv")
def export():
    """The list as CSV, with the page's search and tag."""
    search = (request.args.get("q") or "").strip()[:200]
    tag = (request.args.get("tag") or "").strip()[:100]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(svc.export_rows(current_user.organization_id, search=search or None, tag=tag or None))
    filename = f"contacts-{date.today().isoformat()}.csv"
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


@bp.url_value_preprocessor
def allow_import_files(endpoint, values):
    """An import file may be larger than the app's 1 MB. Set here because URL preprocessors run before
    the app's before_request hooks (CSRF, the NUL check), which read the form."""
    if endpoint == "contacts.import_contacts":
        request.max_content_length = contact_imports.MAX_BYTES + FORM_ALLOWANCE


@bp.route("/contacts/import", methods=["GET", "POST"])
def import_contacts():
    form = ImportForm()
    if form.validate_on_submit():
        upload = form.file.data
        raw = upload.read(contact_imports.MAX_BYTES + 1) if upload else b""
        job, errors = contact_imports.start(current_user, getattr(upload, "filename", ""), raw, form.tag.data)
        if not errors:
            return redirect(url_for("contacts.import_status", import_id=job.id))
        for name, messages in errors.items():
            form[name].errors = messages
    return render_template("contacts/import.html", form=form,
                           imports=contact_imports.recent(current_user.organization_id)), 400 if form.errors else 200


@bp.get("/contacts/imports/<int:import_id>")
def import_status(import_id):
    job = contact_imports.get(current_user.organization_id, import_id) or abort(404)
    template = "contacts/_import_status.html" if request.headers.get("HX-Request") else "contacts/import_status.html"
    return render_template(template, job=job)


@bp.get("/contacts/<int:contact_id>")
def detail(contact_id):
    return _detail_page(_owned(contact_id))


def _detail_page(contact, form: TagForm | None = None, status: int = 200):
    return render_template("contacts/detail.html", contact=contact, form=form or TagForm(formdata=None),
                           action_form=ActionForm(), events=list(reversed(contact.events))), status


@bp.route("/contacts/<int:contact_id>/edit", methods=["GET", "POST"])
def edit(contact_id):
    contact = _owned(contact_id)
    form = ContactForm.of(contact)
    if form.validate_on_submit():
        values, errors = form.submitted()
        errors = errors or svc.edit_contact(contact, values, current_user.email)
        if not errors:
            db.session.commit()
            flash("Contact saved.", "success")
            return redirect(url_for("contacts.detail", contact_id=contact.id))
        db.session.rollback()
        form.show(errors)
    status = 400 if request.method == "POST" else 200
    return render_template("contacts/edit.html", contact=_owned(contact_id), form=form), status


@bp.route("/contacts/<int:contact_id>/delete", methods=["GET", "POST"])
def delete(contact_id):
    contact = _owned(contact_id)
    form = ActionForm()
    if form.validate_on_submit():
        name = contact.display_name
        svc.delete_contact(contact)
        db.session.commit()
        flash(f"{name} was deleted.", "success")
        return redirect(url_for("contacts.index"))
    return render_template("contacts/delete.html", contact=contact, form=form)


@bp.post("/contacts/<int:contact_id>/tags")
def add_tag(contact_id):
    contact = _owned(contact_id)
    form = TagForm()
    if form.validate_on_submit():
        errors = {}
        names = svc.clean_tag_names([form.name.data or ""], errors, field="name")
        if not errors:
            added = svc.apply_tags(contact, names)
            db.session.commit()
            flash(f"Tagged {names[0]}." if added else f"Already tagged {names[0]}.", "success")
            return redirect(url_for("contacts.detail", contact_id=contact.id))
        form.name.errors = errors["name"]
    return _detail_page(contact, form, 400)


@bp.post("/contacts/<int:contact_id>/tags/<int:tag_id>/remove")
def remove_tag(contact_id, tag_id):
    contact, tag = _owned(contact_id), _owned_tag(tag_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if svc.remove_tag(contact, tag):
        db.session.commit()
        flash(f"Tag {tag.name} removed.", "success")
    return redirect(url_for("contacts.detail", contact_id=contact.id))


@bp.get("/contacts/tags")
def tags():
    return render_template("contacts/tags.html", rows=svc.tags_with_counts(current_user.organization_id),
                           action_form=ActionForm(), errors={}, failed_id=None)


@bp.post("/contacts/tags/<int:tag_id>/rename")
def rename_tag(tag_id):
    tag = _owned_tag(tag_id)
    form = ActionForm()
    if form.validate_on_submit():
        old = tag.name
        errors = svc.rename_tag(tag, request.form.get("name"))
        if not errors:
            db.session.commit()
            flash(f"Tag {old} renamed to {tag.name}.", "success")
            return redirect(url_for("contacts.tags"))
        db.session.rollback()
    else:
        errors = {"name": ["The form expired. Try again."]}
    return render_template("contacts/tags.html", rows=svc.tags_with_counts(current_user.organization_id),
                           action_form=ActionForm(), errors=errors, failed_id=tag_id,
                           submitted=request.form.get("name", "")), 400


@bp.route("/contacts/tags/<int:tag_id>/delete", methods=["GET", "POST"])
def delete_tag(tag_id):
    tag = _owned_tag(tag_id)
    form = ActionForm()
    if form.validate_on_submit():
        name = tag.name
        svc.delete_tag(tag)
        db.session.commit()
        flash(f"Tag {name} deleted. Its contacts are kept.", "success")
        return redirect(url_for("contacts.tags"))
    count = dict((t.id, n) for t, n in svc.tags_with_counts(current_user.organization_id)).get(tag.id, 0)
    return render_template("contacts/delete_tag.html", tag=tag, count=count, form=form)
