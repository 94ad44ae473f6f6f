from ..base import Field, Provider
from . import SENDER_FIELDS


class SMTP(Provider):
    integration_type = "email"
    name = "smtp"
    label = "SMTP server"
    fields = SENDER_FIELDS + (
        Field("host", "Host", "host", required=True, placeholder="smtp.example.com"),
        Field("port", "Port", "int", required=True, default=587, min_value=1, max_value=65535,
              help="587 for STARTTLS, 465 for implicit TLS."),
        Field("security", "Security", "choice", required=True, default="starttls",
              choices=(("starttls", "STARTTLS"), ("ssl", "Implicit TLS (SSL)"), ("none", "None (unencrypted)"))),
        Field("username", "Username"),
        Field("password", "Password", "secret"),
    )
