"""Sending SMS through Twilio, Vonage, Plivo and Amazon SNS, and their signed delivery webhooks.

Each provider is played by a real HTTP server on loopback speaking its wire format (moto, and an
SNS-shaped server for its errors); messages go through the JSON API and a real RQ worker; webhooks
reach the public endpoint with signatures made here, independently of the adapters (the signers are
checked against the published vectors first)."""
import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import parse_qsl, urlencode

import pytest
from rq.registry import ScheduledJobRegistry
from werkzeug import Response

from app.extensions import db
from app.models import Integration, WebhookEvent
from app.providers.base import GiveUp, InboundWebhook, OutboundMessage, ProviderSettings, WebhookRejected
from app.providers.sms.plivo import Plivo
from app.providers.sms.sns import AmazonSNS
from app.providers.sms.twilio import Twilio
from app.providers.sms.vonage import Vonage
from app.queue import task_queue
from tests.conftest import point_at
from tests.providers.checks import basic_auth, create_configured, json_response

PUBLIC = "https://switchboard.example.com"
FROM, TO = "+14155552671", "+14155550123"
# From the provider reference's vectors.json, each checked there against the provider's own SDK.
VECTORS = {
    "Twilio X-Twilio-Signature (published example)": {
        "secret": "12345",
        "inputs": {"url": "https://mycompany.com/myapp.php?foo=1&bar=2",
                   "post_params": {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
                                   "From": "+12349013030", "To": "+18005551212"}},
        "expected": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="},
    "Twilio X-Twilio-Signature (inbound SMS form POST)": {
        "secret": "0123456789abcdef0123456789abcdef",
        "inputs": {"url": "https://crm.example.com/hooks/twilio/sms",
                   "raw_body": "ToCountry=US&SmsMessageSid=SM11111111111111111111111111111111&NumMedia=0"
                               "&SmsSid=SM11111111111111111111111111111111&SmsStatus=received"
                               "&Body=Hi%2C+is+my+appointment+still+on%3F&To=%2B15005550006&NumSegments=1"
                               "&MessageSid=SM11111111111111111111111111111111"
                               "&AccountSid=AC00000000000000000000000000000000&From=%2B14155552671"
                               "&ApiVersion=2010-04-01"},
        "expected": "hedkR9zMbQHPXC4i8DZJFG40d4I="},
    "Twilio X-Twilio-Signature (JSON body, bodySHA256)": {
        "secret": "0123456789abcdef0123456789abcdef",
        "inputs": {"url": "https://crm.example.com/hooks/twilio/json"
                          "?bodySHA256=f59f15acbab4f26353e437e2ab488a7bf57001e92e239fa253674cf306778951",
                   "raw_body": '{"event":"status","sid":"SM123"}'},
        "expected": "zeYOH0s6Cy7rFJJam/notYDBEDc="},
    "Plivo X-Plivo-Signature-V3 (POST)": {
        "secret": "MzRiNjY3ZTAxYjFiZDM0NmRmZjE3YjZlNjVlYmVh",
        "inputs": {"url": "https://crm.example.com/hooks/plivo/sms",
                   "X-Plivo-Signature-V3-Nonce": "12345678901234567890",
                   "post_params": {"From": "14155552671", "To": "14155550100", "Text": "Hello from Plivo",
                                   "Type": "sms", "MessageUUID": "1e8c7a8c-6e7b-11ec-8d44-0242ac110003"}},
        "expected": "vqpnUxN1MM5cw/X/SbmkVUk8bHRrBquUNpwU+rb1PgU="},
    "Plivo X-Plivo-Signature-V2": {
        "secret": "MzRiNjY3ZTAxYjFiZDM0NmRmZjE3YjZlNjVlYmVh",
        "inputs": {"url": "https://crm.example.com/hooks/plivo/sms",
                   "X-Plivo-Signature-V2-Nonce": "12345678901234567890"},
        "expected": "h1lzKhl1g5PYL/kWEfpCDToZ44bvUldUbKuXnYNiUgo="},
    "Vonage SMS API sig (MD5 hash, SDK test vector)": {
        "secret": "secret",
        "inputs": {"params": {"a": "1", "b": "2", "timestamp": "1461605396"}},
        "expected": "6af838ef94998832dbfc29020b564830"},
    "Vonage SMS API sig (HMAC-SHA256)": {
        "secret": "sig_secret_0123456789",
        "inputs": {"params": {"msisdn": "447700900001", "to": "447700900000", "messageId": "0A0000000123ABCD1",
                              "text": "Hello world", "type": "text", "keyword": "HELLO",
                              "message-timestamp": "2020-01-01 12:00:00", "timestamp": "1577880000",
                              "nonce": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "api-key": "abcd1234"}},
        "expected": "093a7421b865fc87e852a0f4ec8373ae7a3988601c851d133137910741e6042e"},
    "Vonage Messages API signed webhook (JWT)": {
        "secret": "messages_signature_secret_32chars!!",
        "inputs": {"raw_body": '{"channel":"whatsapp","message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab",'
                               '"status":"delivered"}',
                   "claims": {"iat": 1700000000}},
        "expected": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImM1YmE4ZjI0LTFhMTQtNGMxMC1"
                    "iZmRmLTNmYmU4Y2U1MTFiNSIsImlzcyI6IlZvbmFnZSIsInBheWxvYWRfaGFzaCI6IjViYTk0OTZiNzJhNGE5NzJjMzc2NDQwN"
                    "DMyYzhjMTE2NTQ3OTM0YThmYjE3MjUyOGI3YjA5ODEyYjRiYzFlNzkiLCJhcGlfa2V5IjoiYWJjZDEyMzQiLCJhcHBsaWNhdG"
                    "lvbl9pZCI6ImFhYWFhYWFhLWJiYmItY2NjYy1kZGRkLTAxMjM0NTY3ODlhYiJ9.KH8oKSUa5hUOiZakkq6ZVz9nZALssGHqp1"
                    "kYx8na3w4"},
}


def vector(scheme: str) -> dict:
    return VECTORS[scheme]


# --- independent signers (what the providers compute), proven on the vectors below -----------------------


def b64_hmac(key: str, text: str, digest) -> str:
    return base64.b64encode(hmac.new(key.encode(), text.encode(), digest).digest()).decode()


def twilio_sign(token, url, pairs):
    return b64_hmac(token, url + "".join(k + v for k, v in sorted(pairs)), hashlib.sha1)


def plivo_v3_sign(token, url, pairs, nonce):
    base, _, query = url.partition("?")
    query = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(query)))
    signed = base + "?" + query + ("." if query and pairs else "") + "".join(k + v for k, v in sorted(pairs))
    return b64_hmac(token, f"{signed}.{nonce}", hashlib.sha256)


def plivo_v2_sign(token, url, nonce):
    return b64_hmac(token, url.partition("?")[0] + nonce, hashlib.sha256)


def vonage_sig(params, secret, method="md5hash"):
    text = "".join(f"&{k}={str(v).replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items()))
    if method == "md5hash":
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), method).hexdigest()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def vonage_jwt(secret, body: bytes, iat=None):
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64url(json.dumps({"iat": int(time.time() if iat is None else iat), "jti": str(uuid.uuid4()),
                                "iss": "Vonage", "payload_hash": hashlib.sha256(body).hexdigest(),
                                "api_key": VONAGE_KEY}).encode())
    signature = b64url(hmac.new(secret.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest())
    return f"{head}.{claims}.{signature}"


# --- the API and the worker -------------------------------------------------------------------------------


def configure(api, provider, fields, **settings):
    integration_id = create_configured(api, "sms", provider, "sms", fields)
    if settings:
        r = api.put(f"/api/integrations/{integration_id}/", json=settings)
        assert r.status_code == 200, r.json
    return api.get(f"/api/integrations/{integration_id}/").json


def send(api, integration_id, to=TO, body="Hi"):
    r = api.post("/api/messages/", json={"integration_id": integration_id, "to": to, "body": body})
    assert r.status_code == 202 and r.json["status"] == "queued", r.json
    return r.json["id"]


def message(api, message_id):
    return api.get(f"/api/messages/{message_id}/").json


def kinds(data):
    return [e["kind"] for e in data["events"]]


def post_webhook(app, url, *, form=None, body=None, headers=None, content_type="application/x-www-form-urlencoded"):
    """POST to the path of a public webhook URL, as the provider would."""
    assert url.startswith(PUBLIC)
    data = urlencode(form) if form is not None else body
    return app.test_client().post(url[len(PUBLIC):], data=data, headers=headers or {}, content_type=content_type)


class Fake:
    """A provider on loopback: answers with `reply(request)` and remembers what it was sent."""

    def __init__(self, server):
        self.server, self.requests = server, []

    def on(self, method, path, reply):
        def handler(request):
            self.requests.append({"method": request.method, "path": request.path, "auth": basic_auth(request),
                                  "body": request.get_data(), "content_type": request.mimetype})
            return reply(request)
        self.server.expect_request(path, method=method).respond_with_handler(handler)
        return self

    def form(self, index=-1):
        return dict(parse_qsl(self.requests[index]["body"].decode(), keep_blank_values=True))

    def json(self, index=-1):
        return json.loads(self.requests[index]["body"])


def assert_retry_scheduled(data, words, wait=None):
    assert data["status"] == "queued" and data["attempts"] == 1, data
    assert words in data["last_error"]
    retry = [e["description"] for e in data["events"] if e["kind"] == "retry"]
    assert retry == [f"Will try again in {wait:g} s, as the provider asked." if wait else "Will try again in 10 s."]
    assert any(job_id.startswith(data["id"]) for job_id in ScheduledJobRegistry(queue=task_queue()).get_job_ids())


def assert_failed_without_retry(data, *words):
    assert data["status"] == "failed" and data["attempts"] == 1, data
    for word in words:
        assert word in data["last_error"], data["last_error"]
    assert "retry" not in kinds(data) and "failover" not in kinds(data)


# --- Twilio -------------------------------------------------------------------------------------------------

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_SID_B = "AC" + "fedcba9876543210" * 2
TWILIO_TOKEN = "twilio-auth-token"
TWILIO_SM = "SM" + "1" * 32


def twilio_fields(sid=TWILIO_SID):
    return {"from_phone_number": FROM, "account_sid": sid, "auth_token": TWILIO_TOKEN}


def twilio_messages(request, sid=TWILIO_SID):
    form = dict(parse_qsl(request.get_data().decode()))
    return json_response({"sid": TWILIO_SM, "account_sid": sid, "to": form.get("To"), "from": form.get("From"),
                          "body": form.get("Body"), "status": "queued", "num_segments": "1",
                          "direction": "outbound-api", "api_version": "2010-04-01",
                          "uri": f"/2010-04-01/Accounts/{sid}/Messages/{TWILIO_SM}.json"}, 201)


def twilio_error_reply(code, message, status, **headers):
    def reply(request):
        response = json_response({"code": code, "message": message, "status": status,
                                  "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status)
        response.headers.update(headers)
        return response
    return reply


@pytest.fixture
def fake(app, monkeypatch, httpserver):
    for setting in ("TWILIO_API_BASE", "VONAGE_API_BASE", "PLIVO_API_BASE"):
        point_at(app, monkeypatch, setting, httpserver.url_for("/"))
    return Fake(httpserver)


def twilio_path(sid=TWILIO_SID):
    return f"/2010-04-01/Accounts/{sid}/Messages.json"


def sent_through_twilio(api, fake, run_jobs):
    fake.on("POST", twilio_path(), twilio_messages)
    integration = configure(api, "twilio", twilio_fields())
    message_id = send(api, integration["id"])
    run_jobs()
    return integration, message_id


def twilio_callback(url, status, sid=TWILIO_SM, **extra):
    form = [("MessageSid", sid), ("SmsSid", sid), ("SmsStatus", status), ("MessageStatus", status),
            ("To", TO), ("From", FROM), ("AccountSid", TWILIO_SID), ("ApiVersion", "2010-04-01"), *extra.items()]
    return form, {"X-Twilio-Signature": twilio_sign(TWILIO_TOKEN, url, form)}


def test_twilio_sends_with_our_id_in_the_status_callback(api, fake, run_jobs):
    integration, message_id = sent_through_twilio(api, fake, run_jobs)
    data = message(api, message_id)
    assert data["status"] == "sent" and data["provider_message_id"] == TWILIO_SM and data["attempts"] == 1
    assert data["integration_id"] == integration["id"] and kinds(data) == ["queued", "sending", "sent"]
    assert len(fake.requests) == 1 and fake.requests[0]["auth"] == (TWILIO_SID, TWILIO_TOKEN)
    assert fake.requests[0]["content_type"] == "application/x-www-form-urlencoded"
    assert fake.form() == {"To": TO, "From": FROM, "Body": "Hi",
                           "StatusCallback": f"{integration['webhook_url']}?m={message_id}"}
    assert integration["rate_limit"] == 1.0 and integration["rate_limit_is_default"] is True


def test_twilio_status_callbacks_move_the_message_once(app, api, fake, run_jobs):
    integration, message_id = sent_through_twilio(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    form, headers = twilio_callback(url, "delivered", RawDlrDoneDate="2611221230")
    first = post_webhook(app, url, form=form, headers=headers)
    again = post_webhook(app, url, form=form, headers=headers)  # Twilio's retry of the same callback
    assert (first.status_code, first.json) == (200, {"status": "accepted"})
    assert (again.status_code, again.json) == (200, {"status": "duplicate"})
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "delivered" and kinds(data) == ["queued", "sending", "sent", "delivered"]
    assert data["events"][-1]["description"] == "Delivered"
    late, headers = twilio_callback(url, "sent")  # out of order: recorded, the status does not move back
    assert post_webhook(app, url, form=late, headers=headers).status_code == 200
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "delivered" and kinds(data)[-1] == "sent"
    assert db.session.query(WebhookEvent).filter_by(status="processed").count() == 2


def test_twilio_undelivered_callback_fails_the_message_in_words(app, api, fake, run_jobs):
    integration, message_id = sent_through_twilio(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    form, headers = twilio_callback(url, "undelivered", ErrorCode="30003")
    assert post_webhook(app, url, form=form, headers=headers).status_code == 200
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "failed"
    assert data["last_error"] == "Not delivered: the handset is unreachable (switched off or out of coverage) " \
                                 "(Twilio error 30003)"


def test_twilio_bad_recipient_fails_at_once(api, fake, run_jobs):
    fake.on("POST", twilio_path(), twilio_error_reply(21211, "The 'To' number +14155550123 is not a valid phone "
                                                             "number.", 400))
    integration = configure(api, "twilio", twilio_fields())
    message_id = send(api, integration["id"])
    run_jobs()
    assert_failed_without_retry(message(api, message_id), "is not a valid phone number", "21211")
    assert len(fake.requests) == 1


def test_twilio_429_waits_as_long_as_twilio_asks_and_5xx_backs_off(api, fake, run_jobs):
    replies = iter([twilio_error_reply(20429, "Too Many Requests", 429, **{"Retry-After": "120"}),
                    lambda request: Response("upstream unavailable", status=503)])
    fake.on("POST", twilio_path(), lambda request: next(replies)(request))
    integration = configure(api, "twilio", twilio_fields(), rate_limit=50)
    first = send(api, integration["id"])
    run_jobs()
    assert_retry_scheduled(message(api, first), "rate limiting", wait=120)
    assert "Too Many Requests (Twilio error 20429)" in message(api, first)["last_error"]
    second = send(api, integration["id"])
    run_jobs()
    assert_retry_scheduled(message(api, second), "server error (HTTP 503)")


def test_twilio_failover_to_the_next_integration(api, fake, run_jobs):
    fake.on("POST", twilio_path(), lambda request: json_response({"code": 20500, "message": "Internal Server Error",
                                                                  "status": 500}, 500))
    fake.on("POST", twilio_path(TWILIO_SID_B), lambda request: twilio_messages(request, TWILIO_SID_B))
    first = configure(api, "twilio", twilio_fields(), priority=1)
    second = configure(api, "twilio", twilio_fields(TWILIO_SID_B), priority=2)
    message_id = send(api, first["id"])
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "sent" and data["integration_id"] == second["id"] and data["attempts"] == 1
    assert kinds(data) == ["queued", "sending", "failover", "sending", "sent"]
    assert "Moving to" in data["events"][2]["description"] and "HTTP 500" in data["events"][2]["description"]
    assert [r["auth"][0] for r in fake.requests] == [TWILIO_SID, TWILIO_SID_B]
    assert fake.form()["StatusCallback"] == f"{second['webhook_url']}?m={message_id}"


def test_twilio_bad_recipient_does_not_fail_over(api, fake, run_jobs):
    fake.on("POST", twilio_path(), twilio_error_reply(21614, "'To' number is not a valid mobile number", 400))
    fake.on("POST", twilio_path(TWILIO_SID_B), lambda request: twilio_messages(request, TWILIO_SID_B))
    first = configure(api, "twilio", twilio_fields(), priority=1)
    configure(api, "twilio", twilio_fields(TWILIO_SID_B), priority=2)
    message_id = send(api, first["id"])
    run_jobs()
    data = message(api, message_id)
    assert_failed_without_retry(data, "not a valid mobile number", "21614")
    assert data["integration_id"] == first["id"] and len(fake.requests) == 1


def test_twilio_revoked_token_moves_to_the_backup(api, fake, run_jobs):
    fake.on("POST", twilio_path(), twilio_error_reply(20003, "Authenticate", 401))
    fake.on("POST", twilio_path(TWILIO_SID_B), lambda request: twilio_messages(request, TWILIO_SID_B))
    first = configure(api, "twilio", twilio_fields(), priority=1)
    second = configure(api, "twilio", twilio_fields(TWILIO_SID_B), priority=2)
    message_id = send(api, first["id"])
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "sent" and data["integration_id"] == second["id"]
    assert "bad credentials" in data["events"][2]["description"]


def test_twilio_vectors():
    adapter = Twilio(ProviderSettings())
    published = vector("Twilio X-Twilio-Signature (published example)")
    pairs = tuple(published["inputs"]["post_params"].items())
    assert twilio_sign(published["secret"], published["inputs"]["url"], pairs) == published["expected"]
    request = InboundWebhook("POST", published["inputs"]["url"], {"x-twilio-signature": published["expected"]}, b"",
                             form=pairs)
    with pytest.raises(WebhookRejected) as refused:  # the signature holds; a voice webhook is no SMS status
        adapter.verify_webhook({}, {"auth_token": published["secret"]}, request)
    assert refused.value.status == 400
    with pytest.raises(WebhookRejected) as forged:
        adapter.verify_webhook({}, {"auth_token": published["secret"] + "x"}, request)
    assert forged.value.status == 401

    inbound = vector("Twilio X-Twilio-Signature (inbound SMS form POST)")
    form = tuple(parse_qsl(inbound["inputs"]["raw_body"]))
    assert twilio_sign(inbound["secret"], inbound["inputs"]["url"], form) == inbound["expected"]
    for url in (inbound["inputs"]["url"], inbound["inputs"]["url"].replace(".com/", ".com:443/")):
        request = InboundWebhook("POST", url, {"x-twilio-signature": inbound["expected"]},
                                 inbound["inputs"]["raw_body"].encode(), form=form)
        adapter.verify_webhook({}, {"auth_token": inbound["secret"]}, request)
        assert adapter.parse_webhook({}, request) == []  # an incoming SMS, not a status of ours
    tampered = InboundWebhook("POST", inbound["inputs"]["url"], {"x-twilio-signature": inbound["expected"]}, b"",
                              form=tuple((k, "Bye" if k == "Body" else v) for k, v in form))
    with pytest.raises(WebhookRejected):
        adapter.verify_webhook({}, {"auth_token": inbound["secret"]}, tampered)

    signed_json = vector("Twilio X-Twilio-Signature (JSON body, bodySHA256)")
    body = signed_json["inputs"]["raw_body"].encode()
    request = InboundWebhook("POST", signed_json["inputs"]["url"], {"x-twilio-signature": signed_json["expected"]},
                             body)
    with pytest.raises(WebhookRejected) as refused:
        adapter.verify_webhook({}, {"auth_token": signed_json["secret"]}, request)
    assert refused.value.status == 400  # signature and body hash hold; not a form status callback
    with pytest.raises(WebhookRejected) as forged:
        adapter.verify_webhook({}, {"auth_token": signed_json["secret"]},
                               InboundWebhook("POST", request.url, request.headers, body + b" "))
    assert forged.value.status == 401


def test_twilio_webhook_refusals(app, api, fake, run_jobs):
    integration, message_id = sent_through_twilio(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    form, headers = twilio_callback(url, "failed", ErrorCode="30007")
    wrong_token = {"X-Twilio-Signature": twilio_sign("not-the-token", url, form)}
    other_url = {"X-Twilio-Signature": twilio_sign(TWILIO_TOKEN, url.replace("?m=", "?m=0"), form)}
    tampered = [(k, "delivered" if k == "MessageStatus" else v) for k, v in form]
    assert post_webhook(app, url, form=form).status_code == 401  # unsigned
    assert post_webhook(app, url, form=form, headers=wrong_token).status_code == 401
    assert post_webhook(app, url, form=form, headers=other_url).status_code == 401
    assert post_webhook(app, url, form=tampered, headers=headers).status_code == 401
    assert post_webhook(app, url, body=b'{"MessageSid": "SM1"}', headers=headers,
                        content_type="application/json").status_code == 400
    incoming = [("MessageSid", TWILIO_SM), ("Body", "hello")]  # validly signed, but no status: malformed here
    assert post_webhook(app, url, form=incoming,
                        headers={"X-Twilio-Signature": twilio_sign(TWILIO_TOKEN, url, incoming)}).status_code == 400
    huge = form + [("Padding", "x" * (1024 * 1024))]
    assert post_webhook(app, url, form=huge, headers=headers).status_code == 413
    unknown = f"{PUBLIC}/api/webhooks/twilio/{'A' * 22}/?m={message_id}"
    assert post_webhook(app, unknown, form=form, headers=headers).status_code == 404
    too_long = f"{PUBLIC}/api/webhooks/twilio/{'A' * 100}/"
    assert post_webhook(app, too_long, form=form, headers=headers).status_code == 404
    assert db.session.query(WebhookEvent).count() == 0
    run_jobs()
    assert message(api, message_id)["status"] == "sent"


# --- Vonage -------------------------------------------------------------------------------------------------

VONAGE_KEY, VONAGE_SECRET, VONAGE_SIG_SECRET = "abcd1234", "VonageSecret1", "sig_secret_0123456789"
VONAGE_ID = "0A0000000123ABCD1"


def vonage_fields(**extra):
    return {"from_phone_number": FROM, "api_key": VONAGE_KEY, "api_secret": VONAGE_SECRET,
            "signature_secret": VONAGE_SIG_SECRET, **extra}


def vonage_reply(status="0", error_text=None):
    def reply(request):
        part = {"to": TO.lstrip("+"), "status": status}
        if status == "0":
            part.update({"message-id": VONAGE_ID, "remaining-balance": "15.53590000",
                         "message-price": "0.03330000", "network": "310260",
                         "client-ref": dict(parse_qsl(request.get_data().decode())).get("client-ref")})
        else:
            part["error-text"] = error_text
        return json_response({"message-count": "1", "messages": [part]})  # errors too come with HTTP 200
    return reply


def sent_through_vonage(api, fake, run_jobs, **fields):
    fake.on("POST", "/sms/json", vonage_reply())
    integration = configure(api, "vonage", vonage_fields(**fields))
    message_id = send(api, integration["id"])
    run_jobs()
    return integration, message_id


def vonage_receipt(message_id, status="delivered", *, timestamp=None, err_code="0", method="md5hash"):
    params = {"msisdn": TO.lstrip("+"), "to": FROM.lstrip("+"), "network-code": "310260", "messageId": VONAGE_ID,
              "price": "0.03330000", "status": status, "scts": "2611221230", "err-code": err_code,
              "api-key": VONAGE_KEY, "client-ref": message_id, "message-timestamp": "2026-11-22 12:30:00",
              "timestamp": str(int(time.time() if timestamp is None else timestamp)), "nonce": str(uuid.uuid4())}
    params["sig"] = vonage_sig(params, VONAGE_SIG_SECRET, method)
    return params


def test_vonage_sends_with_our_reference(api, fake, run_jobs):
    integration, message_id = sent_through_vonage(api, fake, run_jobs)
    data = message(api, message_id)
    assert data["status"] == "sent" and data["provider_message_id"] == VONAGE_ID
    assert fake.requests[0]["path"] == "/sms/json"
    assert fake.form() == {"api_key": VONAGE_KEY, "api_secret": VONAGE_SECRET, "from": FROM.lstrip("+"),
                           "to": TO.lstrip("+"), "text": "Hi", "type": "text", "client-ref": message_id,
                           "callback": integration["webhook_url"]}
    assert integration["config"]["signature_method"] == "md5hash"
    assert integration["secrets"] == {"api_secret": True, "signature_secret": True}


def test_vonage_unicode_text_is_sent_as_unicode(api, fake, run_jobs):
    fake.on("POST", "/sms/json", vonage_reply())
    send(api, configure(api, "vonage", vonage_fields())["id"], body="Merci \u2014 \U0001f600")
    run_jobs()
    assert fake.form()["type"] == "unicode" and fake.form()["text"] == "Merci \u2014 \U0001f600"


def test_vonage_signed_receipts_json_and_form(app, api, fake, run_jobs):
    integration, message_id = sent_through_vonage(api, fake, run_jobs)
    url = integration["webhook_url"]
    receipt = json.dumps(vonage_receipt(message_id, "accepted")).encode()  # POST-JSON, the recommended format
    assert post_webhook(app, url, body=receipt, content_type="application/json").json == {"status": "accepted"}
    assert post_webhook(app, url, body=receipt, content_type="application/json").json == {"status": "duplicate"}
    delivered = vonage_receipt(message_id, "delivered")  # POST, form-encoded
    assert post_webhook(app, url, form=delivered).json == {"status": "accepted"}
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "delivered" and kinds(data) == ["queued", "sending", "sent", "sent", "delivered"]
    assert data["events"][3]["description"] == "Accepted by the carrier"


def test_vonage_hmac_method_and_failed_receipt(app, api, fake, run_jobs):
    integration, message_id = sent_through_vonage(api, fake, run_jobs, signature_method="sha256")
    url = integration["webhook_url"]
    md5_signed = vonage_receipt(message_id, "failed", err_code="6")
    assert post_webhook(app, url, form=md5_signed).status_code == 401  # not the configured method
    receipt = vonage_receipt(message_id, "failed", err_code="6", method="sha256")
    assert post_webhook(app, url, form=receipt).status_code == 200
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "failed" and data["last_error"] == "Failed: rejected as spam (Vonage error 6)"


def test_vonage_jwt_signed_status(app, api, fake, run_jobs):
    integration, message_id = sent_through_vonage(api, fake, run_jobs)
    body = json.dumps({"message_uuid": VONAGE_ID, "to": TO.lstrip("+"), "from": FROM.lstrip("+"),
                       "timestamp": "2026-11-22T12:30:00.000Z", "status": "delivered", "client_ref": message_id,
                       "channel": "sms"}).encode()
    bearer = {"Authorization": f"Bearer {vonage_jwt(VONAGE_SIG_SECRET, body)}"}
    stale = {"Authorization": f"Bearer {vonage_jwt(VONAGE_SIG_SECRET, body, iat=time.time() - 600)}"}
    other_body = {"Authorization": f"Bearer {vonage_jwt(VONAGE_SIG_SECRET, body + b' ')}"}
    assert post_webhook(app, integration["webhook_url"], body=body, headers=stale,
                        content_type="application/json").status_code == 401
    assert post_webhook(app, integration["webhook_url"], body=body, headers=other_body,
                        content_type="application/json").status_code == 401
    assert post_webhook(app, integration["webhook_url"], body=body, headers=bearer,
                        content_type="application/json").status_code == 200
    run_jobs()
    assert message(api, message_id)["status"] == "delivered"


def test_vonage_webhook_refusals(app, api, fake, run_jobs):
    integration, message_id = sent_through_vonage(api, fake, run_jobs)
    url = integration["webhook_url"]
    good = vonage_receipt(message_id, "failed")
    forged = {**good, "sig": vonage_sig(good, "another-secret")}
    tampered = {**good, "status": "delivered"}
    stale = vonage_receipt(message_id, "failed", timestamp=time.time() - 400)
    unsigned = {k: v for k, v in good.items() if k != "sig"}
    assert post_webhook(app, url, form=forged).status_code == 401
    assert post_webhook(app, url, form=tampered).status_code == 401
    assert post_webhook(app, url, form=stale).status_code == 401
    assert post_webhook(app, url, form=unsigned).status_code == 401
    assert post_webhook(app, url, body=b'{"messageId": ', content_type="application/json").status_code == 400
    assert post_webhook(app, url, body=b"\x00\x01", content_type="application/octet-stream").status_code == 400
    assert post_webhook(app, url, body=b'{"x": "' + b"y" * (1024 * 1024) + b'"}',
                        content_type="application/json").status_code == 413
    assert app.test_client().get(url[len(PUBLIC):] + "?" + urlencode(forged)).status_code == 401
    assert post_webhook(app, url.replace(url.split("/")[-2], "B" * 22), form=good).status_code == 404
    assert db.session.query(WebhookEvent).count() == 0
    run_jobs()
    assert message(api, message_id)["status"] == "sent"


def test_vonage_receipts_are_refused_without_a_signature_secret(app, api, fake, run_jobs):
    fake.on("POST", "/sms/json", vonage_reply())
    fields = vonage_fields()
    del fields["signature_secret"]
    integration = configure(api, "vonage", fields)
    assert post_webhook(app, integration["webhook_url"], form=vonage_receipt("x")).status_code == 401


VONAGE_REFUSALS = [  # (status, error-text, what happens, words of the reason)
    ("3", "Invalid to address", "failed", "status 3"),
    ("6", "Unroutable message - rejected", "failed", "could not route"),
    ("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry", "retry", "throttled"),
    ("9", "Quota Exceeded - rejected", "retry", "no credit"),
]


def test_vonage_refusals_by_status(api, fake, run_jobs):
    replies = iter([vonage_reply(status, error_text) for status, error_text, _, _ in VONAGE_REFUSALS])
    fake.on("POST", "/sms/json", lambda request: next(replies)(request))
    integration = configure(api, "vonage", vonage_fields())
    for status, error_text, outcome, words in VONAGE_REFUSALS:
        message_id = send(api, integration["id"])
        run_jobs()
        data = message(api, message_id)
        if outcome == "failed":
            assert_failed_without_retry(data, words, error_text)
        else:
            assert_retry_scheduled(data, words)
    assert len(fake.requests) == len(VONAGE_REFUSALS)


def test_vonage_429_and_server_error(api, fake, run_jobs):
    replies = iter([Response("", status=429, headers={"Retry-After": "60"}), Response("", status=502)])
    fake.on("POST", "/sms/json", lambda request: next(replies))
    integration = configure(api, "vonage", vonage_fields())
    first = send(api, integration["id"])
    run_jobs()
    assert_retry_scheduled(message(api, first), "rate limiting", wait=60)
    second = send(api, integration["id"])
    run_jobs()
    assert_retry_scheduled(message(api, second), "server error (HTTP 502)")


def test_vonage_vectors():
    adapter = Vonage(ProviderSettings())
    md5 = vector("Vonage SMS API sig (MD5 hash, SDK test vector)")
    params = md5["inputs"]["params"]
    assert vonage_sig(params, md5["secret"]) == md5["expected"]
    request = InboundWebhook("POST", f"{PUBLIC}/x", {"content-type": "application/x-www-form-urlencoded"}, b"",
                             form=tuple({**params, "sig": md5["expected"].upper()}.items()),
                             received_at=int(params["timestamp"]) + 30)
    with pytest.raises(WebhookRejected) as refused:  # signature holds (any case); a, b is no receipt
        adapter.verify_webhook({"signature_method": "md5hash"}, {"signature_secret": md5["secret"]}, request)
    assert refused.value.status == 400
    for config, secret, received in (({"signature_method": "md5hash"}, "other", 30), ({"signature_method": "sha256"},
                                     md5["secret"], 30), ({"signature_method": "md5hash"}, md5["secret"], 301)):
        stale = InboundWebhook("POST", request.url, request.headers, b"", form=request.form,
                               received_at=int(params["timestamp"]) + received)
        with pytest.raises(WebhookRejected) as forged:
            adapter.verify_webhook(config, {"signature_secret": secret}, stale)
        assert forged.value.status == 401

    sha = vector("Vonage SMS API sig (HMAC-SHA256)")
    params = sha["inputs"]["params"]
    assert vonage_sig(params, sha["secret"], "sha256") == sha["expected"]
    body = json.dumps({**params, "sig": sha["expected"]}).encode()
    request = InboundWebhook("POST", f"{PUBLIC}/x", {"content-type": "application/json"}, body,
                             received_at=int(params["timestamp"]) - 100)
    with pytest.raises(WebhookRejected) as refused:  # an inbound SMS, validly signed: not a receipt
        adapter.verify_webhook({"signature_method": "sha256"}, {"signature_secret": sha["secret"]}, request)
    assert refused.value.status == 400

    jwt = vector("Vonage Messages API signed webhook (JWT)")
    body = jwt["inputs"]["raw_body"].encode()
    request = InboundWebhook("POST", f"{PUBLIC}/x", {"authorization": f"Bearer {jwt['expected']}",
                                                     "content-type": "application/json"}, body,
                             received_at=jwt["inputs"]["claims"]["iat"] + 60)
    adapter.verify_webhook({}, {"signature_secret": jwt["secret"]}, request)
    [event] = adapter.parse_webhook({}, request)
    assert (event.status, event.provider_message_id) == ("delivered", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab")
    for secret, received in ((jwt["secret"] + "x", 60), (jwt["secret"], 400)):
        with pytest.raises(WebhookRejected) as forged:
            adapter.verify_webhook({}, {"signature_secret": secret},
                                   InboundWebhook("POST", request.url, request.headers, body,
                                                  received_at=jwt["inputs"]["claims"]["iat"] + received))
        assert forged.value.status == 401


# --- Plivo --------------------------------------------------------------------------------------------------

PLIVO_ID, PLIVO_TOKEN = "MAXXXXXXXXXXXXXXXXXX", "MzRiNjY3ZTAxYjFiZDM0NmRmZjE3YjZlNjVlYmVh"
PLIVO_UUID = "1e8c7a8c-6e7b-11ec-8d44-0242ac110003"
PLIVO_PATH = f"/v1/Account/{PLIVO_ID}/Message/"


def plivo_fields():
    return {"from_phone_number": FROM, "auth_id": PLIVO_ID, "auth_token": PLIVO_TOKEN}


def plivo_queued(request):
    return json_response({"api_id": str(uuid.uuid4()), "message": "message(s) queued",
                          "message_uuid": [PLIVO_UUID]}, 202)


def sent_through_plivo(api, fake, run_jobs):
    fake.on("POST", PLIVO_PATH, plivo_queued)
    integration = configure(api, "plivo", plivo_fields())
    message_id = send(api, integration["id"])
    run_jobs()
    return integration, message_id


def plivo_callback(status, **extra):
    return [("To", TO.lstrip("+")), ("From", FROM.lstrip("+")), ("Status", status), ("MessageUUID", PLIVO_UUID),
            ("ParentMessageUUID", PLIVO_UUID), ("PartInfo", "1 of 1"), ("TotalRate", "0.0050"),
            ("TotalAmount", "0.0050"), ("Units", "1"), ("MCC", "310"), ("MNC", "260"), ("Type", "sms"),
            *extra.items()]


def v3_headers(url, form, nonce=None, token=PLIVO_TOKEN):
    nonce = nonce or str(uuid.uuid4().int)[:20]
    return {"X-Plivo-Signature-V3": plivo_v3_sign(token, url, form, nonce), "X-Plivo-Signature-V3-Nonce": nonce}


def test_plivo_sends_with_our_id_in_the_callback_url(api, fake, run_jobs):
    integration, message_id = sent_through_plivo(api, fake, run_jobs)
    data = message(api, message_id)
    assert data["status"] == "sent" and data["provider_message_id"] == PLIVO_UUID
    request = fake.requests[0]
    assert request["path"] == PLIVO_PATH and request["auth"] == (PLIVO_ID, PLIVO_TOKEN)
    assert request["content_type"] == "application/json"
    assert fake.json() == {"src": FROM.lstrip("+"), "dst": TO.lstrip("+"), "text": "Hi", "type": "sms",
                           "url": f"{integration['webhook_url']}?m={message_id}", "method": "POST"}


def test_plivo_v3_callbacks(app, api, fake, run_jobs):
    integration, message_id = sent_through_plivo(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    sent, delivered = plivo_callback("sent"), plivo_callback("delivered")
    assert post_webhook(app, url, form=sent, headers=v3_headers(url, sent)).json == {"status": "accepted"}
    headers = v3_headers(url, delivered)
    assert post_webhook(app, url, form=delivered, headers=headers).json == {"status": "accepted"}
    assert post_webhook(app, url, form=delivered, headers=headers).json == {"status": "duplicate"}
    retried = v3_headers(url, delivered)  # Plivo's retry: same event, new nonce
    assert post_webhook(app, url, form=delivered, headers=retried).json == {"status": "duplicate"}
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "delivered" and kinds(data) == ["queued", "sending", "sent", "sent", "delivered"]


def test_plivo_v2_callback_and_nonce_replay(app, api, fake, run_jobs):
    integration, message_id = sent_through_plivo(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    nonce = "98765432109876543210"
    v2 = {"X-Plivo-Signature-V2": plivo_v2_sign(PLIVO_TOKEN, url, nonce), "X-Plivo-Signature-V2-Nonce": nonce}
    undelivered = plivo_callback("undelivered", ErrorCode="50")
    assert post_webhook(app, url, form=undelivered, headers=v2).json == {"status": "accepted"}
    # V2 does not sign the parameters: the captured signature with other parameters is not taken again.
    assert post_webhook(app, url, form=plivo_callback("delivered"), headers=v2).json == {"status": "duplicate"}
    other_nonce = {**v2, "X-Plivo-Signature-V2-Nonce": "1" * 20}
    assert post_webhook(app, url, form=plivo_callback("delivered"), headers=other_nonce).status_code == 401
    run_jobs()
    data = message(api, message_id)
    assert data["status"] == "failed"
    assert data["last_error"] == "Not delivered: the destination number is invalid (Plivo error 50)"


def test_plivo_webhook_refusals(app, api, fake, run_jobs):
    integration, message_id = sent_through_plivo(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    form = plivo_callback("failed", ErrorCode="900")
    headers = v3_headers(url, form)
    assert post_webhook(app, url, form=form).status_code == 401
    assert post_webhook(app, url, form=form, headers=v3_headers(url, form, token="other-token")).status_code == 401
    assert post_webhook(app, url, form=plivo_callback("delivered"), headers=headers).status_code == 401
    other_id = url.replace("?m=", "?m=f")
    assert post_webhook(app, other_id, form=form, headers=headers).status_code == 401
    assert post_webhook(app, url, form=form, headers={**headers, "X-Plivo-Signature-V3-Nonce": "1"}).status_code == 401
    assert post_webhook(app, url, body=b"<xml/>", headers=headers, content_type="text/xml").status_code == 400
    inbound = [("From", "14155550123"), ("To", "14155552671"), ("Text", "hi"), ("MessageUUID", PLIVO_UUID)]
    assert post_webhook(app, url, form=inbound, headers=v3_headers(url, inbound)).status_code == 400
    assert post_webhook(app, url, form=form + [("Pad", "x" * (1024 * 1024))], headers=headers).status_code == 413
    assert post_webhook(app, f"{PUBLIC}/api/webhooks/plivo/{'C' * 22}/", form=form,
                        headers=headers).status_code == 404
    assert db.session.query(WebhookEvent).count() == 0
    run_jobs()
    assert message(api, message_id)["status"] == "sent"


def test_plivo_bad_recipient_fails_at_once(api, fake, run_jobs):
    fake.on("POST", PLIVO_PATH, lambda request: json_response({"api_id": "x", "error": "invalid dst parameter"}, 400))
    message_id = send(api, configure(api, "plivo", plivo_fields())["id"])
    run_jobs()
    assert_failed_without_retry(message(api, message_id), "invalid dst parameter", "HTTP 400")


def test_plivo_429_and_server_error(api, fake, run_jobs):
    replies = iter([json_response({"api_id": "x", "error": "too many requests"}, 429),
                    json_response({"api_id": "x", "error": "internal error"}, 500)])
    fake.on("POST", PLIVO_PATH, lambda request: next(replies))
    integration = configure(api, "plivo", plivo_fields())
    first = send(api, integration["id"])
    run_jobs()
    assert_retry_scheduled(message(api, first), "too many requests")
    second = send(api, integration["id"])
    run_jobs()
    assert_retry_scheduled(message(api, second), "internal error")


def test_plivo_vectors():
    adapter = Plivo(ProviderSettings())
    v3 = vector("Plivo X-Plivo-Signature-V3 (POST)")
    form = tuple(v3["inputs"]["post_params"].items())
    url, nonce = v3["inputs"]["url"], v3["inputs"]["X-Plivo-Signature-V3-Nonce"]
    assert plivo_v3_sign(v3["secret"], url, form, nonce) == v3["expected"]
    headers = {"x-plivo-signature-v3": f"bm90IHRoaXMgb25l,{v3['expected']}", "x-plivo-signature-v3-nonce": nonce}
    with pytest.raises(WebhookRejected) as refused:  # the signature holds (second of two); an inbound SMS
        adapter.verify_webhook({}, {"auth_token": v3["secret"]}, InboundWebhook("POST", url, headers, b"", form=form))
    assert refused.value.status == 400
    with pytest.raises(WebhookRejected) as forged:
        adapter.verify_webhook({}, {"auth_token": v3["secret"]},
                               InboundWebhook("POST", url, headers, b"", form=form[:-1]))
    assert forged.value.status == 401

    v2 = vector("Plivo X-Plivo-Signature-V2")
    url, nonce = v2["inputs"]["url"], v2["inputs"]["X-Plivo-Signature-V2-Nonce"]
    assert plivo_v2_sign(v2["secret"], url, nonce) == v2["expected"]
    headers = {"x-plivo-signature-v2": v2["expected"], "x-plivo-signature-v2-nonce": nonce}
    with pytest.raises(WebhookRejected) as refused:
        adapter.verify_webhook({}, {"auth_token": v2["secret"]}, InboundWebhook("POST", url, headers, b"", form=form))
    assert refused.value.status == 400
    with pytest.raises(WebhookRejected) as forged:
        adapter.verify_webhook({}, {"auth_token": v2["secret"]},
                               InboundWebhook("POST", url + "/other", headers, b"", form=form))
    assert forged.value.status == 401


# --- Amazon SNS ---------------------------------------------------------------------------------------------


def sns_fields(key_id="AKIAIOSFODNN7EXAMPLE", secret="secret"):
    return {"from_phone_number": FROM, "region": "us-east-1", "access_key_id": key_id, "secret_access_key": secret}


@pytest.fixture
def recorded_moto(monkeypatch, tmp_path):
    """moto's own request recorder, writing to a file of this test: what SNS was really sent."""
    from moto.moto_api import recorder

    monkeypatch.setattr(recorder, "_location", str(tmp_path / "moto-requests"))
    recorder.reset_recording()
    recorder.start_recording()
    yield lambda: [json.loads(line) for line in recorder.download_recording().splitlines()]
    recorder.stop_recording()


def test_sns_publishes_a_transactional_sms(api, moto_keys, recorded_moto, run_jobs):
    from moto.sns.models import sns_backends

    keys = moto_keys("sns:Publish")
    integration = configure(api, "sns", sns_fields(*keys))
    assert "webhook_url" not in integration and integration["rate_limit"] == 20.0
    without_number = configure(api, "sns", {**sns_fields(*keys), "from_phone_number": ""})
    ids = [send(api, integration["id"]), send(api, without_number["id"], body="Hello")]
    run_jobs()
    entries = [entry for entry in recorded_moto() if b"Action=Publish" in base64.b64decode(entry["body"])]
    assert all(entry["headers"]["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={keys[0]}/")
               for entry in entries)
    published = [dict(parse_qsl(base64.b64decode(entry["body"]).decode())) for entry in entries]
    for message_id, text, sent in zip(ids, ("Hi", "Hello"), published, strict=True):
        data = message(api, message_id)
        assert data["status"] == "sent" and data["provider_message_id"]
        assert any(backend["us-east-1"].sms_messages.get(data["provider_message_id"]) == (TO, text)
                   for backend in sns_backends.values())
        assert {k: v for k, v in sent.items() if not k.startswith("MessageAttributes")} == {
            "Action": "Publish", "Version": "2010-03-31", "PhoneNumber": TO, "Message": text}
        count = sum(1 for k in sent if k.endswith(".Name"))
        assert {sent[f"MessageAttributes.entry.{n}.Name"]: (sent[f"MessageAttributes.entry.{n}.Value.DataType"],
                                                           sent[f"MessageAttributes.entry.{n}.Value.StringValue"])
                for n in range(1, count + 1)} == {
            "AWS.SNS.SMS.SMSType": ("String", "Transactional"),
            **({"AWS.MM.SMS.OriginationNumber": ("String", FROM)} if text == "Hi" else {})}


def test_sns_refuses_a_number_that_is_not_e164(app, moto_keys):
    key_id, secret = moto_keys("sns:Publish")
    adapter = AmazonSNS(ProviderSettings(aws_endpoint_url=app.config["AWS_ENDPOINT_URL"], timeout=3))
    with pytest.raises(GiveUp) as refused:
        adapter.send(sns_fields(key_id, secret), {"secret_access_key": secret},
                     OutboundMessage(id="m1", channel="sms", to="+0123", body="Hi"), sandbox=False)
    assert "InvalidParameter" in refused.value.reason and "E164" in refused.value.reason


def sns_error(code, text, status):
    return Response(f'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
                    f"<Code>{code}</Code><Message>{text}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
                    "</ErrorResponse>", status=status, content_type="text/xml")


@pytest.fixture
def sns_fake(app, monkeypatch, httpserver):
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", httpserver.url_for("/").rstrip("/"))
    return Fake(httpserver)


def test_sns_invalid_recipient_fails_at_once(api, sns_fake, run_jobs):
    sns_fake.on("POST", "/", lambda request: sns_error(
        "InvalidParameter", f"Invalid parameter: PhoneNumber Reason: {TO} is not valid to publish to", 400))
    message_id = send(api, configure(api, "sns", sns_fields())["id"])
    run_jobs()
    assert_failed_without_retry(message(api, message_id), "PhoneNumber", "not valid to publish to")
    assert sns_fake.form()["PhoneNumber"] == TO and len(sns_fake.requests) == 1


def test_sns_throttling_is_retried(api, sns_fake, run_jobs):
    sns_fake.on("POST", "/", lambda request: sns_error("Throttling", "Rate exceeded", 400))
    message_id = send(api, configure(api, "sns", sns_fields())["id"])
    run_jobs()
    assert_retry_scheduled(message(api, message_id), "Throttling")


def test_sns_has_no_webhook_address(app, api):
    integration = configure(api, "sns", sns_fields())
    public_id = db.session.get(Integration, integration["id"]).public_id
    assert post_webhook(app, f"{PUBLIC}/api/webhooks/sns/{public_id}/", form={"a": "b"}).status_code == 404


# --- sandbox ------------------------------------------------------------------------------------------------


def test_sandbox_stops_before_the_network_for_every_provider(app, api, fake, monkeypatch, run_jobs):
    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", fake.server.url_for("/").rstrip("/"))
    fake.on("POST", twilio_path(), twilio_messages).on("POST", "/sms/json", vonage_reply())
    fake.on("POST", PLIVO_PATH, plivo_queued).on("POST", "/", lambda request: sns_error("InternalError", "no", 500))
    ids = [send(api, configure(api, provider, fields, sandbox=True)["id"]) for provider, fields in (
        ("twilio", twilio_fields()), ("vonage", vonage_fields()), ("plivo", plivo_fields()), ("sns", sns_fields()))]
    run_jobs()
    for message_id in ids:
        data = message(api, message_id)
        assert data["status"] == "sandboxed" and data["provider_message_id"] is None, data
        assert kinds(data) == ["queued", "sending", "sandboxed"]
    assert fake.requests == []


def test_twilio_callback_with_a_nul_character_is_no_500(app, api, fake, run_jobs):
    integration, message_id = sent_through_twilio(api, fake, run_jobs)
    url = f"{integration['webhook_url']}?m={message_id}"
    form, headers = twilio_callback(url, "delivered", Body="a\x00b")
    response = post_webhook(app, url, form=form, headers=headers)  # stored as sent (PostgreSQL too), applied
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    assert message(api, message_id)["status"] == "delivered"


def test_vonage_receipts_by_get_are_verified_and_applied(app, api, fake, run_jobs):
    integration, message_id = sent_through_vonage(api, fake, run_jobs)
    path = integration["webhook_url"].replace("https://switchboard.example.com", "")
    from urllib.parse import urlencode
    receipt = vonage_receipt(message_id, "delivered")
    assert app.test_client().get(f"{path}?{urlencode(receipt)}").json == {"status": "accepted"}
    forged = {**vonage_receipt(message_id, "failed"), "sig": "0" * 32}
    assert app.test_client().get(f"{path}?{urlencode(forged)}").status_code == 401
    run_jobs()
    assert message(api, message_id)["status"] == "delivered"
