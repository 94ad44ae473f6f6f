"""Meta's data deletion and deauthorize callbacks: the signed_request vector of the reference
(/work/shared/reference/vectors.json, V7), what each callback deletes, the public status page, and
forged, malformed, oversize and wrong-organisation requests refused with 4xx, nothing changed."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from app.crypto import vault
from app.extensions import db
from app.models import (Contact, Conversation, ConversationMessage, DataDeletionRequest, Integration, MetaApp,
                        PendingConnection)
from app.services import integrations as svc
from tests.conftest import point_at
from tests.meta_fake import APP_ID, FakeMeta
from tests.sendgrid_fake import FakeSendGrid
from tests.test_meta_connect import PAGE_1, connect_first_page, consent_and_return, meta_accounts
from tests.test_outbound import make_email

# V7 of the reference: this secret signs this payload for user 218471.
VECTOR_SECRET = "test_app_secret_0123456789abcdef"
VECTOR = ("4AQNQMGvsaRNHmcrCVLK_eD2UEV-ri4gBiVaTdDCLf4.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOTE4NDA0"
          "MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNlcl9pZCI6IjIxODQ3MSJ9")
PERSON = "218471"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict | str, secret: str = VECTOR_SECRET) -> str:
    encoded = b64url(payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
    return b64url(hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()) + "." + encoded


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def meta(app, httpserver, monkeypatch):
    fake = FakeMeta(httpserver, app_secret=VECTOR_SECRET)
    fake.person = PERSON
    point_at(app, monkeypatch, "META_GRAPH_API_BASE", fake.base)
    monkeypatch.setitem(app.config, "META_OAUTH_DIALOG_URL", fake.dialog_url)
    return fake


@pytest.fixture
def public_id(api, meta):
    response = api.post("/api/meta/credentials/", json={"app_id": APP_ID, "app_secret": VECTOR_SECRET})
    assert response.status_code == 200
    return response.json["data_deletion_url"].split("/api/meta/")[1].split("/")[0]


@pytest.fixture
def connected(browser, admin, meta, public_id):
    connect_first_page(browser, meta)
    return meta_accounts(admin.organization_id)


def conversation(integration: Integration, user_id: str, contact: Contact | None = None) -> Conversation:
    record = Conversation(organization_id=integration.organization_id, integration_id=integration.id,
                          channel="messenger", external_user_id=user_id, contact_id=contact.id if contact else None)
    db.session.add(record)
    db.session.flush()
    for text in ("Hello", "Are you open today?"):
        db.session.add(ConversationMessage(organization_id=integration.organization_id, conversation_id=record.id,
                                           integration_id=integration.id, direction="in", text=text))
    db.session.commit()
    return record


def counts() -> dict[str, int]:
    db.session.expire_all()
    return {model.__name__: db.session.scalar(db.select(db.func.count()).select_from(model))
            for model in (Conversation, ConversationMessage, Contact, PendingConnection, DataDeletionRequest)}


def test_the_reference_vector_verifies():
    from app.providers.meta_oauth import parse_signed_request
    assert parse_signed_request(VECTOR, VECTOR_SECRET)["user_id"] == PERSON
    assert signed('{"algorithm":"HMAC-SHA256","expires":1291840400,"issued_at":1291836800,"user_id":"218471"}') == VECTOR


def test_data_deletion_removes_the_persons_grant_and_conversations_and_answers_a_status_url(
        app, api, browser, client, admin, meta, public_id, connected, httpserver, monkeypatch):
    sendgrid = FakeSendGrid(httpserver)
    point_at(app, monkeypatch, "SENDGRID_API_BASE", sendgrid.url)
    make_email(api)
    facebook, instagram = connected
    known_only_here = Contact(organization_id=admin.organization_id, name="Facebook person")
    customer = Contact(organization_id=admin.organization_id, name="Jane", email="jane@example.com")
    db.session.add_all([known_only_here, customer])
    db.session.commit()
    conversation(facebook, PERSON, known_only_here)
    conversation(facebook, PERSON + "9", customer)  # someone else: kept
    consent_and_return(browser, meta)  # a second grant, not yet picked
    before = counts()

    response = client.post(f"/api/meta/{public_id}/data-deletion/", data={"signed_request": VECTOR})
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"url", "confirmation_code"} and body["confirmation_code"].isalnum()
    assert body["url"] == f"https://switchboard.example.com/meta/deletion/{body['confirmation_code']}"

    after = counts()
    assert after["Conversation"] == before["Conversation"] - 1
    assert after["ConversationMessage"] == before["ConversationMessage"] - 2
    assert after["Contact"] == before["Contact"] - 1 and db.session.get(Contact, customer.id) is not None
    assert after["PendingConnection"] == 0
    for account in meta_accounts(admin.organization_id):
        assert account.secrets_ciphertext is None and account.needs_reconnect
        assert account.last_error == "The person who connected it asked Meta to delete their data — reconnect needed"
    record = db.session.scalar(db.select(DataDeletionRequest))
    assert (record.kind, record.app_scoped_user_id, record.status) == ("deletion", PERSON, "completed")
    assert record.summary == {"connections": 2, "pending_connections": 1, "conversations": 1, "messages": 2,
                              "contacts": 1}
    assert meta.calls("DELETE", f"{PAGE_1}/subscribed_apps") == []  # no call to Meta: the grant is gone
    # The admins are told once, naming both accounts.
    from app.queue import task_queue
    assert len(task_queue().jobs) == 1

    status = client.get(f"/meta/deletion/{body['confirmation_code']}")
    assert status.status_code == 200
    page = status.get_data(as_text=True)
    assert body["confirmation_code"] in page and "Completed" in page
    assert "Access tokens of 2 connected accounts" in page and "1 conversation with 2 messages" in page
    assert "Acme Bakery" not in page and PERSON not in page
    assert client.get("/meta/deletion/unknown-code").status_code == 404


def test_deauthorize_removes_the_grant_and_keeps_conversations(client, admin, meta, public_id, connected):
    facebook, _ = connected
    conversation(facebook, PERSON)
    before = counts()
    response = client.post(f"/api/meta/{public_id}/deauthorize/", data={"signed_request": VECTOR})
    assert response.status_code == 200 and set(response.json) == {"url", "confirmation_code"}
    after = counts()
    assert after["Conversation"] == before["Conversation"] and after["ConversationMessage"] == before["ConversationMessage"]
    assert all(a.secrets_ciphertext is None and a.needs_reconnect for a in meta_accounts(admin.organization_id))
    record = db.session.scalar(db.select(DataDeletionRequest))
    assert record.kind == "deauthorize" and record.summary["connections"] == 2
    page = client.get(f"/meta/deletion/{record.confirmation_code}").get_data(as_text=True)
    assert "App removed (deauthorized)" in page and "conversation" not in page


def test_a_request_for_someone_who_granted_nothing_deletes_nothing(client, admin, meta, public_id, connected):
    response = client.post(f"/api/meta/{public_id}/data-deletion/",
                           data={"signed_request": signed({"algorithm": "HMAC-SHA256", "user_id": "5550001"})})
    assert response.status_code == 200
    assert all(svc.get_secrets(a) for a in meta_accounts(admin.organization_id))
    assert db.session.scalar(db.select(DataDeletionRequest)).summary["connections"] == 0


def _tampered() -> str:
    signature, payload = VECTOR.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["user_id"] = "999"
    return signature + "." + b64url(json.dumps(data).encode())


@pytest.mark.parametrize("form, status", [
    ({"signed_request": signed({"algorithm": "HMAC-SHA256", "user_id": PERSON}, "someone-elses-secret")}, 403),
    ({"signed_request": _tampered()}, 403),
    ({"signed_request": VECTOR.split(".")[0] + "." + VECTOR.split(".")[0]}, 400),
    ({"signed_request": VECTOR.replace(".", "")}, 400),
    ({"signed_request": "abc.!!!"}, 400),
    ({"signed_request": "." + VECTOR.split(".")[1]}, 400),
    ({"signed_request": signed("[1, 2]")}, 400),
    ({"signed_request": signed("not json")}, 400),
    ({"signed_request": signed({"algorithm": "HMAC-SHA1", "user_id": PERSON})}, 400),
    ({"signed_request": signed({"user_id": PERSON})}, 400),
    ({"signed_request": signed({"algorithm": "HMAC-SHA256"})}, 400),
    ({"signed_request": signed({"algorithm": "HMAC-SHA256", "user_id": "../1"})}, 400),
    ({"signed_request": signed({"algorithm": "HMAC-SHA256", "user_id": True})}, 400),
    ({"signed_request": ""}, 400),
    ({}, 400),
    ({"signed_request": "a" * 9000 + "." + "b"}, 413),
])
def test_forged_and_malformed_requests_are_refused_and_change_nothing(client, admin, meta, public_id, connected,
                                                                       form, status):
    for kind in ("data-deletion", "deauthorize"):
        response = client.post(f"/api/meta/{public_id}/{kind}/", data=form)
        assert response.status_code == status, (kind, response.json)
        assert "error" in response.json
    assert all(svc.get_secrets(a) for a in meta_accounts(admin.organization_id))
    assert counts()["DataDeletionRequest"] == 0


def test_oversize_bodies_unknown_addresses_and_other_organisations_are_refused(client, admin, other_admin, meta,
                                                                             public_id, connected):
    big = client.post(f"/api/meta/{public_id}/data-deletion/", data={"signed_request": VECTOR, "pad": "x" * 20_000})
    assert big.status_code == 413
    huge = client.post(f"/api/meta/{public_id}/data-deletion/", data={"signed_request": "x" * 2_000_000})
    assert huge.status_code == 413
    assert client.post("/api/meta/unknown-address/data-deletion/", data={"signed_request": VECTOR}).status_code == 404
    assert client.post(f"/api/meta/{'x' * 300}/deauthorize/", data={"signed_request": VECTOR}).status_code == 404
    assert client.post(f"/api/meta/{public_id}/data-deletion/", json={"signed_request": VECTOR}).status_code == 400
    assert client.get(f"/api/meta/{public_id}/data-deletion/").status_code == 405
    # Another organisation's Meta app (its own secret) at its own address cannot delete here, and this
    # organisation's signed_request at the other address is refused too.
    theirs = MetaApp(organization_id=other_admin.organization_id, app_id="99887766",
                     secrets_ciphertext=vault().encrypt_json({"app_secret": "their-secret"}))
    db.session.add(theirs)
    db.session.commit()
    mine_at_theirs = client.post(f"/api/meta/{theirs.public_id}/data-deletion/", data={"signed_request": VECTOR})
    assert mine_at_theirs.status_code == 403
    theirs_at_mine = client.post(f"/api/meta/{public_id}/data-deletion/",
                                 data={"signed_request": signed({"algorithm": "HMAC-SHA256", "user_id": PERSON},
                                                                "their-secret")})
    assert theirs_at_mine.status_code == 403
    assert all(svc.get_secrets(a) for a in meta_accounts(admin.organization_id))
    assert counts()["DataDeletionRequest"] == 0

