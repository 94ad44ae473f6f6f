"""Fields shared by the AWS adapters (SES, SNS)."""
import boto3
from botocore.config import Config

from .base import Field, ProviderSettings

AWS_FIELDS = (
    Field("region", "AWS region", required=True, default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
          pattern_message="Enter an AWS region such as us-east-1."),
    Field("access_key_id", "Access key ID", required=True, pattern=r"^[A-Z0-9]{16,128}$",
          pattern_message="An access key ID has 16 or more capital letters and digits."),
    Field("secret_access_key", "Secret access key", "secret", required=True),
)


def aws_client(service: str, settings: ProviderSettings, config: dict, secrets: dict):
    """A boto3 client with the integration's own keys (never the machine's), short timeouts,
    at most two attempts, and AWS_ENDPOINT_URL when set."""
    return boto3.session.Session().client(
        service, region_name=config["region"], endpoint_url=settings.aws_endpoint_url,
        aws_access_key_id=config["access_key_id"], aws_secret_access_key=secrets["secret_access_key"],
        config=Config(connect_timeout=settings.timeout, read_timeout=settings.timeout,
                      retries={"mode": "standard", "total_max_attempts": 2}),
    )
