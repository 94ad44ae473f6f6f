import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..base import (
    Field,
    GiveUp,
    OutboundMessage,
    Provider,
    ProviderError,
    RetryLater,
    SendResult,
    StatusEvent,
    UseAnotherProvider,
    WebhookRejected,
)
from ..net import call, json_body
from . import SENDER_FIELDS

MESSAGE_ID_PARAM = "m"  # our message id, in the StatusCallback URL's query (Twilio signs the whole URL)

# Twilio error codes of a send (JSON "code") that say more than the HTTP status.
RECIPIENT_CODES = frozenset({  # the recipient or the content is wrong: no retry, no failover
    21211, 21214, 21217, 21401, 21407, 21602, 21610, 21612, 21614, 21617, 21619, 21620, 21623, 21635,
})
ACCOUNT_CODES = frozenset({  # our sender or account cannot send: another integration may
    20003, 20005, 20404, 21212, 21408, 21606, 21608, 21659, 21660, 30002, 30032, 30034,
})
BUSY_CODES = frozenset({20429, 14107, 21611, 30001})  # too many requests or queued messages: later

# MessageStatus of a status callback → our status (None: on the timeline, no change).
STATUS = {"accepted": None, "scheduled": None, "queued": None, "sending": None, "sent": "sent",
          "delivered": "delivered", "undelivered": "failed", "failed": "failed", "read": "read",
          "canceled": "failed", "partially_delivered": None}
STATUS_WORDS = {"accepted": "Accepted by Twilio", "scheduled": "Scheduled by Twilio", "queued": "Queued at Twilio",
                "sending": "Being sent by Twilio", "sent": "Sent to the carrier", "delivered": "Delivered",
                "undelivered": "Not delivered", "failed": "Failed", "read": "Read", "canceled": "Canceled",
                "partially_delivered": "Partly delivered"}
# Delivery error codes (ErrorCode) in plain words.
ERROR_WORDS = {
    30001: "Twilio's queue for this sender overflowed", 30002: "the Twilio account is suspended",
    30003: "the handset is unreachable (switched off or out of coverage)",
    30004: "the message was blocked (the recipient blocked it or its carrier does not take it)",
    30005: "the number is unknown or no longer exists",
    30006: "the number is a landline or its carrier cannot take SMS",
    30007: "the carrier filtered the message as spam or against its rules", 30008: "an unknown error at the carrier",
    30009: "a part of the message went missing", 30010: "the price exceeded the maximum price",
    30022: "the sender exceeded its 10DLC rate limit", 30032: "the toll-free number is not verified",
    30034: "the sender is not registered for A2P 10DLC", 21610: "the recipient unsubscribed (replied STOP)",
    21211: "the 'To' number is not valid", 21614: "the 'To' number is not a mobile number",
}


class Twilio(Provider):
    integration_type = "sms"
    name = "twilio"
    label = "Twilio"
    receives_webhooks = True
    webhook_headers = ("x-twilio-signature",)
    # A US/Canada long code sends one segment a second (toll-free 3, short code 100); Twilio queues any excess.
    default_rate_limit = 1.0
    fields = SENDER_FIELDS + (
        Field("account_sid", "Account SID", required=True, pattern=r"^AC[0-9a-fA-F]{32}$",
              pattern_message="An Account SID is AC followed by 32 hexadecimal characters."),
        Field("auth_token", "Auth token", "secret", required=True,
              help="Also verifies Twilio's status callbacks (X-Twilio-Signature)."),
    )

    def check(self, config, secrets):
        # Fetching the account proves the SID and token and shows whether the account may send.
        sid = config["account_sid"]
        response = call("GET", f"{self.settings.api_base('TWILIO_API_BASE')}/2010-04-01/Accounts/{sid}.json",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=twilio_error,
                        auth=(sid, secrets["auth_token"]), headers={"Accept": "application/json"})
        account = json_body(response, self.label)
        name, status = account.get("friendly_name") or sid, str(account.get("status") or "unknown")
        if status != "active":
            raise UseAnotherProvider(f"The Twilio account \u201c{name}\u201d is {status}, so it cannot send messages: "
                                     "reactivate it in the Twilio Console.")
        trial = " It is a trial account: it can only send to verified numbers." if account.get("type") == "Trial" else ""
        return f"Account \u201c{name}\u201d is active.{trial}"

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        sid = config["account_sid"]
        form = {"To": message.to, "From": config["from_phone_number"], "Body": message.body or ""}
        if message.status_callback_url:
            joiner = "&" if "?" in message.status_callback_url else "?"
            form["StatusCallback"] = f"{message.status_callback_url}{joiner}{MESSAGE_ID_PARAM}={message.id}"
        codes: list = []

        def describe(response):
            codes.append(response.json().get("code"))
            return twilio_error(response)

        url = f"{self.settings.api_base('TWILIO_API_BASE')}/2010-04-01/Accounts/{sid}/Messages.json"
        try:
            response = call("POST", url, timeout=self.settings.timeout, provider_label=self.label, describe_error=describe,
                            auth=(sid, secrets["auth_token"]), headers={"Accept": "application/json"}, data=form)
        except ProviderError as exc:
            raise classify(exc, codes[0] if codes else None) from None
        # Twilio took the message: even an unreadable answer must not lead to a second send.
        return SendResult(provider_message_id=answer_field(response, "sid"))

    def verify_webhook(self, config, secrets, request):
        token = secrets.get("auth_token")
        if not token:
            raise WebhookRejected("No auth token is configured for this integration.")
        signature = request.header("X-Twilio-Signature")
        if not signature:
            raise WebhookRejected("The request is not signed (X-Twilio-Signature missing).")
        query = dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))
        if "bodySHA256" in query:  # JSON-body webhooks: the URL is signed, the body hash is in it
            if not hmac.compare_digest(hashlib.sha256(request.body).hexdigest(), query["bodySHA256"].lower()):
                raise WebhookRejected("The body does not match its signed hash (bodySHA256).")
            params: tuple = ()
        elif request.form:
            params = request.form
        else:
            raise WebhookRejected("The body is not form-encoded.", 400)
        if not any(hmac.compare_digest(twilio_signature(token, url, params), signature)
                   for url in url_variants(request.url)):
            raise WebhookRejected("The signature does not match the URL and parameters.")
        fields = dict(request.form)
        if not fields.get("MessageSid") or not (fields.get("MessageStatus") or fields.get("SmsStatus")):
            raise WebhookRejected("This is not a message status callback (MessageSid or MessageStatus missing).", 400)

    def webhook_dedup_key(self, request):
        fields = dict(request.form)
        status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if fields.get("MessageSid") and status:
            return f"{fields['MessageSid']}:{status}"
        return super().webhook_dedup_key(request)

    def parse_webhook(self, config, request):
        fields = dict(request.form)
        sid, status = fields.get("MessageSid"), fields.get("MessageStatus") or fields.get("SmsStatus")
        if not sid or not status:
            raise WebhookRejected("This is not a message status callback (MessageSid or MessageStatus missing).", 400)
        if status in ("received", "receiving"):
            return []  # an incoming message, not news about one we sent
        ours = dict(parse_qsl(urlsplit(request.url).query)).get(MESSAGE_ID_PARAM)
        words = STATUS_WORDS.get(status, status.replace("_", " ").capitalize())
        code = fields.get("ErrorCode")
        if code and code != "0":
            reason = ERROR_WORDS.get(int(code)) if code.isdigit() else None
            words += f": {reason} (Twilio error {code})" if reason else f" (Twilio error {code})"
        return [StatusEvent(dedup_key=f"twilio:{sid}:{status}", status=STATUS.get(status), description=words,
                            provider_message_id=sid, message_id=ours or None,
                            data={k: fields[k] for k in ("MessageStatus", "ErrorCode", "To", "RawDlrDoneDate")
                                  if fields.get(k)})]


def answer_field(response, name: str):
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def twilio_signature(token: str, url: str, params) -> str:
    """base64(HMAC-SHA1(auth token, URL + each parameter name and value, names sorted))."""
    values: dict[str, set] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, and with its default port added or removed (Twilio may sign either)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.username or default is None:
        return [url]
    if parts.port is None:
        other = urlunsplit(parts._replace(netloc=f"{host}:{default}"))
    elif parts.port == default:
        other = urlunsplit(parts._replace(netloc=host))
    else:
        return [url]
    return [url, other]


def classify(exc: ProviderError, code) -> ProviderError:
    """Re-type a send error by Twilio's own error code where it says more than the HTTP status."""
    try:
        code = int(code)
    except (TypeError, ValueError):
        code = None
    kind = type(exc)
    if code in RECIPIENT_CODES:
        kind = GiveUp
    elif code in ACCOUNT_CODES or exc.http_status == 404:
        kind = UseAnotherProvider  # a wrong sender, account or region permission: another integration may send
    elif code in BUSY_CODES:
        kind = RetryLater
    return exc if kind is type(exc) else kind(exc.reason, retry_after=exc.retry_after, http_status=exc.http_status)


def twilio_error(response) -> str:
    """Twilio errors: {"code", "message", "more_info", "status"}, or RFC 9457 {"title", "detail", "code"}."""
    body = response.json()
    words = [str(body[k]).strip() for k in ("message", "title", "detail") if body.get(k)]
    text = ": ".join(dict.fromkeys(words))
    return f"{text} (Twilio error {body['code']})" if body.get("code") and text else text
