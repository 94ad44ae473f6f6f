import hashlib
from posixpath import basename
from urllib.parse import unquote, urlsplit

from ..base import (
    Field,
    GiveUp,
    InboundWebhook,
    OutboundMessage,
    Provider,
    RetryLater,
    SendResult,
    StatusEvent,
    UseAnotherProvider,
    WebhookRejected,
)
from ..meta import answer_verification, graph_get, graph_post, next_cursor, verify_signature, whatsapp_error_words

DIGITS = r"^\d{5,20}$"
MAX_NUMBER_PAGES = 10  # 1,000 numbers; beyond that the check does not read the whole list
MAX_CAPTION = 1024  # WhatsApp's limit for a media caption
# Media by link: the message type follows the file's extension (types WhatsApp accepts for each);
# anything else goes as a document, which takes any file.
MEDIA_TYPES = {
    "image": {"jpg", "jpeg", "png"},
    "video": {"mp4", "3gp", "3gpp"},
    "audio": {"aac", "amr", "mp3", "m4a", "ogg", "opus"},
}
# Status webhook → our status (None: on the timeline only).
STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
STATUS_WORDS = {"sent": "Sent by WhatsApp", "delivered": "Delivered to the phone", "read": "Read by the recipient",
                "failed": "Failed", "played": "Voice message played", "deleted": "Deleted by the sender"}
# What a `messages` change may hold for its identity to be its statuses' and messages' ids.
IDENTIFIED = {"messaging_product", "metadata", "contacts", "statuses", "messages"}


class WhatsAppCloudAPI(Provider):
    integration_type = "whatsapp"
    name = "cloud_api"
    label = "WhatsApp Cloud API"
    receives_webhooks = True
    webhook_headers = ("x-hub-signature-256",)
    has_test_mode = False  # the Cloud API has none: sandboxed messages stop before the network call
    default_rate_limit = 80.0  # Cloud API throughput: 80 messages a second per business number
    fields = (
        Field("phone_number_id", "Phone number ID", required=True, pattern=DIGITS,
              pattern_message="The phone number ID is the number Meta shows under API Setup."),
        Field("business_account_id", "WhatsApp Business Account ID", required=True, pattern=DIGITS,
              pattern_message="The business account ID is a number."),
        Field("access_token", "Access token", "secret", required=True,
              help="A system user token with whatsapp_business_messaging."),
        Field("app_secret", "App secret", "secret", help="Used to verify the signature of Meta's webhooks."),
        Field("webhook_verify_token", "Webhook verify token", "generated",
              help="Paste this into the Meta App Dashboard with the webhook URL."),
    )

    def check(self, config, secrets):
        # Reading the phone number proves the token and shows the number; nothing is sent.
        auth = {"Authorization": f"Bearer {secrets['access_token']}"}
        number_id, waba_id = config["phone_number_id"], config["business_account_id"]
        number = graph_get(self.settings, number_id, provider_label=self.label, headers=auth,
                           params={"fields": "display_phone_number,verified_name,quality_rating"})
        shown = number.get("display_phone_number") or number_id
        name, quality = number.get("verified_name"), number.get("quality_rating")
        found = f"Access token accepted for {shown}" + (f" ({name})" if name else "") + \
            (f", quality rating {quality}" if quality else "")
        try:
            belongs = self._belongs_to(waba_id, number_id, auth)
        except UseAnotherProvider:  # the token may send without being allowed to list the account's numbers
            return f"{found}; the token may not list the numbers of business account {waba_id}, so that was not confirmed."
        if belongs is False:
            raise GiveUp(f"The phone number ID {number_id} is not one of the numbers of WhatsApp Business Account "
                         f"{waba_id}: check both IDs under API Setup in the Meta App Dashboard.")
        return f"{found}, in business account {waba_id}."

    def _belongs_to(self, waba_id, number_id, auth) -> bool | None:
        """Whether the number is one of the business account's; None when there are too many to read."""
        params = {"fields": "id", "limit": 100}
        for _ in range(MAX_NUMBER_PAGES):
            page = graph_get(self.settings, f"{waba_id}/phone_numbers", provider_label=self.label,
                             headers=auth, params=params)
            if any(isinstance(n, dict) and str(n.get("id")) == number_id for n in page.get("data") or []):
                return True
            after = next_cursor(page)
            if not after:
                return False
            params = {**params, "after": after}
        return None

    # --- sending ---------------------------------------------------------------------------

    def _auth(self, secrets):
        return {"Authorization": f"Bearer {secrets['access_token']}"}

    def send(self, config, secrets, message: OutboundMessage, *, sandbox):
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": wa_number(message.to),
                   **message_content(message), "biz_opaque_callback_data": message.id}
        answer = graph_post(self.settings, f"{config['phone_number_id']}/messages", payload,
                            provider_label=self.label, headers=self._auth(secrets))
        sent = answer.get("messages")
        wamid = sent[0].get("id") if isinstance(sent, list) and sent and isinstance(sent[0], dict) else None
        # Without an id the message is still accepted: its status webhooks find it by biz_opaque_callback_data.
        return SendResult(provider_message_id=str(wamid) if wamid else None)

    def mark_read(self, config, secrets, provider_message_id: str) -> None:
        """Mark a received message as read (blue ticks for the customer)."""
        answer = graph_post(self.settings, f"{config['phone_number_id']}/messages",
                            {"messaging_product": "whatsapp", "status": "read", "message_id": provider_message_id},
                            provider_label=self.label, headers=self._auth(secrets))
        if answer.get("success") is not True:
            raise RetryLater(f"{self.label} did not confirm that message {provider_message_id} was marked as read.")

    # --- webhooks ----------------------------------------------------------------------------

    def answer_webhook_get(self, config, secrets, request):
        """Meta's verification request when the callback URL is saved in the App Dashboard."""
        return answer_verification(request, config.get("webhook_verify_token"))

    def verify_webhook(self, config, secrets, request):
        verify_signature(request, secrets.get("app_secret"))
        changes(request)  # signed but unreadable: refused with 400 before it is stored

    def webhook_dedup_key(self, request):
        """What the delivery says, when it holds only statuses (wamid, status, timestamp) and customers'
        messages (wamid): Meta's retry of the same notification is stored once however it is serialised.
        Anything else is identified by its exact body."""
        try:
            said = delivery_items(changes(request))
        except WebhookRejected:
            said = None
        if not said:
            return super().webhook_dedup_key(request)
        return "whatsapp:" + hashlib.sha256("\n".join(said).encode()).hexdigest()

    def parse_webhook(self, config, request):
        events = []
        for change in changes(request):
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                continue  # template, quality and account updates change no message
            for status in value.get("statuses", []):  # checked by changes()
                events.append(status_event(status))
            # value.messages (what customers write) belong to the inbox; they change no message we sent.
        return events


def changes(request: InboundWebhook) -> list[dict]:
    """The changes of a WhatsApp Business Account notification, their statuses checked;
    WebhookRejected(..., 400) if it cannot be read. verify_webhook runs it, so what is stored parses."""
    return request.once(read_changes)


def read_changes(request: InboundWebhook) -> list[dict]:
    try:
        document = request.json_body
    except ValueError:
        raise WebhookRejected("The body is not JSON.", 400) from None
    if not isinstance(document, dict) or document.get("object") != "whatsapp_business_account":
        raise WebhookRejected('The body is not a notification of object "whatsapp_business_account".', 400)
    entries = document.get("entry")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise WebhookRejected("The notification has no list of entries.", 400)
    found = []
    for entry in entries:
        listed = entry.get("changes", [])
        if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
            raise WebhookRejected("An entry's changes are not a list of objects.", 400)
        for change in listed:
            value = change.get("value")
            if change.get("field") == "messages" and isinstance(value, dict):
                statuses = value.get("statuses", [])
                if not isinstance(statuses, list) or not all(readable_status(s) for s in statuses):
                    raise WebhookRejected("A status has no message id or no status.", 400)
        found.extend(listed)
    return found


def delivery_items(found: list[dict]) -> list[str] | None:
    """The sorted identities of the statuses and messages of a notification; None when it holds anything else."""
    items = []
    for change in found:
        value = change.get("value")
        if change.get("field") != "messages" or not isinstance(value, dict) or set(value) - IDENTIFIED:
            return None
        messages = value.get("messages", [])
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str)
                                                     for m in messages):
            return None
        items += [f"status:{s['id']}:{s['status']}:{s.get('timestamp')}" for s in value.get("statuses", [])]
        items += [f"message:{m['id']}" for m in messages]
    return sorted(items) or None


def readable_status(status) -> bool:
    return isinstance(status, dict) and isinstance(status.get("id"), str) and bool(status["id"]) \
        and isinstance(status.get("status"), str) and bool(status["status"])


def status_event(status) -> StatusEvent:
    wamid, kind = status["id"], status["status"]
    try:
        occurred_at = float(int(status.get("timestamp")))
    except (TypeError, ValueError):
        occurred_at = None
    words = STATUS_WORDS.get(kind, kind.replace("_", " ").capitalize())
    errors = [e for e in status.get("errors") or [] if isinstance(e, dict)]
    data = {"status": kind}
    if errors:
        words = f"{words}: {describe_error(errors[0])}"
        data["error_code"] = errors[0].get("code")
    if isinstance(status.get("recipient_id"), str):
        data["recipient_id"] = status["recipient_id"]
    pricing = status.get("pricing")
    if isinstance(pricing, dict) and pricing.get("category"):
        data["pricing_category"] = pricing["category"]
    ours = status.get("biz_opaque_callback_data")
    return StatusEvent(dedup_key=f"{wamid}:{kind}", status=STATUS.get(kind), description=words,
                       provider_message_id=wamid, message_id=ours if isinstance(ours, str) and ours else None,
                       occurred_at=occurred_at, data=data)


def describe_error(error: dict) -> str:
    """A failed status's error in plain words: ours for the code, then Meta's title, message and details."""
    code = error.get("code")
    try:
        known = whatsapp_error_words(int(code))
    except (TypeError, ValueError):
        known = None
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    meta = []
    for part in (error.get("title"), error.get("message"), details):
        part = str(part).strip() if part else ""
        if part and not any(part in m for m in meta):
            meta.append(part)
    said = ". ".join(p.rstrip(".") for p in meta)
    text = known[1] if known else (said or "no reason given")
    if known and said:
        text = f"{text}. Meta said: {said}"
    return f"{text} (WhatsApp error {code})" if code is not None else text


def wa_number(e164: str) -> str:
    """WhatsApp takes the number as digits with the country code, without "+"."""
    return e164.strip().lstrip("+")


def media_type(url: str) -> str:
    extension = basename(urlsplit(url).path).rpartition(".")[2].lower()
    return next((kind for kind, extensions in MEDIA_TYPES.items() if extension in extensions), "document")


def media_link(url: str, kind: str) -> dict:
    """Media by link; a document also gets its file name, which the recipient sees."""
    media = {"link": url}
    name = unquote(basename(urlsplit(url).path))
    if kind == "document" and name:
        media["filename"] = name[:240]
    return media


def message_content(message: OutboundMessage) -> dict:
    """The type and its object: a template, media by link (with the body as caption), or text."""
    if message.template:
        if message.body:
            raise GiveUp("A WhatsApp template message carries the template's own approved text: leave the body out, "
                         "or send it as a message of its own.")
        template = {"name": message.template["name"], "language": {"code": message.template.get("language") or "en_US"}}
        components = []
        if message.media_url:  # the media of a template's header
            kind = media_type(message.media_url)
            components.append({"type": "header", "parameters": [{"type": kind, kind: media_link(message.media_url, kind)}]})
        parameters = message.template.get("parameters") or []
        if parameters:
            components.append({"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in parameters]})
        if components:
            template["components"] = components
        return {"type": "template", "template": template}
    if message.media_url:
        kind = media_type(message.media_url)
        media = media_link(message.media_url, kind)
        if message.body:
            if kind == "audio":
                raise GiveUp("WhatsApp audio messages carry no caption: send the text as a message of its own.")
            if len(message.body) > MAX_CAPTION:
                raise GiveUp(f"A WhatsApp media caption takes at most {MAX_CAPTION:,} characters; this body has "
                             f"{len(message.body):,}.")
            media["caption"] = message.body
        return {"type": kind, kind: media}
    if not message.body:
        raise GiveUp("A WhatsApp message needs a body, a template or a media_url.")
    return {"type": "text", "text": {"preview_url": False, "body": message.body}}
