"""Fields shared by the AWS adapters (SES, SNS)."""
from .base import Field

AWS_FIELDS = (
    Field("region", "AWS region", required=True, default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
          pattern_message="Enter an AWS region such as us-east-1."),
    Field("access_key_id", "Access key ID", required=True, pattern=r"^[A-Z0-9]{16,128}$",
          pattern_message="An access key ID has 16 or more capital letters and digits."),
    Field("secret_access_key", "Secret access key", "secret", required=True),
)
