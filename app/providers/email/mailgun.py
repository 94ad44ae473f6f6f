import hashlib
import hmac
import json
from email.utils import formataddr

from ..base import (
    Field,
    GiveUp,
    OutboundMessage,
    Provider,
    SendResult,
    StatusEvent,
    UseAnotherProvider,
    WebhookRejected,
)
from ..net import call, json_body
from . import SENDER_FIELDS

REGION_BASES = {"us": "MAILGUN_API_BASE", "eu": "MAILGUN_EU_API_BASE"}
MESSAGE_ID_VARIABLE = "switchboard_message_id"  # sent as v:switchboard_message_id, echoed under user-variables
TIMESTAMP_TOLERANCE = 300  # seconds; Mailgun recommends refusing old timestamps (its SDK allows 900)
# Mailgun event → our status (None: on the timeline only). "failed" depends on its severity.
EVENT_STATUS = {"accepted": None, "rejected": "failed", "delivered": "delivered", "opened": "opened",
                "clicked": "clicked", "unsubscribed": None, "complained": None, "stored": None}
EVENT_WORDS = {"accepted": "Accepted by Mailgun", "rejected": "Rejected by Mailgun", "delivered": "Delivered",
               "opened": "Opened", "clicked": "Link clicked", "unsubscribed": "Unsubscribed",
               "complained": "Marked as spam by the recipient", "stored": "Stored by Mailgun"}


class Mailgun(Provider):
    integration_type = "email"
    name = "mailgun"
    label = "Mailgun"
    receives_webhooks = True
    has_test_mode = True  # o:testmode=yes: Mailgun accepts the message and delivers nothing
    # Mailgun publishes no number ("reach out to support"); ten a second is a conservative start that
    # staff can raise on the integration.
    default_rate_limit = 10.0
    fields = SENDER_FIELDS + (
        Field("domain", "Sending domain", required=True, placeholder="mg.example.com",
              pattern=r"^(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$", pattern_message="Enter a domain such as mg.example.com."),
        Field("region", "Region", "choice", required=True, choices=(("us", "US"), ("eu", "EU")), default="us"),
        Field("api_key", "API key", "secret", required=True),
        Field("webhook_signing_key", "HTTP webhook signing key", "secret",
              help="From Mailgun → Sending → Webhooks → HTTP webhook signing key (not the API key). "
                   "Without it, delivery events are refused."),
    )

    def api_base(self, config) -> str:
        return self.settings.api_base(REGION_BASES.get(config.get("region") or "us", "MAILGUN_API_BASE"))

    def check(self, config, secrets):
        # GET /v3/domains/{domain} proves the key and that the domain is in this account and region,
        # without sending anything.
        domain, region = config["domain"], (config.get("region") or "us").upper()
        try:
            response = call("GET", f"{self.api_base(config)}/v3/domains/{domain}", timeout=self.settings.timeout,
                            provider_label=self.label, describe_error=mailgun_error,
                            auth=("api", secrets["api_key"]), headers={"Accept": "application/json"})
        except GiveUp as exc:
            if exc.http_status != 404:
                raise
            raise wrong_domain(domain, region) from None
        info = json_body(response, self.label).get("domain") or {}
        state = str(info.get("state") or "unknown").lower()
        if state == "disabled":
            raise UseAnotherProvider(f"Mailgun has disabled the domain {domain}; "
                                     "it cannot send until Mailgun enables it again.")
        sentence = f"API key accepted; the domain {domain} is in this account in the {region} region"
        if state == "active":
            sentence += " and verified"
        elif state == "unverified":
            sentence += ", but it is not verified yet: finish its DNS records in Mailgun before sending"
        else:
            sentence += f" (state: {state})"
        if info.get("type") == "sandbox":
            sentence += "; it is a sandbox domain, so it only sends to authorised recipients"
        return sentence + "."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        domain, region = config["domain"], (config.get("region") or "us").upper()
        data = {"from": formataddr((config.get("from_name") or "", config["from_email"])), "to": message.to,
                "subject": message.subject or "", f"v:{MESSAGE_ID_VARIABLE}": message.id}
        if message.body:
            data["text"] = message.body
        if message.html:
            data["html"] = message.html
        if config.get("reply_to"):
            data["h:Reply-To"] = config["reply_to"]
        if sandbox:
            data["o:testmode"] = "yes"
        try:
            response = call("POST", f"{self.api_base(config)}/v3/{domain}/messages", timeout=self.settings.timeout,
                            provider_label=self.label, describe_error=mailgun_error,
                            auth=("api", secrets["api_key"]), headers={"Accept": "application/json"}, data=data)
        except GiveUp as exc:
            if exc.http_status != 404:
                raise
            raise wrong_domain(domain, region) from None  # the account's problem, not the recipient's
        # {"id": "<2016...@mg.example.com>", "message": "Queued. Thank you."}; webhooks report the
        # id without its angle brackets, so it is kept that way.
        provider_id = str(json_body(response, self.label).get("id") or "").strip().strip("<>") or None
        return SendResult(provider_message_id=provider_id, sandboxed=sandbox)

    def verify_webhook(self, config, secrets, request):
        key = secrets.get("webhook_signing_key") or ""
        if not key:
            raise WebhookRejected("No Mailgun webhook signing key is configured for this integration.")
        signature = signature_block(request.body)
        timestamp, token, given = (str(signature.get(k) or "") for k in ("timestamp", "token", "signature"))
        if not (timestamp and token and given):
            raise WebhookRejected("The request is not signed (signature timestamp, token or signature missing).")
        if not timestamp.isdigit() or abs(request.received_at - int(timestamp)) > TIMESTAMP_TOLERANCE:
            raise WebhookRejected("The signature's timestamp is outside the five-minute tolerance.")
        if not hmac.compare_digest(sign(key, timestamp, token), given.lower()):
            raise WebhookRejected("The signature does not match the webhook signing key.")

    def webhook_dedup_key(self, request):
        # Mailgun's own event id names the event across its retries; the token names one delivery.
        body = json.loads(request.body)  # verify_webhook already read it as a JSON object
        event = body.get("event-data") if isinstance(body.get("event-data"), dict) else {}
        if event.get("id"):
            return f"event:{event['id']}"
        return f"token:{body['signature']['token']}"

    def parse_webhook(self, config, request):
        try:
            body = json.loads(request.body)
        except ValueError:
            raise WebhookRejected("The body is not JSON.", 400) from None
        event = body.get("event-data") if isinstance(body, dict) else None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise WebhookRejected("The body has no event-data with an event name.", 400)
        kind = event["event"]
        status = EVENT_STATUS.get(kind)
        if kind == "failed":
            status = "bounced" if event.get("severity") == "permanent" else None
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
        variables = event.get("user-variables") if isinstance(event.get("user-variables"), dict) else {}
        provider_id = str(headers.get("message-id") or "").strip().strip("<>") or None
        timestamp = event.get("timestamp")
        token = (body.get("signature") or {}).get("token") if isinstance(body.get("signature"), dict) else None
        return [StatusEvent(
            dedup_key=str(event.get("id") or f"{provider_id}:{kind}:{timestamp}:{token}"),
            status=status, description=describe_event(event), provider_message_id=provider_id,
            message_id=str(variables[MESSAGE_ID_VARIABLE]) if variables.get(MESSAGE_ID_VARIABLE) else None,
            occurred_at=float(timestamp) if isinstance(timestamp, (int, float)) else None,
            data={k: event[k] for k in ("event", "severity", "reason", "recipient", "url") if k in event})]


def signature_block(body: bytes) -> dict:
    """The {"timestamp", "token", "signature"} object of a JSON webhook body, or WebhookRejected."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected("The body is not JSON, so it carries no Mailgun signature.", 400) from None
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        raise WebhookRejected("The request is not signed (no signature object in the body).")
    return signature


def sign(key: str, timestamp: str, token: str) -> str:
    """Mailgun's webhook signature: hex HMAC-SHA256 of timestamp + token with the webhook signing key."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def describe_event(event: dict) -> str:
    kind = event["event"]
    if kind == "failed":
        words = "Bounced" if event.get("severity") == "permanent" else "Delivery failed for now; Mailgun will retry"
    else:
        words = EVENT_WORDS.get(kind, kind.replace("-", " ").capitalize())
    status = event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
    detail = " ".join(str(part) for part in (status.get("code") if kind == "failed" else None,
                                             status.get("description") or status.get("message")) if part)
    if not detail and kind in ("failed", "rejected"):
        detail = str(event.get("reason") or (event.get("reject") or {}).get("reason") or "")
    if kind == "clicked" and event.get("url"):
        detail = str(event["url"])
    return f"{words}: {detail}" if detail and kind != "delivered" else words


def wrong_domain(domain: str, region: str) -> UseAnotherProvider:
    return UseAnotherProvider(f"The domain {domain} is not in this Mailgun account in the {region} region: "
                              "check the domain name and the region.", http_status=404)


def mailgun_error(response) -> str:
    """Mailgun errors: {"message": "..."}, or a plain-text body such as "Forbidden"."""
    return str(response.json().get("message") or "")
