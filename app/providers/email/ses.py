from botocore.exceptions import ClientError

from ..aws import AWS_FIELDS, aws_client
from ..aws_errors import aws_errors
from ..base import Provider, UseAnotherProvider
from . import SENDER_FIELDS


class AmazonSES(Provider):
    integration_type = "email"
    name = "ses"
    label = "Amazon SES"
    receives_webhooks = True
    fields = SENDER_FIELDS + AWS_FIELDS

    def check(self, config, secrets):
        # GetAccount proves the key pair (SigV4) and shows whether the account may send; it sends nothing.
        region = config["region"]
        with aws_errors(self.label, self.settings.timeout):
            try:
                account = aws_client("sesv2", self.settings, config, secrets).get_account()
            except ClientError as exc:
                if (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") != 404:
                    raise
                # Only SES stand-ins (AWS_ENDPOINT_URL, such as moto) lack GetAccount; SES v1's quota call
                # proves the key pair there just as well.
                quota = aws_client("ses", self.settings, config, secrets).get_send_quota()
                return f"Credentials accepted by Amazon SES in {region}; {describe_quota(quota)}."

        if not account.get("SendingEnabled", True):
            raise UseAnotherProvider(f"Amazon SES accepted the credentials, but sending is paused for this account "
                                     f"in {region}.")
        if account.get("EnforcementStatus") == "SHUTDOWN":
            raise UseAnotherProvider(f"Amazon SES accepted the credentials, but AWS has shut down sending for this "
                                     f"account in {region}.")
        parts = [f"Credentials accepted by Amazon SES in {region}; sending is enabled"]
        if not account.get("ProductionAccessEnabled", True):
            parts.append("the account is in the SES sandbox, so mail goes only to verified addresses")
        if account.get("EnforcementStatus") == "PROBATION":
            parts.append("AWS has put the account on probation")
        if account.get("SendQuota"):
            parts.append(describe_quota(account["SendQuota"]))
        return "; ".join(parts) + "."


def describe_quota(quota: dict) -> str:
    """SES's SendQuota (v2) or GetSendQuota answer (v1) in words: the fields are named alike."""
    per_day, per_second, sent = (quota.get(k) for k in ("Max24HourSend", "MaxSendRate", "SentLast24Hours"))
    words = []
    if per_day is not None:
        words.append("unlimited messages per 24 hours" if per_day < 0 else f"up to {per_day:,.0f} messages per 24 hours")
    if per_second is not None:
        words.append(f"{per_second:g} per second")
    text = " at ".join(words) or "no sending quota reported"
    return f"{text} ({sent:,.0f} sent in the last 24 hours)" if sent is not None else text
