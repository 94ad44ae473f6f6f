"""Real parts for the email sending tests: an SMTP server that keeps what it receives, and Amazon SNS
played on loopback (an HTTPS server with a certificate for sns.us-east-1.amazonaws.com, reached through a
test-only name resolution, serving the signing certificate and confirming subscriptions) with a signer that
signs messages as SNS does, written from the reference independently of the code under test."""
from __future__ import annotations

import base64
import json
import socket
import ssl
import uuid
from datetime import UTC, datetime, timedelta

from aiosmtpd.smtp import Envelope
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.providers.smtp_server import RecordingController, free_port, password_authenticator

# --- SMTP ---------------------------------------------------------------------------------------------------


class Mailbox:
    """An aiosmtpd handler that keeps every message and refuses the recipients it is told to."""

    def __init__(self):
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: dict[str, str] = {}  # recipient → the reply to RCPT TO

    async def handle_RCPT(self, server, session, envelope: Envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope: Envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 OK: queued as 4F2A1"


def start_mailbox(tls_context: ssl.SSLContext, username: str, password: str) -> tuple[RecordingController, Mailbox]:
    """STARTTLS required, AUTH (after STARTTLS) for one user, on 127.0.0.1."""
    mailbox = Mailbox()
    controller = RecordingController(mailbox, commands=[], hostname="127.0.0.1", port=free_port(),
                                     server_hostname="mail.test", ready_timeout=5, tls_context=tls_context,
                                     require_starttls=True, authenticator=password_authenticator(username, password),
                                     auth_require_tls=True)
    controller.start()
    return controller, mailbox


# --- Amazon SNS ---------------------------------------------------------------------------------------------

SNS_HOST = "sns.us-east-1.amazonaws.com"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-events"
# The fields SNS signs per message type, in order (AWS "Verifying the signatures of Amazon SNS messages").
SIGNED = {"Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
          "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                                       "Type"]}


class SnsSigner:
    """An RSA key and a certificate for it, standing in for AWS's SNS signing certificate."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                       .sign(self.key, hashes.SHA256()))
        self.pem = certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict, *, version: str = "1", cert_url: str | None = None) -> dict:
        """The message with SignatureVersion, SigningCertURL and Signature as SNS adds them."""
        signed = "".join(f"{k}\n{message[k]}\n" for k in SIGNED[message["Type"]] if k in message).encode()
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(signed, padding.PKCS1v15(), digest)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": cert_url or f"https://{SNS_HOST}/SimpleNotificationService-{uuid.uuid4().hex}.pem"}


def sns_timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ses_notification(event: dict, *, message_id: str | None = None, **extra) -> dict:
    """An SNS Notification carrying an SES event (its Message is the event as a JSON string)."""
    return {"Type": "Notification", "MessageId": message_id or str(uuid.uuid4()), "TopicArn": TOPIC_ARN,
            "Subject": "Amazon SES Email Event Notification", "Message": json.dumps(event),
            "Timestamp": sns_timestamp(),
            "UnsubscribeURL": f"https://{SNS_HOST}/?Action=Unsubscribe&SubscriptionArn={TOPIC_ARN}:1", **extra}


def subscription_confirmation(token: str) -> dict:
    return {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": token,
            "TopicArn": TOPIC_ARN,
            "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.\nTo confirm the subscription, "
                       "visit the SubscribeURL included in this message.",
            "SubscribeURL": f"https://{SNS_HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}&Token={token}",
            "Timestamp": sns_timestamp()}


def resolve_to_loopback(monkeypatch, host: str, port: int) -> None:
    """Name resolution for this test: `host` (any port asked) answers 127.0.0.1:`port`; other names as usual.
    The code under test still connects by the real name, so TLS checks the certificate against it."""
    real = socket.getaddrinfo

    def getaddrinfo(name, asked_port, *args, **kwargs):
        if isinstance(name, (str, bytes)) and (name.decode() if isinstance(name, bytes) else name).lower() == host:
            return real("127.0.0.1", port, *args, **kwargs)
        return real(name, asked_port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
