"""Forms of the Lead Ads panel. FlaskForm brings CSRF; the services check the values."""
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import StringField, TextAreaField

# What the mapping editor offers for each question; "fields" takes the custom field name typed beside it.
TARGET_CHOICES = (("fields", "Custom field"), ("email", "Email"), ("phone", "Phone"), ("name", "Full name"),
                  ("first_name", "First name"), ("last_name", "Last name"), ("skip", "Don’t keep"))
MAX_ROWS = 100


class ChooseFormForm(FlaskForm):
    form_id = StringField("Lead form")  # empty: every form of the page


class MappingJSONForm(FlaskForm):
    mapping_json = TextAreaField("Field mapping (JSON)")


def mapping_rows(form: MultiDict) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The editor's rows (question key, target, custom field name) and what is wrong with them."""
    rows, problems = [], []
    known = {key for key, _ in TARGET_CHOICES}
    for index in range(MAX_ROWS):
        key = form.get(f"key-{index}")
        if key is None:
            break
        target = form.get(f"target-{index}", "fields")
        if target not in known:
            problems.append(f"Choose where the answer to “{key[:40]}” goes.")
            continue
        rows.append((key, target, form.get(f"field-{index}", "")))
    return rows, problems
