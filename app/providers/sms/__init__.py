from ..base import Field

SENDER_FIELDS = (
    Field("from_phone_number", "From phone number", "phone", required=True, placeholder="+14155550100",
          help="In international format (E.164), e.g. +14155550100."),
)
