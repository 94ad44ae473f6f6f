import base64
import binascii
import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..base import (
    Field,
    OutboundMessage,
    Provider,
    SendResult,
    StatusEvent,
    UseAnotherProvider,
    WebhookRejected,
)
from ..net import call, json_body
from . import SENDER_FIELDS

TIMESTAMP_TOLERANCE = 300  # SendGrid documents none; five minutes is the common window
# SendGrid event → our status (None: recorded on the timeline, no status change).
EVENT_STATUS = {"processed": None, "deferred": None, "delivered": "delivered", "open": "opened", "click": "clicked",
                "bounce": "bounced", "dropped": "failed", "spamreport": None, "unsubscribe": None,
                "group_unsubscribe": None, "group_resubscribe": None}
MESSAGE_ID_ARG = "switchboard_message_id"


class SendGrid(Provider):
    integration_type = "email"
    name = "sendgrid"
    label = "SendGrid"
    receives_webhooks = True
    webhook_headers = ("x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp")
    has_test_mode = True
    default_rate_limit = 100.0  # mail/send takes up to 3,000 requests a second; stay well below
    fields = SENDER_FIELDS + (
        Field("api_key", "API key", "secret", required=True, help="Needs the Mail Send permission."),
        Field("webhook_verification_key", "Event Webhook verification key", pattern=r"^[A-Za-z0-9+/=\s]{40,400}$",
              pattern_message="Paste the verification key from Mail Settings → Signed Event Webhook.",
              help="From Mail Settings → Event Webhook → Signature verification. Without it, events are refused."),
    )

    def _headers(self, secrets):
        return {"Authorization": f"Bearer {secrets['api_key']}", "Accept": "application/json"}

    def check(self, config, secrets):
        # GET /v3/scopes proves the key and shows its permissions without sending anything.
        response = call("GET", f"{self.settings.api_base('SENDGRID_API_BASE')}/v3/scopes", timeout=self.settings.timeout,
                        provider_label=self.label, describe_error=sendgrid_error, headers=self._headers(secrets))
        scopes = json_body(response, self.label).get("scopes") or []
        if "mail.send" not in scopes:
            raise UseAnotherProvider("The SendGrid API key is valid but lacks the Mail Send permission.")
        return f"API key accepted with {len(scopes)} permissions, including Mail Send."

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        sender = {"email": config["from_email"]}
        if config.get("from_name"):
            sender["name"] = config["from_name"]
        content = [{"type": "text/plain", "value": message.body}] if message.body else []
        if message.html:
            content.append({"type": "text/html", "value": message.html})
        payload = {
            "personalizations": [{"to": [{"email": message.to}], "custom_args": {MESSAGE_ID_ARG: message.id}}],
            "from": sender, "subject": message.subject, "content": content,
        }
        if config.get("reply_to"):
            payload["reply_to"] = {"email": config["reply_to"]}
        if sandbox:
            payload["mail_settings"] = {"sandbox_mode": {"enable": True}}
        response = call("POST", f"{self.settings.api_base('SENDGRID_API_BASE')}/v3/mail/send",
                        timeout=self.settings.timeout, provider_label=self.label, describe_error=sendgrid_error,
                        headers=self._headers(secrets), json=payload)
        # 202 carries the id in X-Message-Id; the sandbox answers 200 and delivers nothing.
        return SendResult(provider_message_id=response.headers.get("X-Message-Id"), sandboxed=sandbox)

    def verify_webhook(self, config, secrets, request):
        key_text = "".join((config.get("webhook_verification_key") or "").split())
        if not key_text:
            raise WebhookRejected("No Event Webhook verification key is configured for this integration.")
        signature = request.header("X-Twilio-Email-Event-Webhook-Signature")
        timestamp = request.header("X-Twilio-Email-Event-Webhook-Timestamp")
        if not signature or not timestamp:
            raise WebhookRejected("The request is not signed (Signed Event Webhook headers missing).")
        if not timestamp.isdigit() or abs(request.received_at - int(timestamp)) > TIMESTAMP_TOLERANCE:
            raise WebhookRejected("The signature's timestamp is outside the five-minute tolerance.")
        try:
            public_key = load_der_public_key(base64.b64decode(key_text))
            public_key.verify(base64.b64decode(signature), timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError, TypeError, binascii.Error):
            raise WebhookRejected("The signature does not match the body.") from None

    def parse_webhook(self, config, request):
        try:
            events = json.loads(request.body)
        except ValueError:
            raise WebhookRejected("The body is not JSON.", 400) from None
        if not isinstance(events, list):
            raise WebhookRejected("The body is not a list of events.", 400)
        parsed = []
        for event in events:
            if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                continue
            kind = event["event"]
            provider_id = str(event.get("sg_message_id") or "").split(".")[0] or None
            parsed.append(StatusEvent(
                dedup_key=str(event.get("sg_event_id") or f"{provider_id}:{kind}:{event.get('timestamp')}"),
                status=EVENT_STATUS.get(kind), description=describe_event(event),
                provider_message_id=provider_id, message_id=event.get(MESSAGE_ID_ARG),
                occurred_at=event.get("timestamp") if isinstance(event.get("timestamp"), (int, float)) else None,
                data={k: event[k] for k in ("event", "reason", "response", "type", "url") if k in event}))
        return parsed


def describe_event(event: dict) -> str:
    kind = event["event"]
    words = {"processed": "Accepted by SendGrid", "deferred": "Delivery deferred", "delivered": "Delivered",
             "open": "Opened", "click": "Link clicked", "bounce": "Bounced", "dropped": "Dropped by SendGrid",
             "spamreport": "Reported as spam", "unsubscribe": "Unsubscribed"}.get(kind, kind.replace("_", " ").capitalize())
    detail = event.get("reason") or event.get("response") or event.get("url")
    return f"{words}: {detail}" if detail else words


def sendgrid_error(response) -> str:
    """SendGrid errors: {"errors": [{"message": "...", "field": "..."}]}."""
    errors = response.json().get("errors") or []
    return "; ".join(e.get("message", "") for e in errors if isinstance(e, dict))
