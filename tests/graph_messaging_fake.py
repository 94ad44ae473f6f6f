"""Meta's Graph API for the inbox, played by a real HTTP server on loopback (pytest-httpserver):
the Messenger/Instagram Send API and sender actions (Page token as access_token), profiles,
a Page's conversations with Graph's cursor paging, WhatsApp sends and read marks, media URLs and
downloads that need the Bearer token, media upload, message templates with paging, and Graph's
error envelope (131047, 190, rate limits). Also signs notifications the way Meta does."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from werkzeug import Request, Response

PAGE_ID, IG_ID, PHONE_ID, WABA_ID = "101112131415161", "17841400000000001", "106540352242922", "102290129340398"
PAGE_TOKEN, WA_TOKEN, EXPIRED_TOKEN = "EAAGpage", "EAAGwhatsapp", "EAAGexpired"
APP_ID, APP_SECRET = "1234567890123", "meta-app-secret-0123456789abcdef"
PSID, IGSID, WA_ID = "6543210987654321", "9876543210123456", "16505551234"


def ok(body: dict) -> Response:
    return Response(json.dumps(body), status=200, content_type="application/json")


def graph_error(message: str, code: int, *, status: int = 400, subcode: int | None = None,
                details: str | None = None) -> Response:
    error: dict = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return Response(json.dumps({"error": error}), status=status, content_type="application/json")


EXPIRED = graph_error("Error validating access token: Session has expired on Tuesday, 01-Apr-25 10:00:00 PDT.",
                      190, subcode=463)
REENGAGEMENT = graph_error("(#131047) Re-engagement message", 131047,
                           details="Message failed to send because more than 24 hours have passed since the "
                                   "customer last replied to this number.")
BUSY = graph_error("(#130429) Rate limit hit", 130429, details="Cloud API message throughput has been reached.")


def sign(body: bytes, secret: str = APP_SECRET) -> dict:
    return {"Content-Type": "application/json",
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


@dataclass
class Sent:
    method: str
    path: str  # without the version
    args: dict
    headers: dict
    body: dict | None
    files: dict


@dataclass
class GraphMessagingFake:
    version: str
    base_url: str  # the server's root, without a trailing slash
    profiles: dict[str, dict] = field(default_factory=lambda: {
        PSID: {"first_name": "Jane", "last_name": "Doe", "name": "Jane Doe", "profile_pic": "https://x/p.jpg",
               "id": PSID},
        IGSID: {"name": "Ivy Grant", "username": "ivy.grant", "id": IGSID}})
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # WhatsApp media id → (bytes, mime type)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # public CDN files (Messenger attachments)
    templates: list[dict] = field(default_factory=list)
    conversations: dict[str, list[dict]] = field(default_factory=dict)  # platform → conversations, newest first
    failures: dict[str, list[Response]] = field(default_factory=dict)  # recipient or media id → answers to give first
    requests: list[Sent] = field(default_factory=list)
    uploads: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    page_size: int = 2  # Graph may return fewer than `limit`: small pages make every list page through
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    # -- what tests look at ----------------------------------------------------------------------

    def sent(self, path_suffix: str = "messages", method: str = "POST") -> list[Sent]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def fail(self, key: str, *answers: Response) -> None:
        self.failures.setdefault(key, []).extend(answers)

    def cdn_url(self, name: str, data: bytes, mime_type: str) -> str:
        self.files[name] = (data, mime_type)
        return f"{self.base_url}/cdn/{name}?oh=signature"

    # -- the server ------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        body = None
        if request.mimetype == "application/json":
            body = json.loads(request.get_data() or b"null")
        path = request.path.removeprefix(f"/{self.version}/").strip("/")
        self.requests.append(Sent(request.method, path, request.args.to_dict(), dict(request.headers), body,
                                  {k: (f.filename, f.read(), f.mimetype) for k, f in request.files.items()}))
        if request.path.startswith("/cdn/"):
            name = request.path.removeprefix("/cdn/")
            if name in self.failures and self.failures[name]:
                return self.failures[name].pop(0)
            if name not in self.files:
                return Response("gone", status=404)
            data, mime = self.files[name]
            return Response(data, content_type=mime)
        if request.path.startswith("/wa-files/"):
            return self.whatsapp_download(request)
        if path == "me/messages":
            return self.messenger(request, body)
        if re.fullmatch(rf"{PHONE_ID}/messages", path):
            return self.whatsapp_send(request, body)
        if path == f"{PHONE_ID}/media":
            return self.whatsapp_upload(request)
        if path == f"{WABA_ID}/message_templates":
            if self.bearer(request) != WA_TOKEN:
                return EXPIRED
            return ok(self.paged(request, path, self.templates))
        if path == f"{PAGE_ID}/conversations":
            if request.args.get("access_token") != PAGE_TOKEN:
                return EXPIRED
            return ok(self.paged(request, path, self.conversations.get(request.args.get("platform"), [])))
        if path in self.media:
            if self.bearer(request) != WA_TOKEN:
                return EXPIRED
            data, mime = self.media[path]
            return ok({"messaging_product": "whatsapp", "url": f"{self.base_url}/wa-files/{path}?ext=1",
                       "mime_type": mime, "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data),
                       "id": path})
        if path in self.profiles:
            if request.args.get("access_token") != PAGE_TOKEN:
                return EXPIRED
            wanted = request.args.get("fields", "").split(",")
            return ok({k: v for k, v in self.profiles[path].items() if k in wanted or k == "id"})
        return graph_error(f"Unsupported get request. Object with ID '{path}' does not exist, cannot be loaded due "
                           "to missing permissions, or does not support this operation.", 100, subcode=33)

    @staticmethod
    def bearer(request: Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    def messenger(self, request: Request, body: dict) -> Response:
        if request.args.get("access_token") == EXPIRED_TOKEN:
            return EXPIRED
        if request.args.get("access_token") != PAGE_TOKEN:
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        recipient = body["recipient"]["id"]
        if self.failures.get(recipient):
            return self.failures[recipient].pop(0)
        if "sender_action" in body:
            return ok({"recipient_id": recipient})
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return graph_error("(#100) Param messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG", 100)
        if body["messaging_type"] == "MESSAGE_TAG" and body.get("tag") != "HUMAN_AGENT":
            return graph_error("(#100) Param tag is required with MESSAGE_TAG", 100)
        return ok({"recipient_id": recipient, "message_id": f"m_sent{next(self.counter)}"})

    def whatsapp_send(self, request: Request, body: dict) -> Response:
        if self.bearer(request) != WA_TOKEN:
            return EXPIRED
        if body.get("status") == "read":
            return ok({"success": True})
        to = body["to"]
        if self.failures.get(to):
            return self.failures[to].pop(0)
        return ok({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                   "messages": [{"id": f"wamid.SENT{next(self.counter)}"}]})

    def whatsapp_upload(self, request: Request) -> Response:
        if self.bearer(request) != WA_TOKEN:
            return EXPIRED
        upload = request.files.get("file")
        if upload is None or request.form.get("messaging_product") != "whatsapp":
            return graph_error("(#100) The parameter file is required.", 100)
        media_id = f"upl{next(self.counter)}"
        self.uploads[media_id] = (self.requests[-1].files["file"][1], upload.mimetype, request.form.get("type"))
        return ok({"id": media_id})

    def whatsapp_download(self, request: Request) -> Response:
        media_id = request.path.removeprefix("/wa-files/")
        if self.bearer(request) != WA_TOKEN:
            return Response("Unauthorized", status=401)
        if self.failures.get(media_id):
            return self.failures[media_id].pop(0)
        data, mime = self.media[media_id]
        return Response(data, content_type=mime)

    def paged(self, request: Request, path: str, items: list[dict]) -> dict:
        """Graph's cursor paging: an opaque `after` cursor; `next` only while more remain."""
        start = int(request.args["after"].removeprefix("cursor-")) if request.args.get("after") else 0
        size = min(int(request.args.get("limit", 25)), self.page_size)
        page = items[start:start + size]
        body: dict = {"data": page}
        if page:
            body["paging"] = {"cursors": {"before": f"cursor-{start}", "after": f"cursor-{start + len(page)}"}}
            if start + len(page) < len(items):
                query = {**request.args.to_dict(), "after": f"cursor-{start + len(page)}"}
                body["paging"]["next"] = f"{self.base_url}/{self.version}/{path}?{urlencode(query)}"
        return body


# -- notifications as Meta posts them ----------------------------------------------------------------

def page_notification(*messaging: dict, page_id: str = PAGE_ID, obj: str = "page", time_ms: int | None = None) -> bytes:
    entry = {"id": page_id, "time": time_ms or (messaging[0].get("timestamp") if messaging else 0), "messaging": list(messaging)}
    return json.dumps({"object": obj, "entry": [entry]}).encode()


def messenger_item(text: str | None = None, *, mid: str, sender: str = PSID, recipient: str = PAGE_ID,
                   timestamp_ms: int, **message) -> dict:
    body = {"mid": mid, **message}
    if text is not None:
        body["text"] = text
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": timestamp_ms, "message": body}


def whatsapp_notification(*, messages: list[dict] = (), statuses: list[dict] = (), name: str = "Jane Doe",
                          wa_id: str = WA_ID, phone_id: str = PHONE_ID) -> bytes:
    value: dict = {"messaging_product": "whatsapp",
                   "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_id}}
    if messages:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": wa_id}]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}).encode()


def wa_message(kind: str, content: dict | None = None, *, wamid: str, timestamp: int, sender: str = WA_ID,
               **extra) -> dict:
    message = {"from": sender, "id": wamid, "timestamp": str(timestamp), "type": kind, **extra}
    if content is not None:
        message[kind] = content
    return message


def wa_status(wamid: str, status: str, *, timestamp: int, errors: list | None = None, reference: str | None = None,
              recipient: str = WA_ID) -> dict:
    item = {"id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": recipient}
    if errors:
        item["errors"] = errors
    if reference:
        item["biz_opaque_callback_data"] = reference
    return item


# -- the app side: connected accounts, as the meta-connect branch will create them ------------------

@dataclass
class Accounts:
    organization_id: int
    meta_app_id: int
    public_id: str
    verify_token: str
    messenger_id: int
    instagram_id: int
    whatsapp_id: int

    @property
    def path(self) -> str:
        return f"/api/webhooks/meta/{self.public_id}/"


def connect_accounts(organization_id: int, *, app_secret: str = APP_SECRET, page_id: str = PAGE_ID,
                     ig_id: str = IG_ID, phone_id: str = PHONE_ID) -> Accounts:
    """A Meta app with its secret, and a Page, an Instagram account and a WhatsApp number connected."""
    from app.crypto import vault
    from app.extensions import db
    from app.models import MetaApp
    from app.services import integrations as svc

    meta_app = MetaApp(organization_id=organization_id, app_id=APP_ID,
                       secrets_ciphertext=vault().encrypt_json({"app_secret": app_secret}))
    db.session.add(meta_app)
    made = {}
    for key, kind, name, external_id, config, secrets in (
            ("messenger", "facebook", "Acme Page", page_id, {"app_id": APP_ID, "page_id": page_id},
             {"page_access_token": PAGE_TOKEN}),
            ("instagram", "instagram", "@acme", ig_id, {"instagram_account_id": ig_id, "page_id": page_id},
             {"page_access_token": PAGE_TOKEN}),
            ("whatsapp", "whatsapp", "Acme WhatsApp", phone_id,
             {"phone_number_id": phone_id, "business_account_id": WABA_ID}, {"access_token": WA_TOKEN})):
        integration, errors = svc.create_integration(organization_id, None, kind, name, None)
        assert not errors, errors
        integration.external_id, integration.status = external_id, "active"
        integration.config = {**(integration.config or {}), **config}
        svc.store_secrets(integration, secrets)
        made[key] = integration
    db.session.commit()
    return Accounts(organization_id, meta_app.id, meta_app.public_id, meta_app.verify_token,
                    made["messenger"].id, made["instagram"].id, made["whatsapp"].id)


# -- fixtures (imported by the tests/test_inbox*.py modules) ------------------------------------------

import pytest  # noqa: E402


@pytest.fixture
def graph(app, monkeypatch, httpserver, tmp_path):
    """The fake Graph API, and media kept in a folder of this test."""
    from tests.conftest import point_at

    fake = GraphMessagingFake(app.config["META_API_VERSION"], httpserver.url_for("/").rstrip("/"))
    httpserver.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", httpserver.url_for("/"))
    monkeypatch.setitem(app.config, "MEDIA_STORAGE_URL", f"file://{tmp_path / 'media'}")
    app.extensions.pop("media_storage", None)
    yield fake
    app.extensions.pop("media_storage", None)
    httpserver.check_assertions()


@pytest.fixture
def accounts(app, admin) -> Accounts:
    return connect_accounts(admin.organization_id)


def post(app, accounts: Accounts, body: bytes, headers: dict | None = None, secret: str = APP_SECRET):
    return app.test_client().post(accounts.path, data=body, headers=sign(body, secret) if headers is None else headers)
