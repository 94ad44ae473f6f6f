from ..base import Field, Provider
from . import SENDER_FIELDS


class Mailgun(Provider):
    integration_type = "email"
    name = "mailgun"
    label = "Mailgun"
    receives_webhooks = True
    fields = SENDER_FIELDS + (
        Field("domain", "Sending domain", required=True, placeholder="mg.example.com",
              pattern=r"^(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$", pattern_message="Enter a domain such as mg.example.com."),
        Field("region", "Region", "choice", required=True, choices=(("us", "US"), ("eu", "EU")), default="us"),
        Field("api_key", "API key", "secret", required=True),
    )
