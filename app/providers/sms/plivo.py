from ..base import Field, Provider
from . import SENDER_FIELDS


class Plivo(Provider):
    integration_type = "sms"
    name = "plivo"
    label = "Plivo"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("auth_id", "Auth ID", required=True, pattern=r"^[A-Z0-9]{20}$",
              pattern_message="A Plivo Auth ID is 20 capital letters and digits."),
        Field("auth_token", "Auth token", "secret", required=True),
    )
