import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError,
                                 ParamValidationError, ReadTimeoutError, SSLError)

from ..aws import AWS_FIELDS
from ..base import GiveUp, Provider, ProviderError, RetryLater, UseAnotherProvider
from . import SENDER_FIELDS

# AWS error codes that mean the key pair itself was refused, or lacks the permission asked for.
BAD_CREDENTIAL_CODES = {
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch", "IncompleteSignature",
    "MissingAuthenticationToken", "InvalidAccessKeyId", "InvalidSignatureException", "AuthFailure", "ExpiredToken",
    "ExpiredTokenException",
}
PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "NotAuthorized", "UnauthorizedOperation"}
THROTTLING_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}


class AmazonSES(Provider):
    integration_type = "email"
    name = "ses"
    label = "Amazon SES"
    receives_webhooks = True
    fields = SENDER_FIELDS + AWS_FIELDS

    def client(self, service: str, config, secrets):
        timeout = self.settings.timeout
        return boto3.session.Session().client(
            service, region_name=config["region"], endpoint_url=self.settings.aws_endpoint_url,
            aws_access_key_id=config["access_key_id"], aws_secret_access_key=secrets["secret_access_key"],
            config=Config(connect_timeout=timeout, read_timeout=timeout,
                          retries={"mode": "standard", "total_max_attempts": 2}))

    def check(self, config, secrets):
        # GetAccount proves the key pair and shows whether the account may send, without sending anything.
        region = config["region"]
        try:
            try:
                account = self.client("sesv2", config, secrets).get_account()
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
                # Only SES stand-ins (AWS_ENDPOINT_URL) lack GetAccount; the v1 quota call proves the key there.
                quota = self.client("ses", config, secrets).get_send_quota()
                return f"Credentials accepted by Amazon SES in {region}; {describe_quota(quota)}."
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, self.label, region, self.settings.timeout) from None

        if not account.get("SendingEnabled", True):
            raise UseAnotherProvider(f"Amazon SES accepted the credentials, but sending is paused for this account in {region}.")
        if account.get("EnforcementStatus") == "SHUTDOWN":
            raise UseAnotherProvider(f"Amazon SES accepted the credentials, but AWS has shut down sending for this account in {region}.")
        parts = [f"Credentials accepted by Amazon SES in {region}; sending is enabled"]
        if not account.get("ProductionAccessEnabled", True):
            parts.append("the account is in the SES sandbox, so mail goes only to verified addresses")
        if account.get("EnforcementStatus") == "PROBATION":
            parts.append("AWS has put the account on probation")
        if account.get("SendQuota"):
            parts.append(describe_quota(account["SendQuota"]))
        return "; ".join(parts) + "."


def describe_quota(quota: dict) -> str:
    per_day, per_second, sent = (quota.get(k) for k in ("Max24HourSend", "MaxSendRate", "SentLast24Hours"))
    words = []
    if per_day is not None:
        words.append("unlimited messages per 24 hours" if per_day < 0 else f"up to {per_day:,.0f} messages per 24 hours")
    if per_second is not None:
        words.append(f"{per_second:g} per second")
    text = " at ".join(words) or "no quota reported"
    return f"{text} ({sent:,.0f} sent in the last 24 hours)" if sent is not None else text


def aws_error(exc: Exception, label: str, region: str, timeout: float) -> ProviderError:
    """Plain words and a type for a botocore failure."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "").strip()
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # A stand-in that answers in the wrong format leaves markup here; keep it out of the words.
        detail = f": {message[:200]}" if message and not message.startswith("<") else "."
        if code in BAD_CREDENTIAL_CODES or (status == 401) or (status == 403 and code not in PERMISSION_CODES):
            return UseAnotherProvider(f"{label} refused the access key (bad credentials){detail}", http_status=status)
        if code in PERMISSION_CODES:
            return UseAnotherProvider(f"{label} accepted the access key, but it lacks the permission needed{detail}",
                                      http_status=status)
        if code in THROTTLING_CODES or status == 429:
            return RetryLater(f"{label} is rate limiting requests{detail}", http_status=status)
        if status and status >= 500:
            return RetryLater(f"{label} had a server error (HTTP {status}){detail}", http_status=status)
        return GiveUp(f"{label} rejected the request ({code or f'HTTP {status}'}){detail}", http_status=status)
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return RetryLater(f"{label} did not answer within {timeout:g} seconds (timeout).")
    if isinstance(exc, SSLError):
        return RetryLater(f"TLS failure talking to {label}: the certificate could not be verified.")
    if isinstance(exc, EndpointConnectionError):
        return RetryLater(f"Could not reach {label} in {region}: the host is unreachable.")
    if isinstance(exc, ParamValidationError):
        return GiveUp(f"{label} was not called: the request was not valid ({exc}).")
    return RetryLater(f"Could not talk to {label}: {type(exc).__name__}.")
