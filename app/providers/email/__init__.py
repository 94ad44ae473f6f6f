from ..base import Field

SENDER_FIELDS = (
    Field("from_email", "From email", "email", required=True, placeholder="hello@example.com"),
    Field("from_name", "From name", placeholder="Acme Support"),
    Field("reply_to", "Reply-to email", "email"),
)
