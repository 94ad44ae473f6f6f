from ..base import Field, Provider
from . import SENDER_FIELDS


class Vonage(Provider):
    integration_type = "sms"
    name = "vonage"
    label = "Vonage (Nexmo)"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", required=True, pattern=r"^[A-Za-z0-9]{4,32}$",
              pattern_message="A Vonage API key is letters and digits."),
        Field("api_secret", "API secret", "secret", required=True),
    )
