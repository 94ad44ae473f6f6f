"""Forms for contacts and tags. Names are checked by the service (contacts.normalise_tag),
the same for these forms and the JSON API."""
import json

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import StringField, TextAreaField


class TagForm(FlaskForm):
    name = StringField("Tag", description="A new or existing tag, e.g. “newsletter”.")


class ImportForm(FlaskForm):
    file = FileField("CSV file", description="A heading row, then one contact a row. Columns: name, first_name, "
                                             "last_name, email, phone, tags (comma-separated); any other column "
                                             "becomes a custom field. Up to 50,000 rows and 5 MB.")
    tag = StringField("Tag every imported contact", description="Optional, e.g. “Imported 2026”.")


class ContactForm(FlaskForm):
    """Staff's edit of a contact; values are checked by the service (contacts.edit_contact), as for the API."""
    name = StringField("Name")
    first_name = StringField("First name")
    last_name = StringField("Last name")
    email = StringField("Email")
    phone = StringField("Phone", description="International (+44 20 7946 0958) or local to your organisation's "
                                             "default country.")
    fields = TextAreaField("Custom fields (JSON)", description='An object of your own fields, e.g. {"company": "Acme"}; '
                                                              "leave {} for none.")

    editable = ("name", "first_name", "last_name", "email", "phone")
    problems: list[str] = []  # errors that belong to no one field (the contact changed meanwhile)

    @classmethod
    def of(cls, contact) -> "ContactForm":
        """The form filled with the contact's values (a posted form's values win over them)."""
        return cls(data={**{name: getattr(contact, name) or "" for name in cls.editable},
                         "fields": json.dumps(contact.fields or {}, indent=2, ensure_ascii=False)})

    def submitted(self) -> tuple[dict, dict[str, list[str]]]:
        """The values to save, and errors by field when the custom fields box does not hold JSON."""
        values = {name: self[name].data or "" for name in self.editable}
        try:
            values["fields"] = json.loads(self.fields.data or "{}")
        except ValueError as exc:
            return values, {"fields": [f"This is not valid JSON ({exc.msg} at line {exc.lineno})."]}
        return values, {}

    def show(self, errors: dict[str, list[str]]) -> None:
        self.problems = []
        for name, messages in errors.items():
            if name in self._fields:
                self[name].errors = list(messages)
            else:
                self.problems.extend(messages)
