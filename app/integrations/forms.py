"""Forms for integrations. The provider's fields are rendered from its declaration
(templates/integrations/_fields.html); FlaskForm brings CSRF and the name field."""
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, FloatField, IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..providers.base import Provider


class IntegrationForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)],
                       description="For your team, e.g. “Marketing email”.")


class SendingIntegrationForm(IntegrationForm):
    """The edit form of an email, SMS or WhatsApp integration. Ranges are checked by the
    service (integrations.update), the same for this form and the JSON API."""

    priority = IntegerField("Priority", validators=[Optional()],
                            description="Lower is tried first. When an integration fails on the provider's side, "
                                        "messages move to the active integration of this type with the next priority.")
    rate_limit = FloatField("Rate limit (messages per second)", validators=[Optional()],
                            description="Leave empty for the provider's documented limit. Holds across all workers.")
    sandbox = BooleanField("Sandbox mode",
                           description="Messages go through everything (validation, pacing, timeline) but are not "
                                       "delivered; the provider's own test mode is used where it has one.")

    def sending_settings(self) -> dict:
        """What integrations.update takes. An absent priority keeps the stored one; an empty
        rate limit means the provider's default."""
        values = {"rate_limit": self.rate_limit.data, "sandbox": bool(self.sandbox.data)}
        if self.priority.data is not None:
            values["priority"] = self.priority.data
        return values


class SendTestForm(FlaskForm):
    """Fields only: messaging.validate_request is the one place that checks a message."""

    to = StringField("To")
    subject = StringField("Subject")
    body = TextAreaField("Message")

    def message_data(self, integration_id: int, channel: str) -> dict:
        """The same shape as POST /api/messages/."""
        data = {"integration_id": integration_id, "to": self.to.data or "", "body": self.body.data or ""}
        if channel == "email":
            data["subject"] = self.subject.data or ""
        return data


def attach_errors(form: FlaskForm, errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Put a service's errors on the form's fields, to show inline; return those of no field."""
    rest = {}
    for name, messages in errors.items():
        if name in form and name != "csrf_token":
            form[name].errors = [*form[name].errors, *messages]
        else:
            rest[name] = messages
    return rest


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
