"""Forms for campaigns and their steps. The service (services/campaigns.py) checks the values,
the same for these forms and the JSON API; the forms only carry them."""
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from ..models import CHANNELS

DELAY_UNITS = {"minutes": 1, "hours": 60, "days": 60 * 24}
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "whatsapp": "WhatsApp"}
FIRST_ACTIVE = SelectChoice("", "The channel's first active integration")


class CampaignForm(FlaskForm):
    name = StringField("Name", description="For your team and for sign-up pages and Lead Ads, which start a "
                                           "campaign by its name, e.g. “Welcome series”.")
    description = TextAreaField("Description", description="Optional: what the campaign is for.")


class StepForm(FlaskForm):
    channel = SelectField("Channel", choices=[SelectChoice(c, CHANNEL_LABELS[c]) for c in CHANNELS])
    integration_id = SelectField("Send through", choices=[FIRST_ACTIVE],
                                 description="Leave it to the first active integration of the channel (by priority) "
                                             "to keep failover, or pick one.")
    delay_amount = IntegerField("Wait", default=0, validators=[Optional()],
                                description="After the previous step; the first step waits after enrolment.")
    delay_unit = SelectField("Unit", choices=[SelectChoice(u, u) for u in DELAY_UNITS], default="minutes")
    subject = StringField("Subject (email)", description="Placeholders: {{first_name}}, {{last_name}}, {{name}}, "
                                                         "{{email}}, {{phone}}, custom fields by name; "
                                                         "{{first_name|there}} gives a fallback.")
    body = TextAreaField("Message", description="The text of the email, SMS or WhatsApp message, with placeholders.")
    template_name = StringField("WhatsApp template name", description="Outside the 24-hour window WhatsApp only "
                                                                       "delivers approved templates.")
    template_language = StringField("Template language", default="en_US")
    template_parameters = TextAreaField("Template parameters", description="One per line, for {{1}}, {{2}}, ... "
                                                                           "Placeholders work here too.")

    def load(self, step) -> None:
        """Fill the form from a stored step."""
        self.channel.data = step.channel
        self.integration_id.data = str(step.integration_id or "")
        unit = next((u for u in ("days", "hours") if step.delay_minutes and step.delay_minutes % DELAY_UNITS[u] == 0),
                    "minutes")
        self.delay_amount.data, self.delay_unit.data = step.delay_minutes // DELAY_UNITS[unit], unit
        self.subject.data, self.body.data = step.subject, step.body
        if step.template:
            self.template_name.data = step.template.get("name")
            self.template_language.data = step.template.get("language")
            self.template_parameters.data = "\n".join(step.template.get("parameters") or [])

    def step_data(self) -> dict:
        """What campaigns.add_step / update_step take."""
        amount = self.delay_amount.data or 0
        data = {"channel": self.channel.data, "integration_id": self.integration_id.data or None,
                "delay_minutes": amount * DELAY_UNITS.get(self.delay_unit.data, 1),
                "subject": self.subject.data or None, "body": self.body.data or None}
        if self.channel.data == "whatsapp" and (self.template_name.data or "").strip():
            data["template"] = {"name": self.template_name.data, "language": self.template_language.data or "en_US",
                                "parameters": [p.strip() for p in (self.template_parameters.data or "").splitlines()
                                               if p.strip()]}
        return data

    def show_errors(self, errors: dict[str, list[str]]) -> None:
        targets = {"delay_minutes": self.delay_amount, "template": self.template_name, "html": self.body,
                   "media_url": self.body}
        for name, problems in errors.items():
            field = targets.get(name) or getattr(self, name, None) or self.channel
            field.errors = list(field.errors or []) + list(problems)

