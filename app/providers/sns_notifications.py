"""Amazon SNS HTTP(S) notifications: message signature verification and subscription confirmation.

SNS signs every message it posts (Notification, SubscriptionConfirmation, UnsubscribeConfirmation)
with RSA over a canonical string of its fields; the signing certificate is fetched over HTTPS from
SigningCertURL, which must be an SNS host of AWS (`sns.<region>.amazonaws.com`, or `.com.cn`) and a
`.pem` path: anything else could serve a certificate of an attacker's making. Certificates are cached
by URL in the process (they are public and long-lived; losing the cache costs one fetch).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections import OrderedDict
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .base import InboundWebhook, ProviderError, ProviderSettings, RetryLater, WebhookRejected
from .net import call

LABEL = "Amazon SNS"
# AWS's own validators use this host pattern; amazonaws.com alone is not enough (S3 buckets live there too).
AWS_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]{3,}\.amazonaws\.com(\.cn)?$")
MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The fields each message type signs, in this order (absent ones are skipped).
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
SIGNATURE_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
# SNS retries an HTTP/S delivery for at most an hour (its delivery policy's cap) and signs the message's
# original Timestamp: anything older cannot be a genuine delivery. Five more minutes for clock skew.
TIMESTAMP_TOLERANCE = 3600 + 300
CERT_CACHE_SIZE = 32
CERT_CACHE_SECONDS = 24 * 3600
MAX_CERT_BYTES = 64 * 1024

_cache: OrderedDict[str, tuple[rsa.RSAPublicKey, float]] = OrderedDict()
_cache_lock = threading.Lock()


def aws_url_problem(url: str, *, certificate: bool) -> str | None:
    """Why `url` is not an https URL on an SNS host of AWS (and, for a certificate, a .pem path), or None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme != "https":
        return "it is not an https URL"
    if parts.username is not None or parts.password is not None or port not in (None, 443):
        return "it names a user or a port"
    if not AWS_SNS_HOST.fullmatch(host):
        return f"{host or 'its host'} is not an Amazon SNS host (sns.<region>.amazonaws.com)"
    if certificate and not parts.path.endswith(".pem"):
        return "it is not a .pem certificate"
    return None


def parse_message(body: bytes) -> dict:
    """The JSON object SNS posted, or WebhookRejected(400)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("The body is not an Amazon SNS message (not JSON).", 400) from None
    if not isinstance(message, dict) or message.get("Type") not in MESSAGE_TYPES:
        raise WebhookRejected("The body is not an Amazon SNS message (no known Type).", 400)
    if not all(isinstance(message.get(k), str) for k in ("MessageId", "Timestamp", "TopicArn", "Message")):
        raise WebhookRejected("The Amazon SNS message lacks MessageId, Timestamp, TopicArn or Message.", 400)
    return message


def string_to_sign(message: dict) -> bytes:
    """The canonical string SNS signs: `Key\\nValue\\n` for each signed field present, in order."""
    return "".join(f"{key}\n{message[key]}\n" for key in SIGNED_FIELDS[message["Type"]]
                   if isinstance(message.get(key), str)).encode()


def verify(request: InboundWebhook, settings: ProviderSettings, *, topic_arn: str | None = None) -> dict:
    """Verify a posted SNS message (type header, topic, timestamp, signature); return it parsed.

    Raises WebhookRejected: 400 for what is not an SNS message, 401 for what SNS did not sign,
    503 when the signing certificate cannot be fetched right now (SNS retries 5xx).
    """
    message = parse_message(request.body)
    kind = message["Type"]
    header = request.header("x-amz-sns-message-type")
    if header and header != kind:
        raise WebhookRejected("The x-amz-sns-message-type header does not match the message's Type.", 400)
    if topic_arn and message["TopicArn"] != topic_arn:
        raise WebhookRejected(f"The message comes from the topic {message['TopicArn']}, not from {topic_arn}.")
    algorithm = SIGNATURE_HASHES.get(str(message.get("SignatureVersion") or ""))
    if algorithm is None:
        raise WebhookRejected("The message is not signed with SignatureVersion 1 or 2.")
    signed_at = parse_timestamp(message["Timestamp"])
    if signed_at is None or abs(request.received_at - signed_at) > TIMESTAMP_TOLERANCE:
        raise WebhookRejected("The message's Timestamp is outside the tolerance of an hour.")
    cert_url = message.get("SigningCertURL") or message.get("SigningCertUrl") or ""
    problem = aws_url_problem(str(cert_url), certificate=True)
    if problem:
        raise WebhookRejected(f"The signing certificate URL was refused: {problem}.")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("The signature is not base64.") from None
    if not signature:
        raise WebhookRejected("The message is not signed (no Signature).")
    public_key = signing_key(str(cert_url), settings)
    try:
        public_key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise WebhookRejected("The signature does not match the message and the SNS signing certificate.") from None
    return message


def parse_timestamp(value: str) -> float | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else None


def signing_key(url: str, settings: ProviderSettings) -> rsa.RSAPublicKey:
    """The RSA public key of the certificate at `url` (already vetted), from the cache or fetched."""
    now = time.time()
    with _cache_lock:
        cached = _cache.get(url)
        if cached and now - cached[1] < CERT_CACHE_SECONDS:
            _cache.move_to_end(url)
            return cached[0]
    try:
        pem = call("GET", url, timeout=settings.timeout, provider_label=LABEL).content
    except RetryLater as exc:
        raise WebhookRejected(f"The signing certificate could not be fetched for now: {exc.reason}", 503) from None
    except ProviderError as exc:
        raise WebhookRejected(f"The signing certificate could not be fetched: {exc.reason}") from None
    if len(pem) > MAX_CERT_BYTES:
        raise WebhookRejected("The signing certificate URL served something far too large for a certificate.")
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise WebhookRejected("The signing certificate URL did not serve a PEM certificate.") from None
    if certificate.not_valid_after_utc.timestamp() < now:
        raise WebhookRejected("The SNS signing certificate has expired.")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise WebhookRejected("The SNS signing certificate does not hold an RSA key.")
    with _cache_lock:
        _cache[url] = (public_key, now)
        _cache.move_to_end(url)
        while len(_cache) > CERT_CACHE_SIZE:
            _cache.popitem(last=False)
    return public_key


def confirm_subscription(subscribe_url: str, settings: ProviderSettings) -> None:
    """GET the SubscribeURL of a verified SubscriptionConfirmation (only on an SNS host of AWS)."""
    problem = aws_url_problem(subscribe_url, certificate=False)
    if problem:
        raise WebhookRejected(f"The subscription was not confirmed: its SubscribeURL was refused: {problem}.")
    try:
        call("GET", subscribe_url, timeout=settings.timeout, provider_label=LABEL)
    except RetryLater as exc:
        raise WebhookRejected(f"The subscription could not be confirmed for now: {exc.reason}", 503) from None
    except ProviderError as exc:
        raise WebhookRejected(f"The subscription could not be confirmed: {exc.reason}") from None


__all__ = ["aws_url_problem", "confirm_subscription", "parse_message", "string_to_sign", "verify"]
