from ..base import Field, Provider
from . import SENDER_FIELDS


class MailchimpTransactional(Provider):
    integration_type = "email"
    name = "mailchimp"
    label = "Mailchimp Transactional (Mandrill)"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", "secret", required=True),
    )
