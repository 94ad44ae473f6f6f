"""Forms for integrations. The provider's fields are rendered from its declaration
(templates/integrations/_fields.html); FlaskForm brings CSRF and the name field."""
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ..providers.base import Provider


class IntegrationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)],
                       description="For your team, e.g. “Marketing email”.")


class ActionForm(FlaskForm):
    """A button that posts: CSRF token only."""


def submitted_fields(provider: type[Provider], form: MultiDict) -> dict:
    """The provider's field values from a posted form; an unticked box is False."""
    values = {}
    for field in provider.fields:
        if field.kind == "generated":
            continue
        if field.kind == "bool":
            values[field.name] = field.name in form
        else:
            values[field.name] = form.get(field.name, "")
    return values
