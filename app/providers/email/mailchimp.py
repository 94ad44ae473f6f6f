import base64
import hashlib
import hmac
import json

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
from ..net import call
from . import SENDER_FIELDS

# Mandrill answers errors with HTTP 500 (historically all of them) and
# {"status": "error", "code": ..., "name": ..., "message": ...}: the name, not the status, says whether a retry helps.
MANDRILL_BAD_KEY = {"Invalid_Key"}
MANDRILL_ACCOUNT_PROBLEMS = {"PaymentRequired", "Unknown_Subaccount", "PoorReputation"}
MANDRILL_TRANSIENT = {"GeneralError", "ServiceUnavailable"}
METADATA_KEY = "switchboard_message_id"  # message.metadata, echoed in webhooks as msg.metadata
# Mandrill signs its "does this URL work?" POST (mandrill_events=[]) with this published key.
TEST_WEBHOOK_KEY = "test-webhook"
# Why Mandrill refused a recipient (reject_reason), in words.
REJECT_REASONS = {
    "hard-bounce": "the address bounced before and is on the rejection list",
    "soft-bounce": "the address soft-bounced repeatedly and is on the rejection list for now",
    "spam": "the recipient marked earlier mail as spam",
    "unsub": "the recipient unsubscribed",
    "custom": "the address is on the account's custom rejection list",
    "invalid-sender": "the sender address is not valid",
    "invalid": "the address is not valid",
    "test-mode-limit": "the account is in test mode and has reached its limit",
    "unsigned": "the sending domain is not verified (unsigned)",
    "rule": "a sending rule blocked it",
}
# Reasons that are the account's problem, not the recipient's: another provider may well send it.
ACCOUNT_REJECT_REASONS = {"invalid-sender", "test-mode-limit", "unsigned"}
# Mandrill event → our status (None: recorded on the timeline, no status change).
EVENT_STATUS = {"send": "sent", "deferral": None, "hard_bounce": "bounced", "soft_bounce": None, "open": "opened",
                "click": "clicked", "spam": None, "unsub": None, "reject": "failed"}
EVENT_WORDS = {"send": "Sent by Mailchimp Transactional", "deferral": "Delivery deferred", "hard_bounce": "Bounced",
               "soft_bounce": "Soft bounce; Mailchimp Transactional will retry", "open": "Opened",
               "click": "Link clicked", "spam": "Marked as spam by the recipient", "unsub": "Unsubscribed",
               "reject": "Rejected by Mailchimp Transactional"}


class MailchimpTransactional(Provider):
    integration_type = "email"
    name = "mailchimp"
    label = "Mailchimp Transactional (Mandrill)"
    receives_webhooks = True
    webhook_headers = ("x-mandrill-signature",)
    has_test_mode = False  # test API keys exist, but as separate keys, not a per-message switch
    # Mandrill meters by hourly quota rather than a per-second limit; ten a second stays well inside a new
    # account's quota and staff can raise it.
    default_rate_limit = 10.0
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", "secret", required=True),
        Field("webhook_key", "Webhook key", "secret",
              help="From Settings → Webhooks: each webhook has its own key. Without it, events are refused."),
    )

    def post(self, path: str, payload: dict):
        """One Mandrill API call (all are POST with the key in the JSON body), errors typed by their name."""
        error = {}

        def describe(response) -> str:
            body = response.json()
            if isinstance(body, dict) and body.get("status") == "error" and body.get("name"):
                error.update(name=str(body["name"]), message=str(body.get("message") or ""))
            return error.get("message", "")

        try:
            return call("POST", f"{self.settings.api_base('MANDRILL_API_BASE')}{path}", timeout=self.settings.timeout,
                        provider_label=self.label, describe_error=describe, json=payload)
        except ProviderError as exc:
            if not error:
                raise
            raise mandrill_error(error["name"], error["message"], exc) from None

    def check(self, config, secrets):
        # users/ping proves the key without sending anything; Mandrill answers the JSON string "PONG!".
        response = self.post("/users/ping", {"key": secrets["api_key"]})
        try:
            answer = response.json()
        except ValueError:
            answer = response.text.strip()
        if answer != "PONG!":
            raise RetryLater(f"{self.label} answered the ping with something unexpected.")
        return "API key accepted: Mailchimp Transactional answered the ping."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        body = {"subject": message.subject or "", "from_email": config["from_email"],
                "to": [{"email": message.to, "type": "to"}], "metadata": {METADATA_KEY: message.id}}
        if config.get("from_name"):
            body["from_name"] = config["from_name"]
        if message.body:
            body["text"] = message.body
        if message.html:
            body["html"] = message.html
        if config.get("reply_to"):
            body["headers"] = {"Reply-To": config["reply_to"]}
        response = self.post("/messages/send.json", {"key": secrets["api_key"], "message": body})
        try:
            results = response.json()
        except ValueError:
            raise RetryLater(f"{self.label} answered with something that is not JSON.") from None
        # One result per recipient: [{"email", "status", "reject_reason", "queued_reason", "_id"}].
        result = next((r for r in results if isinstance(r, dict)), None) if isinstance(results, list) else None
        if result is None:
            raise RetryLater(f"{self.label} answered with an unexpected JSON shape.")
        status = str(result.get("status") or "")
        if status in ("rejected", "invalid"):
            reason = str(result.get("reject_reason") or ("invalid" if status == "invalid" else ""))
            words = REJECT_REASONS.get(reason, reason or "no reason given")
            verb = "rejected" if status == "rejected" else "refused as invalid"
            what = (f"{self.label} {verb} the message to {result.get('email') or message.to}: {words}"
                    + (f" ({reason})." if reason in REJECT_REASONS else "."))
            raise (UseAnotherProvider if reason in ACCOUNT_REJECT_REASONS else GiveUp)(what)
        if status not in ("sent", "queued", "scheduled"):
            raise RetryLater(f"{self.label} answered with an unknown status {status!r}.")
        return SendResult(provider_message_id=str(result["_id"]) if result.get("_id") else None)

    def answer_webhook_get(self, config, secrets, request):
        return ""  # Mandrill checks a new webhook URL with HEAD (Flask answers it as GET): 200, empty

    def verify_webhook(self, config, secrets, request):
        given = request.header("X-Mandrill-Signature")
        if not given:
            raise WebhookRejected("The request is not signed (X-Mandrill-Signature missing).")
        if not any(name == "mandrill_events" for name, _ in request.form):
            raise WebhookRejected("The body has no mandrill_events field.", 400)
        key = secrets.get("webhook_key") or ""
        if key and hmac.compare_digest(sign(key, request.url, request.form), given):
            return
        # Mandrill's own "does this URL work?" POST: an empty batch signed with its published test key.
        if request.form == (("mandrill_events", "[]"),) and hmac.compare_digest(
                sign(TEST_WEBHOOK_KEY, request.url, request.form), given):
            return
        if not key:
            raise WebhookRejected("No Mailchimp Transactional webhook key is configured for this integration.")
        raise WebhookRejected("The signature does not match the webhook key and this address.")

    def parse_webhook(self, config, request):
        raw = next((value for name, value in request.form if name == "mandrill_events"), None)
        try:
            events = json.loads(raw) if raw is not None else None
        except ValueError:
            raise WebhookRejected("mandrill_events is not JSON.", 400) from None
        if not isinstance(events, list):
            raise WebhookRejected("mandrill_events is not a list of events.", 400)
        parsed = []
        for event in events:
            # Sync events (whitelist/blacklist changes) carry "type" instead of "event"; inbound mail is not ours.
            if not isinstance(event, dict) or event.get("event") not in EVENT_STATUS:
                continue
            kind = event["event"]
            msg = event.get("msg") if isinstance(event.get("msg"), dict) else {}
            metadata = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
            provider_id = str(event.get("_id") or msg.get("_id") or "") or None
            ts = event.get("ts")
            parsed.append(StatusEvent(
                dedup_key=f"{provider_id}:{kind}:{ts}", status=EVENT_STATUS[kind], description=describe_event(event),
                provider_message_id=provider_id,
                message_id=str(metadata[METADATA_KEY]) if metadata.get(METADATA_KEY) else None,
                occurred_at=float(ts) if isinstance(ts, (int, float)) else None,
                data={"event": kind, **({"url": event["url"]} if event.get("url") else {}),
                      **({"bounce_description": msg["bounce_description"]} if msg.get("bounce_description") else {})}))
        return parsed


def sign(key: str, url: str, form) -> str:
    """X-Mandrill-Signature: base64 HMAC-SHA1 of the webhook URL followed by each POST field's name and
    value, sorted by name."""
    signed = url + "".join(name + value for name, value in sorted(form, key=lambda pair: pair[0]))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def describe_event(event: dict) -> str:
    kind = event["event"]
    words = EVENT_WORDS[kind]
    msg = event.get("msg") if isinstance(event.get("msg"), dict) else {}
    if kind == "click" and event.get("url"):
        return f"{words}: {event['url']}"
    detail = msg.get("diag") or msg.get("bounce_description") if kind in ("hard_bounce", "soft_bounce", "reject",
                                                                          "deferral") else None
    return f"{words}: {detail}" if detail else words


def mandrill_error(name: str, message: str, exc: ProviderError) -> ProviderError:
    """The typed error for one of Mandrill's named errors."""
    label = MailchimpTransactional.label
    detail = f": {message}" if message else "."
    status = exc.http_status
    if name in MANDRILL_BAD_KEY:
        return UseAnotherProvider(f"{label} refused the API key (bad credentials){detail}", http_status=status)
    if name in MANDRILL_ACCOUNT_PROBLEMS:
        return UseAnotherProvider(f"{label} cannot serve this account ({name}){detail}", http_status=status)
    if name in MANDRILL_TRANSIENT or status == 429:
        return RetryLater(f"{label} had a temporary problem ({name}){detail}", retry_after=exc.retry_after,
                          http_status=status)
    return GiveUp(f"{label} rejected the request ({name}){detail}", http_status=status)
