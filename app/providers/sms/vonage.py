import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime

from ..base import (
    Field,
    GiveUp,
    OutboundMessage,
    Provider,
    RetryLater,
    SendResult,
    StatusEvent,
    UseAnotherProvider,
    WebhookRejected,
)
from ..net import call, json_body
from . import SENDER_FIELDS

TIMESTAMP_TOLERANCE = 300  # Vonage recommends refusing signed webhooks older than five minutes
MAX_CALLBACK_URL = 100  # the SMS API refuses longer `callback` URLs
SIGNATURE_METHODS = (("md5hash", "MD5 hash (Vonage's default)"), ("md5", "MD5 HMAC"), ("sha1", "SHA-1 HMAC"),
                     ("sha256", "SHA-256 HMAC"), ("sha512", "SHA-512 HMAC"))

# SMS API `messages[].status` codes other than "0": what to do, in plain words.
SEND_STATUS = {
    "1": (RetryLater, "throttled: the account sent faster than its limit"),
    "2": (GiveUp, "missing parameters"),
    "3": (GiveUp, "invalid parameters"),
    "4": (UseAnotherProvider, "invalid credentials (bad credentials)"),
    "5": (RetryLater, "internal error at Vonage"),
    "6": (GiveUp, "invalid message: Vonage could not route it to the recipient's network"),
    "7": (GiveUp, "the number is barred"),
    "8": (UseAnotherProvider, "the account is barred"),
    "9": (UseAnotherProvider, "partner quota violation: the account has no credit left"),
    "10": (RetryLater, "too many existing binds"),
    "11": (UseAnotherProvider, "the account is not enabled for the HTTP API"),
    "12": (GiveUp, "the message is too long"),
    "14": (UseAnotherProvider, "invalid signature on the request"),
    "15": (UseAnotherProvider, "invalid sender address: the From number is not usable with this account"),
    "22": (GiveUp, "invalid network code"),
    "23": (UseAnotherProvider, "invalid callback URL"),
    "29": (UseAnotherProvider, "non-whitelisted destination: a trial account sends only to its test numbers"),
    "32": (UseAnotherProvider, "signature and API secret disallowed for this account"),
    "33": (GiveUp, "the number is de-activated"),
}

# Delivery receipt `status` (SMS API) and Messages API status → our status (None: timeline only).
DLR_STATUS = {"delivered": "delivered", "expired": "failed", "failed": "failed", "rejected": "failed",
              "accepted": "sent", "buffered": None, "unknown": None,
              # Messages API status webhooks
              "submitted": "sent", "undeliverable": "failed", "read": "read"}
DLR_WORDS = {"delivered": "Delivered", "expired": "Expired before it could be delivered", "failed": "Failed",
             "rejected": "Rejected", "accepted": "Accepted by the carrier", "buffered": "Buffered by the carrier",
             "unknown": "Status unknown", "submitted": "Submitted to the carrier", "undeliverable": "Undeliverable",
             "read": "Read"}
DLR_ERRORS = {
    "1": "unknown error", "2": "the recipient is temporarily absent", "3": "the recipient is permanently absent",
    "4": "calls barred by the recipient", "5": "a number portability error", "6": "rejected as spam",
    "7": "the handset is busy", "8": "a network error", "9": "an illegal number", "10": "an illegal message",
    "11": "the number is unroutable", "12": "the destination is unreachable", "13": "a subscriber age restriction",
    "14": "the carrier blocked the number", "15": "the prepaid recipient has no funds",
    "16": "a gateway quota was exceeded",
    "50": "the entity filter", "51": "the header filter", "52": "the content filter", "53": "the consent filter",
    "54": "a regulation error", "99": "a general error",
}
# GSM 03.38 basic and extension characters; anything else needs type=unicode.
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
           "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€\f")


class Vonage(Provider):
    integration_type = "sms"
    name = "vonage"
    label = "Vonage (Nexmo)"
    receives_webhooks = True
    get_delivers_events = True  # receipts by GET are a dashboard choice; they are verified the same way
    default_rate_limit = 30.0  # the SMS API's default throughput: 30 requests a second per account
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", required=True, pattern=r"^[A-Za-z0-9]{4,32}$",
              pattern_message="A Vonage API key is letters and digits."),
        Field("api_secret", "API secret", "secret", required=True),
        Field("signature_secret", "Signature secret", "secret",
              help="From Dashboard → API settings → Signature secret. Verifies delivery receipts (signed webhooks "
                   "must be on; any webhook format: POST-JSON, POST or GET). Without it, receipts are refused."),
        Field("signature_method", "Signature method", "choice", required=True, choices=SIGNATURE_METHODS,
              default="md5hash", help="As chosen under Dashboard → API settings → Signature method."),
    )

    def check(self, config, secrets):
        # The account balance proves the key and secret; Basic auth keeps the secret out of the URL.
        response = call("GET", f"{self.settings.api_base('VONAGE_API_BASE')}/account/get-balance",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=vonage_error,
                        auth=(config["api_key"], secrets["api_secret"]), headers={"Accept": "application/json"})
        body = json_body(response, self.label)
        try:
            balance = f"{float(body['value']):.2f} EUR"
        except (KeyError, TypeError, ValueError):
            balance = "not reported"
        reload = ", with auto-reload" if body.get("autoReload") else ""
        return f"API key {config['api_key']} accepted; balance {balance}{reload}."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        text = message.body or ""
        form = {"api_key": config["api_key"], "api_secret": secrets["api_secret"],
                "from": config["from_phone_number"].lstrip("+"), "to": message.to.lstrip("+"), "text": text,
                "type": "text" if set(text) <= GSM7 else "unicode", "client-ref": message.id}
        if message.status_callback_url and len(message.status_callback_url) <= MAX_CALLBACK_URL:
            form["callback"] = message.status_callback_url
        response = call("POST", f"{self.settings.api_base('VONAGE_API_BASE')}/sms/json",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=vonage_error,
                        headers={"Accept": "application/json"}, data=form)
        parts = json_body(response, self.label).get("messages")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            raise RetryLater("Vonage answered without the status of the message.")
        accepted = [p for p in parts if str(p.get("status")) == "0"]
        if accepted:  # a long text is sent in parts; once one is on its way, sending again would duplicate it
            return SendResult(provider_message_id=accepted[0].get("message-id"))
        code = str(parts[0].get("status"))
        kind, words = SEND_STATUS.get(code, (GiveUp, "refused"))
        detail = str(parts[0].get("error-text") or "").strip()
        raise kind(f"Vonage refused the message (status {code}): {words}" + (f" ({detail})." if detail else "."))

    def verify_webhook(self, config, secrets, request):
        secret = secrets.get("signature_secret")
        if not secret:
            raise WebhookRejected("No signature secret is configured for this integration.")
        authorization = request.header("Authorization")
        if authorization.startswith("Bearer "):  # Messages API signed webhooks: a JWT signed with the secret
            verify_jwt(secret, authorization[7:].strip(), request.body, request.received_at)
            params = webhook_params(request)
        else:
            params = webhook_params(request)
            signature = params.get("sig")
            if not isinstance(signature, str) or not signature:
                raise WebhookRejected("The request is not signed (no sig parameter and no Authorization token).")
            timestamp = str(params.get("timestamp") or "")
            if not timestamp.isdigit() or abs(request.received_at - int(timestamp)) > TIMESTAMP_TOLERANCE:
                raise WebhookRejected("The signature's timestamp is outside the five-minute tolerance.")
            method = config.get("signature_method")
            expected = sign_params(params, secret, method if method in dict(SIGNATURE_METHODS) else "md5hash")
            if not hmac.compare_digest(expected, signature.lower()):
                raise WebhookRejected("The signature does not match the parameters.")
        if not receipt_id(params) or not params.get("status"):
            raise WebhookRejected("This is not a delivery receipt (messageId or status missing).", 400)

    def webhook_dedup_key(self, request):
        try:
            params = webhook_params(request)
        except WebhookRejected:
            return super().webhook_dedup_key(request)
        return f"{receipt_id(params)}:{params.get('status')}:{params.get('err-code', '')}"

    def parse_webhook(self, config, request):
        params = webhook_params(request)
        provider_id, status = receipt_id(params), str(params.get("status") or "")
        if not provider_id or not status:
            raise WebhookRejected("This is not a delivery receipt (messageId or status missing).", 400)
        words = DLR_WORDS.get(status, status.capitalize())
        code = str(params.get("err-code") or "")
        if code and code != "0":
            words += f": {DLR_ERRORS[code]} (Vonage error {code})" if code in DLR_ERRORS else f" (Vonage error {code})"
        error = params.get("error")
        if isinstance(error, dict) and (error.get("title") or error.get("detail")):
            words += ": " + ": ".join(str(error[k]) for k in ("title", "detail") if error.get(k))
        ours = params.get("client-ref") or params.get("client_ref")
        return [StatusEvent(dedup_key=f"vonage:{provider_id}:{status}", status=DLR_STATUS.get(status),
                            description=words, provider_message_id=provider_id,
                            message_id=ours if isinstance(ours, str) and ours else None,
                            occurred_at=receipt_time(params),
                            data={k: params[k] for k in ("status", "err-code", "price", "network-code", "scts")
                                  if params.get(k) not in (None, "")})]


def webhook_params(request) -> dict:
    """The receipt's fields: the form of a POST, or the object of a POST-JSON."""
    if request.form:
        return dict(request.form)
    if "json" in request.header("Content-Type") or request.body.lstrip()[:1] == b"{":
        try:
            data = json.loads(request.body)
        except ValueError:
            raise WebhookRejected("The body is not valid JSON.", 400) from None
        if not isinstance(data, dict):
            raise WebhookRejected("The body is not a JSON object.", 400)
        return data
    raise WebhookRejected("The body is neither form-encoded nor JSON.", 400)


def receipt_id(params: dict) -> str | None:
    value = params.get("messageId") or params.get("message-id") or params.get("message_uuid")
    return value if isinstance(value, str) and value else None


def receipt_time(params: dict) -> float | None:
    """message-timestamp "YYYY-MM-DD HH:MM:SS" (UTC) of a receipt, or the ISO timestamp of a Messages API status."""
    for name, pattern in (("message-timestamp", "%Y-%m-%d %H:%M:%S"), ("timestamp", None)):
        value = params.get(name)
        if not isinstance(value, str) or not value:
            continue
        try:
            if pattern:
                return datetime.strptime(value, pattern).replace(tzinfo=UTC).timestamp()
            if not value.isdigit():
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            continue
    return None


def sign_params(params: dict, secret: str, method: str) -> str:
    """Vonage's `sig`: every parameter but sig, sorted by name, as "&name=value" with & and = in values
    replaced by _; then md5(that + secret) ("MD5 hash") or the HMAC with the secret, in lower-case hex."""
    hasher = hashlib.md5() if method == "md5hash" else hmac.new(secret.encode(), digestmod=method)
    for name in sorted(params):
        if name == "sig":
            continue
        value = params[name]
        value = value.replace("&", "_").replace("=", "_") if isinstance(value, str) else value
        hasher.update(f"&{name}={value}".encode())
    if method == "md5hash":
        hasher.update(secret.encode())
    return hasher.hexdigest()


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(secret: str, token: str, body: bytes, now: float) -> dict:
    """An HS256 JWT signed with the signature secret, fresh (iat), whose payload_hash is the body's SHA-256."""
    try:
        header_part, claims_part, signature_part = token.split(".")
        header, claims = json.loads(_b64url(header_part)), json.loads(_b64url(claims_part))
        signature = _b64url(signature_part)
    except (ValueError, binascii.Error):
        raise WebhookRejected("The Authorization token is not a JWT.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "HS256":
        raise WebhookRejected("The Authorization token is not an HS256 JWT.")
    expected = hmac.new(secret.encode(), f"{header_part}.{claims_part}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise WebhookRejected("The token's signature does not match.")
    issued = claims.get("iat")
    if not isinstance(issued, (int, float)) or isinstance(issued, bool) or abs(now - issued) > TIMESTAMP_TOLERANCE:
        raise WebhookRejected("The token was issued outside the five-minute tolerance.")
    expires = claims.get("exp")
    if isinstance(expires, (int, float)) and now > expires + TIMESTAMP_TOLERANCE:
        raise WebhookRejected("The token has expired.")
    payload_hash = claims.get("payload_hash")
    if not isinstance(payload_hash, str) or \
            not hmac.compare_digest(hashlib.sha256(body).hexdigest(), payload_hash.lower()):
        raise WebhookRejected("The body does not match the token's payload_hash.")
    return claims


def vonage_error(response) -> str:
    """Vonage errors: {"error-code", "error-code-label"} (account API) or RFC 7807 {"title", "detail"}."""
    body = response.json()
    words = [str(body[k]).strip() for k in ("error-code-label", "title", "detail", "error_title") if body.get(k)]
    return ": ".join(dict.fromkeys(words))
