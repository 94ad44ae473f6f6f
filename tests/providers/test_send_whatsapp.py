"""WhatsApp Cloud API sends and status webhooks, with real parts: a Graph API on loopback
(pytest-httpserver) speaking Meta's wire format, the JSON API, a real RQ worker, and webhooks
signed with X-Hub-Signature-256 posted to the integration's public address."""
import hashlib
import hmac
import json
import time

import pytest
from sqlalchemy import func, select
from werkzeug import Response

from app.extensions import db
from app.models import MessageEvent, WebhookEvent
from app.providers.whatsapp.cloud_api import WhatsAppCloudAPI
from app.queue import task_queue
from app.services.integrations import provider_settings
from tests.conftest import point_at
from tests.providers.checks import json_response

PHONE_ID, WABA_ID, UNKNOWN_PHONE_ID = "106540352242922", "102290129340398", "100000000000001"
WA_TOKEN, EXPIRED_TOKEN = "EAAGwhatsapp", "EAAGexpired"
APP_SECRET = "whatsapp-app-secret-0123456789"
TO, UNDELIVERABLE, BUSY, OUTSIDE_WINDOW = "+16505551234", "+16505550126", "+12025550123", "+14155550100"
REFUSED_PARAMETER, UNREADABLE_ANSWER = "+4915112345678", "+33612345678"
PUBLIC_BASE = "https://switchboard.example.com"

# Vector V1 of the provider reference (vectors.json): Meta's X-Hub-Signature-256 over an inbound message.
V1_SECRET = "test_app_secret_0123456789abcdef"
V1_BODY = (b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
           b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":'
           b'"106540352242922"},"contacts":[{"profile":{"name":"Jane Doe"},"wa_id":"16505551234"}],"messages":'
           b'[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",'
           b'"timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},'
           b'"field":"messages"}]}]}')
V1_SIGNATURE = "sha256=e8c45ea7c88325b52ac9eeed3eeefcb76a9acee46ff73ea986346b85af72bc57"


# --- a Graph API on loopback ------------------------------------------------------------------

def whatsapp_error(code, message, details, status=400):
    return json_response({"error": {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code,
                                    "error_data": {"messaging_product": "whatsapp", "details": details},
                                    "fbtrace_id": "AbCdEfGhIjK"}}, status)


def graph_messages(request):
    """POST /{version}/{phone_number_id}/messages as the Cloud API answers it."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if token == EXPIRED_TOKEN:
        return json_response({"error": {"message": "Error validating access token: Session has expired on Tuesday, "
                                        "01-Apr-25 10:00:00 PDT.", "type": "OAuthException", "code": 190,
                                        "error_subcode": 463, "fbtrace_id": "AbCdEfGhIjK"}}, 401)
    if token != WA_TOKEN:
        return json_response({"error": {"message": "Invalid OAuth access token - Cannot parse access token",
                                        "type": "OAuthException", "code": 190, "fbtrace_id": "AbCdEfGhIjK"}}, 401)
    body = request.get_json()
    if body.get("status") == "read":
        return json_response({"success": True})
    to = body["to"]
    if to == UNDELIVERABLE.lstrip("+"):
        return whatsapp_error(131026, "Message Undeliverable.", "Message Undeliverable.")
    if to == BUSY.lstrip("+"):
        return whatsapp_error(130429, "Rate limit hit", "Cloud API message throughput has been reached.")
    if to == OUTSIDE_WINDOW.lstrip("+"):
        return whatsapp_error(131047, "Re-engagement message", "Message failed to send because more than 24 hours "
                                                               "have passed since the customer last replied to this number.")
    if to == REFUSED_PARAMETER.lstrip("+"):
        return json_response({"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100,
                                        "error_data": {"messaging_product": "whatsapp",
                                                       "details": "Parameter 'to' is not a valid phone number"},
                                        "fbtrace_id": "AbCdEfGhIjK"}}, 400)
    if to == UNREADABLE_ANSWER.lstrip("+"):
        return Response("accepted", status=200, content_type="text/plain")
    wamid = "wamid.HBgL" + hashlib.sha256(body["biz_opaque_callback_data"].encode()).hexdigest()[:24].upper()
    return json_response({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                          "messages": [{"id": wamid}]})


def unknown_phone_number(request):
    return json_response({"error": {"message": f"Unsupported post request. Object with ID '{UNKNOWN_PHONE_ID}' does not "
                                    "exist, cannot be loaded due to missing permissions, or does not support this "
                                    "operation.", "type": "GraphMethodException", "code": 100, "error_subcode": 33,
                                    "fbtrace_id": "AbCdEfGhIjK"}}, 400)


@pytest.fixture
def graph(app, monkeypatch, httpserver):
    version = app.config["META_API_VERSION"]
    httpserver.expect_request(f"/{version}/{PHONE_ID}/messages", method="POST").respond_with_handler(graph_messages)
    httpserver.expect_request(f"/{version}/{UNKNOWN_PHONE_ID}/messages",
                              method="POST").respond_with_handler(unknown_phone_number)
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", httpserver.url_for("/"))
    yield httpserver
    httpserver.check_assertions()  # no request went anywhere else


def sent_requests(graph):
    """(path, Authorization, JSON body) of every request the fake received."""
    return [(r.path, r.headers.get("Authorization"), json.loads(r.get_data())) for r, _ in graph.log]


# --- driving the app ----------------------------------------------------------------------------

def configure(api, *, token=WA_TOKEN, app_secret=APP_SECRET, name="WA", phone_id=PHONE_ID):
    created = api.post("/api/integrations/", json={"integration_type": "whatsapp", "name": name,
                                                   "provider": "cloud_api"})
    assert created.status_code == 201, created.json
    fields = {"phone_number_id": phone_id, "business_account_id": WABA_ID, "access_token": token}
    if app_secret:
        fields["app_secret"] = app_secret
    r = api.post(f"/api/integrations/{created.json['id']}/configure/whatsapp/", json=fields)
    assert r.status_code == 200, r.json
    return api.get(f"/api/integrations/{created.json['id']}/").json


def send(api, run_jobs, integration, **fields):
    """POST /api/messages/, run the worker, return the message as the API shows it."""
    r = api.post("/api/messages/", json={"integration_id": integration["id"], "to": TO, **fields})
    assert r.status_code == 202, r.json
    run_jobs()
    return api.get(f"/api/messages/{r.json['id']}/").json


def kinds(message):
    return [e["kind"] for e in message["events"]]


# --- sending ------------------------------------------------------------------------------------

def test_text_message(app, api, graph, run_jobs):
    wa = configure(api)
    assert wa["rate_limit"] == 80.0 and wa["rate_limit_is_default"]
    message = send(api, run_jobs, wa, body="Your table is ready.")
    assert message["status"] == "sent" and message["attempts"] == 1 and message["last_error"] is None
    assert message["provider_message_id"].startswith("wamid.HBgL")
    assert kinds(message) == ["queued", "sending", "sent"]
    assert message["provider_message_id"] in message["events"][-1]["description"]
    [(path, auth, body)] = sent_requests(graph)
    assert path == f"/v25.0/{PHONE_ID}/messages" == f"/{app.config['META_API_VERSION']}/{PHONE_ID}/messages"
    assert auth == f"Bearer {WA_TOKEN}"
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
                    "type": "text", "text": {"preview_url": False, "body": "Your table is ready."},
                    "biz_opaque_callback_data": message["id"]}


def test_template_message(api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, template={"name": "appointment_reminder", "language": "en_US",
                                                "parameters": ["Jane", "10:00"]})
    assert message["status"] == "sent"
    [(_, _, body)] = sent_requests(graph)
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
                    "type": "template", "biz_opaque_callback_data": message["id"],
                    "template": {"name": "appointment_reminder", "language": {"code": "en_US"},
                                 "components": [{"type": "body", "parameters": [{"type": "text", "text": "Jane"},
                                                                                {"type": "text", "text": "10:00"}]}]}}


def test_template_with_header_media_and_without_parameters(api, graph, run_jobs):
    wa = configure(api)
    send(api, run_jobs, wa, template={"name": "new_menu", "language": "fr"},
         media_url="https://cdn.example.com/menu.png")
    send(api, run_jobs, wa, template={"name": "hello_world"})
    [(_, _, with_header), (_, _, plain)] = sent_requests(graph)
    assert with_header["template"] == {"name": "new_menu", "language": {"code": "fr"}, "components": [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/menu.png"}}]}]}
    assert plain["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


@pytest.mark.parametrize("url, kind, media", [
    ("https://cdn.example.com/photos/table.JPG", "image",
     {"link": "https://cdn.example.com/photos/table.JPG", "caption": "Your table"}),
    ("https://cdn.example.com/files/invoice%202024.pdf?sig=abc", "document",
     {"link": "https://cdn.example.com/files/invoice%202024.pdf?sig=abc", "filename": "invoice 2024.pdf",
      "caption": "Your table"}),
    ("https://cdn.example.com/clip.mp4", "video", {"link": "https://cdn.example.com/clip.mp4", "caption": "Your table"}),
    ("https://cdn.example.com/download", "document",
     {"link": "https://cdn.example.com/download", "filename": "download", "caption": "Your table"}),
])
def test_media_by_link(api, graph, run_jobs, url, kind, media):
    wa = configure(api)
    message = send(api, run_jobs, wa, body="Your table", media_url=url)
    assert message["status"] == "sent"
    [(_, _, body)] = sent_requests(graph)
    assert body == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234",
                    "type": kind, kind: media, "biz_opaque_callback_data": message["id"]}


def test_audio_takes_no_caption(api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, media_url="https://cdn.example.com/voice.ogg")
    assert message["status"] == "sent"
    assert sent_requests(graph)[0][2]["audio"] == {"link": "https://cdn.example.com/voice.ogg"}
    refused = send(api, run_jobs, wa, media_url="https://cdn.example.com/voice.ogg", body="Listen")
    assert refused["status"] == "failed" and "no caption" in refused["last_error"]
    assert len(graph.log) == 1  # refused before the network call


def test_template_without_a_name_is_refused(api, graph):
    wa = configure(api)
    r = api.post("/api/messages/", json={"integration_id": wa["id"], "to": TO,
                                         "template": {"language": "en_US", "parameters": ["Jane"]}})
    assert r.status_code == 400
    assert "A template needs a name." in r.json["errors"]["template"]
    assert graph.log == []


def test_undeliverable_number_fails_without_retry(api, graph, run_jobs):
    wa = configure(api)
    r = api.post("/api/messages/", json={"integration_id": wa["id"], "to": UNDELIVERABLE, "body": "Hi"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "failed" and message["attempts"] == 1
    assert "cannot deliver to this number" in message["last_error"] and "131026" in message["last_error"]
    assert "retry" not in kinds(message) and "failover" not in kinds(message)
    assert r.json["id"] not in task_queue().scheduled_job_registry.get_job_ids()
    assert len(graph.log) == 1
    assert api.get(f"/api/integrations/{wa['id']}/").json["last_error"] is None  # not the provider's fault


def test_outside_the_24_hour_window_says_to_use_a_template(api, graph, run_jobs):
    wa = configure(api)
    r = api.post("/api/messages/", json={"integration_id": wa["id"], "to": OUTSIDE_WINDOW, "body": "Hi again"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "failed"
    assert "More than 24 hours have passed" in message["last_error"] and "send a template instead" in message["last_error"]
    assert "131047" in message["last_error"]


def test_throughput_limit_is_retried_later(api, graph, run_jobs):
    wa = configure(api)
    r = api.post("/api/messages/", json={"integration_id": wa["id"], "to": BUSY, "body": "Hi"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "queued" and message["attempts"] == 1
    assert "throughput limit" in message["last_error"] and "130429" in message["last_error"]
    assert kinds(message)[-2:] == ["error", "retry"]
    assert r.json["id"] in task_queue().scheduled_job_registry.get_job_ids()  # RQ's backoff retry


def test_expired_token_fails_over_to_the_next_integration(api, graph, run_jobs):
    broken = configure(api, token=EXPIRED_TOKEN, name="WA old token")
    backup = configure(api, name="WA backup")
    assert api.put(f"/api/integrations/{broken['id']}/", json={"priority": 1}).status_code == 200
    assert api.put(f"/api/integrations/{backup['id']}/", json={"priority": 2}).status_code == 200
    r = api.post("/api/messages/", json={"channel": "whatsapp", "to": TO, "body": "Hi"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "sent" and message["integration_id"] == backup["id"]
    failover = next(e for e in message["events"] if e["kind"] == "failover")
    assert "access token has expired or is invalid: reconnect needed (the token has expired)" in failover["description"]
    assert "Moving to WA backup" in failover["description"]
    assert [auth for _, auth, _ in sent_requests(graph)] == [f"Bearer {EXPIRED_TOKEN}", f"Bearer {WA_TOKEN}"]
    assert "access token has expired" in api.get(f"/api/integrations/{broken['id']}/").json["last_error"]


def test_expired_token_alone_is_retried_with_words(api, graph, run_jobs):
    wa = configure(api, token=EXPIRED_TOKEN)
    message = send(api, run_jobs, wa, body="Hi")
    assert message["status"] == "queued"
    assert message["last_error"].startswith("The access token has expired or is invalid: reconnect needed")
    assert "Session has expired" in message["last_error"] and "Traceback" not in message["last_error"]


def test_invalid_parameter_fails_with_metas_words(api, graph, run_jobs):
    wa = configure(api)
    r = api.post("/api/messages/", json={"integration_id": wa["id"], "to": REFUSED_PARAMETER, "body": "Hi"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "failed" and "retry" not in kinds(message)
    assert "refused a parameter" in message["last_error"] and "Parameter 'to' is not a valid" in message["last_error"]


def test_unknown_phone_number_id_fails_over(api, graph, run_jobs):
    configure(api, phone_id=UNKNOWN_PHONE_ID, name="WA wrong number")
    configure(api, name="WA backup")
    r = api.post("/api/messages/", json={"channel": "whatsapp", "to": TO, "body": "Hi"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "sent"
    failover = next(e for e in message["events"] if e["kind"] == "failover")
    assert "does not know this ID" in failover["description"] and UNKNOWN_PHONE_ID in failover["description"]


def test_accepted_send_with_an_unreadable_answer_is_not_sent_twice(api, graph, run_jobs):
    wa = configure(api)
    r = api.post("/api/messages/", json={"integration_id": wa["id"], "to": UNREADABLE_ANSWER, "body": "Hi"})
    run_jobs()
    message = api.get(f"/api/messages/{r.json['id']}/").json
    assert message["status"] == "sent" and message["provider_message_id"] is None
    assert len(graph.log) == 1


def test_sandbox_stops_before_the_network(api, graph, run_jobs):
    wa = configure(api)
    assert api.put(f"/api/integrations/{wa['id']}/", json={"sandbox": True}).status_code == 200
    message = send(api, run_jobs, wa, body="Hi")
    assert message["status"] == "sandboxed" and message["provider_message_id"] is None
    assert graph.log == []


def test_mark_read(app, graph):
    adapter = WhatsAppCloudAPI(provider_settings())
    assert adapter.has_test_mode is False and adapter.default_rate_limit == 80.0
    adapter.mark_read({"phone_number_id": PHONE_ID}, {"access_token": WA_TOKEN}, "wamid.HBgLINBOUND")
    assert sent_requests(graph) == [(f"/v25.0/{PHONE_ID}/messages", f"Bearer {WA_TOKEN}",
                                     {"messaging_product": "whatsapp", "status": "read",
                                      "message_id": "wamid.HBgLINBOUND"})]


# --- webhooks -------------------------------------------------------------------------------------

def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_path(integration):
    assert integration["webhook_url"].startswith(PUBLIC_BASE)
    return integration["webhook_url"].removeprefix(PUBLIC_BASE)


def post_webhook(app, integration, body: bytes, signature: str | None = "sign"):
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = sign(body) if signature == "sign" else signature
    return app.test_client().post(webhook_path(integration), data=body, headers=headers)


def status(wamid, kind, ours=None, *, ago=60, errors=None):
    item = {"id": wamid, "status": kind, "timestamp": str(int(time.time()) - ago), "recipient_id": "16505551234",
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}}
    if ours:
        item["biz_opaque_callback_data"] = ours
    if errors:
        item["errors"] = errors
    return item


def notification(*statuses, indent=None) -> bytes:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_ID},
             "statuses": list(statuses)}
    document = {"object": "whatsapp_business_account",
                "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}
    return json.dumps(document, indent=indent, separators=None if indent else (",", ":")).encode()


def stored_events():
    db.session.expire_all()
    return db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()


def test_verification_get(app, api):
    wa = configure(api)
    client, path = app.test_client(), webhook_path(wa)
    token = wa["config"]["webhook_verify_token"]
    ok = client.get(path, query_string={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                        "hub.verify_token": token})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444" and ok.mimetype == "text/plain"
    wrong = client.get(path, query_string={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                                           "hub.verify_token": token + "x"})
    assert wrong.status_code == 403 and "1158201444" not in wrong.get_data(as_text=True)
    assert "verify token does not match" in wrong.json["error"]
    assert client.get(path, query_string={"hub.mode": "unsubscribe", "hub.challenge": "1",
                                          "hub.verify_token": token}).status_code == 403
    assert client.get(path, query_string={"hub.mode": "subscribe", "hub.challenge": "<script>",
                                          "hub.verify_token": token}).status_code == 400
    assert client.get(path).status_code == 405
    assert stored_events() == []


def test_vector_v1_inbound_message_is_accepted(app, api, run_jobs):
    wa = configure(api, app_secret=V1_SECRET)
    assert sign(V1_BODY, V1_SECRET) == V1_SIGNATURE
    r = post_webhook(app, wa, V1_BODY, signature=V1_SIGNATURE)
    assert r.status_code == 200 and r.json == {"status": "accepted"}
    run_jobs()
    [row] = stored_events()
    assert row.body == V1_BODY and row.headers["x-hub-signature-256"] == V1_SIGNATURE
    assert row.status == "processed" and row.error is None  # inbound messages are for the inbox: nothing breaks
    tampered = V1_BODY.replace(b"another color", b"another colour")
    assert post_webhook(app, wa, tampered, signature=V1_SIGNATURE).status_code == 401


def test_statuses_move_the_message_forward_only(app, api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, body="Your order has shipped.")
    wamid, ours = message["provider_message_id"], message["id"]
    assert post_webhook(app, wa, notification(status(wamid, "sent", ours, ago=30))).status_code == 200
    assert post_webhook(app, wa, notification(status(wamid, "delivered", ours, ago=20))).status_code == 200
    run_jobs()
    assert api.get(f"/api/messages/{ours}/").json["status"] == "delivered"
    # Matched by the wamid alone when Meta does not echo biz_opaque_callback_data.
    assert post_webhook(app, wa, notification(status(wamid, "read", ago=10))).status_code == 200
    run_jobs()
    assert api.get(f"/api/messages/{ours}/").json["status"] == "read"
    # A late "delivered" (another delivery of it, inside a new notification) does not move it back.
    late = notification(status(wamid, "delivered", ours, ago=25))
    assert post_webhook(app, wa, late).json == {"status": "accepted"}
    run_jobs()
    message = api.get(f"/api/messages/{ours}/").json
    assert message["status"] == "read"
    assert kinds(message).count("delivered") == 1 and kinds(message).count("read") == 1
    assert any(e["description"] == "Read by the recipient" for e in message["events"])
    assert all(row.status == "processed" and row.error is None for row in stored_events())


def test_failed_status_gives_the_reason(app, api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, body="Hi")
    error = {"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
             "error_data": {"details": "Message failed to send because more than 24 hours have passed since the "
                                       "customer last replied to this number."},
             "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}
    body = notification(status(message["provider_message_id"], "failed", message["id"], errors=[error]))
    assert post_webhook(app, wa, body).status_code == 200
    run_jobs()
    message = api.get(f"/api/messages/{message['id']}/").json
    assert message["status"] == "failed"
    assert message["last_error"].startswith("Failed: More than 24 hours have passed")
    assert "Re-engagement message" in message["last_error"] and "(WhatsApp error 131047)" in message["last_error"]


def test_unknown_code_in_failed_status_uses_metas_words(app, api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, body="Hi")
    error = {"code": 130472, "title": "User's number is part of an experiment",
             "message": "User's number is part of an experiment"}
    error2 = {"code": 139999, "title": "Something new", "message": "Something new happened"}
    post_webhook(app, wa, notification(status(message["provider_message_id"], "failed", message["id"],
                                              errors=[error2, error])))
    run_jobs()
    last_error = api.get(f"/api/messages/{message['id']}/").json["last_error"]
    assert last_error == "Failed: Something new. Something new happened (WhatsApp error 139999)"


def test_the_same_notification_twice_is_applied_once(app, api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, body="Hi")
    body = notification(status(message["provider_message_id"], "delivered", message["id"]))
    assert post_webhook(app, wa, body).json == {"status": "accepted"}
    assert post_webhook(app, wa, body).json == {"status": "duplicate"}
    # The same statuses serialised otherwise are the same delivery too.
    again = json.dumps(json.loads(body), indent=2).encode()
    assert again != body and post_webhook(app, wa, again).json == {"status": "duplicate"}
    run_jobs()
    assert len(stored_events()) == 1
    count = db.session.scalar(select(func.count()).select_from(MessageEvent)
                              .where(MessageEvent.message_id == message["id"], MessageEvent.kind == "delivered"))
    assert count == 1


def test_refused_webhooks_store_nothing(app, api, graph, run_jobs):
    wa = configure(api)
    message = send(api, run_jobs, wa, body="Hi")
    body = notification(status(message["provider_message_id"], "delivered", message["id"]))
    forged = post_webhook(app, wa, body, signature=sign(body, "not-the-app-secret"))
    assert forged.status_code == 401 and "does not match" in forged.json["error"]
    missing = post_webhook(app, wa, body, signature=None)
    assert missing.status_code == 401 and "not signed" in missing.json["error"]
    assert post_webhook(app, wa, body, signature="sha256=").status_code == 401
    malformed = b'{"object":"whatsapp_business_account","entry":'
    r = post_webhook(app, wa, malformed)
    assert r.status_code == 400 and "not JSON" in r.json["error"]
    assert post_webhook(app, wa, b'{"object":"page","entry":[]}').status_code == 400
    assert post_webhook(app, wa, b'{"object":"whatsapp_business_account","entry":[{"changes":{}}]}').status_code == 400
    no_id = notification({"status": "delivered", "timestamp": "1700000000"})
    assert post_webhook(app, wa, no_id).status_code == 400
    oversize = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert post_webhook(app, wa, oversize).status_code == 413
    unknown = app.test_client().post("/api/webhooks/cloud_api/no-such-integration/", data=body,
                                     headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    assert unknown.status_code == 404
    run_jobs()
    assert stored_events() == []
    assert api.get(f"/api/messages/{message['id']}/").json["status"] == "sent"


def test_without_an_app_secret_webhooks_are_refused(app, api):
    wa = configure(api, app_secret=None)
    r = post_webhook(app, wa, V1_BODY, signature=sign(V1_BODY, ""))
    assert r.status_code == 401 and "set the App secret" in r.json["error"]
    assert stored_events() == []


def test_other_notifications_change_nothing(app, api, run_jobs):
    wa = configure(api)
    update = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "time": 1700000000, "changes": [
        {"field": "message_template_status_update",
         "value": {"event": "APPROVED", "message_template_id": 594425479261596, "message_template_name": "hello_world",
                   "message_template_language": "en_US", "reason": None}}]}]}).encode()
    assert post_webhook(app, wa, update).json == {"status": "accepted"}
    assert post_webhook(app, wa, update).json == {"status": "duplicate"}
    run_jobs()
    [row] = stored_events()
    assert row.status == "processed" and row.error is None
