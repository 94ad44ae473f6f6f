import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..base import (
    Field,
    OutboundMessage,
    Provider,
    ProviderError,
    SendResult,
    StatusEvent,
    UseAnotherProvider,
    WebhookRejected,
)
from ..net import call, json_body
from . import SENDER_FIELDS

MESSAGE_ID_PARAM = "m"  # our message id, in the status callback URL's query (signed by V3)

# Status callback `Status` → our status (None: timeline only).
STATUS = {"queued": None, "sent": "sent", "delivered": "delivered", "undelivered": "failed", "failed": "failed",
          "rejected": "failed", "read": "read"}
STATUS_WORDS = {"queued": "Queued at Plivo", "sent": "Sent to the carrier", "delivered": "Delivered",
                "undelivered": "Not delivered", "failed": "Failed", "rejected": "Rejected by Plivo", "read": "Read"}
ERROR_WORDS = {
    "10": "the message is invalid", "20": "a network error", "30": "the carrier detected spam",
    "40": "the source number is invalid", "50": "the destination number is invalid", "60": "a loop was detected",
    "70": "the destination is permanently unavailable", "80": "the destination is temporarily unavailable",
    "90": "no route is available", "100": "the carrier prohibited it", "110": "the message is too long",
    "150": "the number is deactivated", "200": "the recipient replied STOP to this sender",
    "300": "Plivo failed to dispatch it", "420": "it expired before delivery",
    "450": "the destination country is disabled",
    "900": "the account has insufficient credit", "910": "the account is disabled",
    "950": "the daily messaging limit was reached", "1000": "an unknown error",
}


class Plivo(Provider):
    integration_type = "sms"
    name = "plivo"
    label = "Plivo"
    receives_webhooks = True
    webhook_headers = ("x-plivo-signature-v3", "x-plivo-signature-v3-nonce", "x-plivo-signature-ma-v3", "x-plivo-signature-v2", "x-plivo-signature-v2-nonce")
    default_rate_limit = 5.0  # Plivo queues messages per sender; five API requests a second is a safe default
    fields = SENDER_FIELDS + (
        Field("auth_id", "Auth ID", required=True, pattern=r"^[A-Z0-9]{20}$",
              pattern_message="A Plivo Auth ID is 20 capital letters and digits."),
        Field("auth_token", "Auth token", "secret", required=True,
              help="Also verifies Plivo's status callbacks (X-Plivo-Signature-V3, or V2)."),
    )

    def check(self, config, secrets):
        # Fetching the account proves the Auth ID and token without sending anything.
        auth_id = config["auth_id"]
        response = call("GET", f"{self.settings.api_base('PLIVO_API_BASE')}/v1/Account/{auth_id}/",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=plivo_error,
                        auth=(auth_id, secrets["auth_token"]), headers={"Accept": "application/json"})
        account = json_body(response, self.label)
        name = account.get("name") or auth_id
        try:
            credits = f"; cash credits {float(account['cash_credits']):.2f}"
        except (KeyError, TypeError, ValueError):
            credits = ""
        return f"Account \u201c{name}\u201d accepted{credits}."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        auth_id = config["auth_id"]
        payload = {"src": config["from_phone_number"].lstrip("+"), "dst": message.to.lstrip("+"),
                   "text": message.body or "", "type": "sms"}
        if message.status_callback_url:
            joiner = "&" if "?" in message.status_callback_url else "?"
            payload.update(url=f"{message.status_callback_url}{joiner}{MESSAGE_ID_PARAM}={message.id}", method="POST")
        try:
            response = call("POST", f"{self.settings.api_base('PLIVO_API_BASE')}/v1/Account/{auth_id}/Message/",
                            timeout=self.settings.timeout, provider_label=self.label, describe_error=plivo_error,
                            auth=(auth_id, secrets["auth_token"]), headers={"Accept": "application/json"},
                            json=payload)
        except ProviderError as exc:
            if exc.http_status in (402, 404):  # no credit, or an unknown Auth ID: another integration may send
                raise UseAnotherProvider(exc.reason, http_status=exc.http_status) from None
            raise
        try:  # Plivo took the message: even an unreadable answer must not lead to a second send
            uuids = response.json().get("message_uuid")
        except (ValueError, AttributeError):
            uuids = None
        first = uuids[0] if isinstance(uuids, list) and uuids else uuids
        return SendResult(provider_message_id=first if isinstance(first, str) and first else None)

    def verify_webhook(self, config, secrets, request):
        token = secrets.get("auth_token")
        if not token:
            raise WebhookRejected("No auth token is configured for this integration.")
        v3 = request.header("X-Plivo-Signature-V3") or request.header("X-Plivo-Signature-Ma-V3")
        v3_nonce = request.header("X-Plivo-Signature-V3-Nonce")
        v2 = request.header("X-Plivo-Signature-V2") or request.header("X-Plivo-Signature-Ma-V2")
        v2_nonce = request.header("X-Plivo-Signature-V2-Nonce")
        if not (v3 and v3_nonce) and not (v2 and v2_nonce):
            raise WebhookRejected("The request is not signed (X-Plivo-Signature-V3 or -V2 and its nonce missing).")
        if not request.form:
            raise WebhookRejected("The body is not form-encoded.", 400)
        if v3 and v3_nonce:
            headers = (request.header("X-Plivo-Signature-V3"), request.header("X-Plivo-Signature-Ma-V3"))
            given = {part.strip() for header in headers for part in header.split(",") if part.strip()}
            expected = signature_v3(token, request.url, v3_nonce, request.form)
            if not any(hmac.compare_digest(expected, s) for s in given):
                raise WebhookRejected("The V3 signature does not match the URL and parameters.")
        else:
            given = {s.strip() for s in (request.header("X-Plivo-Signature-V2"),
                                         request.header("X-Plivo-Signature-Ma-V2")) if s.strip()}
            expected = signature_v2(token, request.url, v2_nonce)
            if not any(hmac.compare_digest(expected, s) for s in given):
                raise WebhookRejected("The V2 signature does not match the URL.")
        fields = dict(request.form)
        if not fields.get("MessageUUID") or not fields.get("Status"):
            raise WebhookRejected("This is not a message status callback (MessageUUID or Status missing).", 400)

    def webhook_dedup_key(self, request):
        fields = dict(request.form)
        if request.header("X-Plivo-Signature-V3-Nonce") and fields.get("MessageUUID") and fields.get("Status"):
            return f"{fields['MessageUUID']}:{fields['Status']}"
        nonce = request.header("X-Plivo-Signature-V2-Nonce")
        if nonce:
            # V2 signs the URL and the nonce, not the parameters: each nonce is accepted once, so a captured
            # signature cannot carry other parameters. Plivo's own retries still apply once (per-event keys).
            return f"v2-nonce:{nonce}"
        return super().webhook_dedup_key(request)

    def parse_webhook(self, config, request):
        fields = dict(request.form)
        uuid, status = fields.get("MessageUUID"), fields.get("Status")
        if not uuid or not status:
            raise WebhookRejected("This is not a message status callback (MessageUUID or Status missing).", 400)
        if status == "received":
            return []  # an incoming message, not news about one we sent
        ours = dict(parse_qsl(urlsplit(request.url).query)).get(MESSAGE_ID_PARAM)
        words = STATUS_WORDS.get(status, status.capitalize())
        code = fields.get("ErrorCode")
        if code and code != "000" and code != "0":
            words += f": {ERROR_WORDS[code]} (Plivo error {code})" if code in ERROR_WORDS else f" (Plivo error {code})"
        return [StatusEvent(dedup_key=f"plivo:{uuid}:{status}", status=STATUS.get(status), description=words,
                            provider_message_id=uuid, message_id=ours or None,
                            data={k: fields[k] for k in ("Status", "ErrorCode", "To", "Units", "TotalAmount")
                                  if fields.get(k)})]


def _grouped(pairs) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped


def signature_v3(token: str, url: str, nonce: str, params) -> str:
    """X-Plivo-Signature-V3 of a POST: base64(HMAC-SHA256(token, URL without query + "?" + the URL's own query
    as sorted k=v joined by & (then "." when there are parameters too) + each parameter's name and value,
    names sorted, + "." + nonce))."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = _grouped(parse_qsl(parts.query, keep_blank_values=True))
    query_string = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    fields = _grouped(params)
    signed = base
    if query_string or fields:
        signed += "?" + query_string
    if query_string and fields:
        signed += "."
    signed += "".join(f"{k}{v}" for k in sorted(fields) for v in sorted(fields[k]))
    digest = hmac.new(token.encode(), f"{signed}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_v2(token: str, url: str, nonce: str) -> str:
    """X-Plivo-Signature-V2: base64(HMAC-SHA256(token, URL without its query + nonce))."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base64.b64encode(hmac.new(token.encode(), (base + nonce).encode(), hashlib.sha256).digest()).decode()


def plivo_error(response) -> str:
    """Plivo errors: {"api_id": "...", "error": "..."} (error may also be an object of messages)."""
    error = response.json().get("error")
    if isinstance(error, dict):
        return "; ".join(f"{k}: {v}" for k, v in error.items())
    return str(error or "")
