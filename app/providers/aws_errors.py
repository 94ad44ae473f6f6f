"""boto3/botocore failures of any AWS service, mapped to the typed errors with plain words."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from botocore import exceptions as boto

from .base import GiveUp, ProviderError, RetryLater, UseAnotherProvider

# Error codes that mean the key pair itself was refused.
CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "InvalidAccessKeyId",
    "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken", "AuthFailure",
    "ExpiredToken", "ExpiredTokenException", "InvalidToken", "RequestExpired",
})
# The key pair is fine but may not do this.
PERMISSION_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "AuthorizationError", "UnauthorizedOperation", "OptInRequired",
    "AccountSuspendedException",
})
THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "LimitExceededException",
})
SERVER_CODES = frozenset({"InternalError", "InternalFailure", "InternalFailureException", "ServiceUnavailable",
                          "ServiceUnavailableException"})


@contextmanager
def aws_errors(provider_label: str, timeout: float) -> Iterator[None]:
    """Run boto3 calls; any botocore failure leaves as a ProviderError with a readable reason."""
    try:
        yield
    except (boto.ClientError, boto.BotoCoreError) as exc:
        raise provider_error(exc, provider_label, timeout) from None


def provider_error(exc: Exception, label: str, timeout: float) -> ProviderError:
    if isinstance(exc, boto.ClientError):
        return _client_error(exc, label)
    host = _host(getattr(exc, "kwargs", {}).get("endpoint_url"))
    if isinstance(exc, (boto.ReadTimeoutError, boto.ConnectTimeoutError)):
        return RetryLater(f"{label} did not answer within {timeout:g} seconds (timeout).")
    if isinstance(exc, boto.SSLError):
        return RetryLater(f"TLS failure talking to {host}: the certificate could not be verified.")
    if isinstance(exc, (boto.ConnectionError, boto.ConnectionClosedError)):
        return RetryLater(f"Could not reach {host}: the host is unreachable.")
    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return UseAnotherProvider(f"{label} needs an access key ID and a secret access key; one of them is missing.")
    if isinstance(exc, (boto.NoRegionError, boto.UnknownEndpointError)):
        return GiveUp(f"{label} has no endpoint for this region: check the AWS region.")
    if isinstance(exc, boto.ParamValidationError):
        return GiveUp(f"{label} would reject this request: {exc.kwargs.get('report', '').strip() or 'invalid parameters'}.")
    return RetryLater(f"Could not talk to {label}: {type(exc).__name__}.")


def _client_error(exc: boto.ClientError, label: str) -> ProviderError:
    error = exc.response.get("Error") or {}
    meta = exc.response.get("ResponseMetadata") or {}
    code, message = str(error.get("Code") or "Unknown"), str(error.get("Message") or "").strip()
    status = meta.get("HTTPStatusCode")
    said = f": {code}: {message}" if message else f": {code}."
    if code in CREDENTIAL_CODES:
        return UseAnotherProvider(f"{label} refused the credentials (bad credentials){said}", http_status=status)
    if code in PERMISSION_CODES:
        return UseAnotherProvider(f"{label} refused the request: these credentials lack the permission{said}",
                                  http_status=status)
    if code in THROTTLE_CODES or status == 429:
        return RetryLater(f"{label} is rate limiting requests{said}", http_status=status,
                          retry_after=_retry_after(meta))
    if code in SERVER_CODES or (status or 0) >= 500:
        return RetryLater(f"{label} had a server error{said}", http_status=status, retry_after=_retry_after(meta))
    return GiveUp(f"{label} rejected the request{said}", http_status=status)


def _retry_after(meta: dict) -> float | None:
    value = (meta.get("HTTPHeaders") or {}).get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _host(url: str | None) -> str:
    return (urlsplit(url).hostname if url else None) or "the AWS endpoint"


__all__ = ["aws_errors", "provider_error"]
