from ..base import Field, Provider
from . import SENDER_FIELDS


class SendGrid(Provider):
    integration_type = "email"
    name = "sendgrid"
    label = "SendGrid"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", "secret", required=True, help="Needs the Mail Send permission."),
    )
