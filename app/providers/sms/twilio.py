from ..base import Field, Provider
from . import SENDER_FIELDS


class Twilio(Provider):
    integration_type = "sms"
    name = "twilio"
    label = "Twilio"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("account_sid", "Account SID", required=True, pattern=r"^AC[0-9a-fA-F]{32}$",
              pattern_message="An Account SID is AC followed by 32 hexadecimal characters."),
        Field("auth_token", "Auth token", "secret", required=True),
    )
