"""A loopback SendGrid for tests: mail/send as SendGrid answers it, with scripted failures,
and a signer for its Event Webhook (ECDSA P-256 over timestamp + body)."""
from __future__ import annotations

import base64
import gc
import itertools
import json
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug import Response

GOOD_KEY = "SG.good-key"


class FakeSendGrid:
    def __init__(self, httpserver, key: str = GOOD_KEY, latency: float = 0.0):
        self.key, self.latency = key, latency
        self.sent: list[dict] = []  # accepted mail/send bodies, with their arrival time under "_at"
        self.failures: list[tuple[int, dict, dict]] = []  # scripted answers before success: (status, body, headers)
        # Whether this process's garbage collector was on as each request arrived (senders in tests share it).
        self.collector_on_arrival: list[bool] = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(self.mail_send)
        httpserver.expect_request("/v3/scopes").respond_with_json({"scopes": ["mail.send"]})
        self.url = httpserver.url_for("/").rstrip("/")

    def fail_next(self, status: int, message: str = "oops", headers: dict | None = None, times: int = 1):
        self.failures += [(status, {"errors": [{"message": message, "field": None}]}, headers or {})] * times

    def mail_send(self, request):
        self.collector_on_arrival.append(gc.isenabled())
        time.sleep(self.latency)
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return Response(json.dumps({"errors": [{"message": "authorization required"}]}), 401,
                            content_type="application/json")
        with self.lock:
            if self.failures:
                status, body, headers = self.failures.pop(0)
                return Response(json.dumps(body), status, headers=headers, content_type="application/json")
            body = request.get_json()
            body["_at"] = time.monotonic()
            self.sent.append(body)
            message_id = f"sgmsg{next(self.ids)}"
        sandbox = body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable")
        return Response("", 200 if sandbox else 202, headers={"X-Message-Id": message_id})

    def message_ids(self) -> list[str]:
        """Switchboard's id of each accepted mail, in arrival order."""
        return [p["custom_args"]["switchboard_message_id"] for body in self.sent for p in body["personalizations"]]

    def recipients(self) -> list[str]:
        return [p["to"][0]["email"] for body in self.sent for p in body["personalizations"]]


class EventWebhookSigner:
    """Signs Event Webhook posts the way SendGrid does, with a fresh key pair."""

    def __init__(self):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        der = self.private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signature = self.private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp}


def events_body(*events: dict) -> bytes:
    return (json.dumps(list(events)) + "\r\n").encode()
