"""Test fixtures with real parts: a real database (SQLite file, or PostgreSQL when
TEST_DATABASE_URL is set), a real Redis (TEST_REDIS_URL, default database 15 of the
local server) and a real RQ worker in burst mode."""
from __future__ import annotations

import contextvars
import os
import re

import pytest
from cryptography.fernet import Fernet
from flask.testing import FlaskClient
from flask_migrate import upgrade
from redis import Redis

from app import create_app
from app.extensions import db
from app.models import Organization, User
from app.queue import AppWorker, task_queue
from app.services import accounts

TEST_KEY = Fernet.generate_key().decode()
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "correct horse battery"


class IsolatedClient(FlaskClient):
    """Each request runs in an empty context, so it gets its own app context, `g` and
    database session, as in production, instead of reusing the test's."""

    def open(self, *args, **kwargs):
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    database = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    from config import database_url

    app = create_app({
        "APP_ENV": "testing",
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "ENCRYPTION_KEYS": TEST_KEY,
        "SQLALCHEMY_DATABASE_URI": database_url(database),
        "REDIS_URL": REDIS_URL,
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "RQ_QUEUE": "switchboard-test",
        "PUBLIC_BASE_URL": "https://switchboard.example.com",
        "ALLOW_PRIVATE_NETWORK": False,
        "PROVIDER_TIMEOUT_SECONDS": 3.0,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",  # hundreds of users: production's scrypt would cost minutes
    })
    app.test_client_class = IsolatedClient
    with app.app_context():
        db.drop_all()
        db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade()  # the real migrations, on SQLite or PostgreSQL
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def clean_state(app):
    """Every test starts with empty tables and an empty Redis database."""
    with app.app_context():
        yield
        db.session.rollback()
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
    Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture
def redis_conn():
    return Redis.from_url(REDIS_URL)


@pytest.fixture
def run_jobs(app):
    """Run every queued job with a real RQ worker in burst mode; return how many ran."""
    def run() -> None:
        queue = task_queue()
        AppWorker([queue], connection=queue.connection, app=app).work(burst=True)
        db.session.expire_all()
    return run


def make_user(org_name: str, email: str, role: str = "admin") -> User:
    org = accounts.find_or_create_organization(org_name)
    user, errors = accounts.add_user(org, email, PASSWORD, role)
    assert not errors, errors
    db.session.commit()
    return user


@pytest.fixture
def admin(app) -> User:
    return make_user("Acme", "admin@acme.example.com")


@pytest.fixture
def other_admin(app) -> User:
    return make_user("Globex", "admin@globex.example.com")


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class Browser:
    """A test client that signs in and posts forms with their CSRF token, as a browser would."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, url, **kw):
        return self.client.get(url, **kw)

    def post(self, url, data=None, token_from: str | None = None, **kw):
        if self.token is None or token_from:
            self.token = csrf_token_from(self.client.get(token_from or "/account/password").get_data(as_text=True))
        return self.client.post(url, data={**(data or {}), "csrf_token": self.token}, **kw)

    def login(self, email: str, password: str = PASSWORD):
        page = self.client.get("/login").get_data(as_text=True)
        response = self.client.post("/login", data={"email": email, "password": password,
                                                    "csrf_token": csrf_token_from(page)})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.token = None
        return self


@pytest.fixture
def browser(app, admin) -> Browser:
    return Browser(app.test_client()).login(admin.email)


class Api:
    def __init__(self, client, token):
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):
        def call(url, **kw):
            return getattr(self.client, method)(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)
        return call


@pytest.fixture
def api(app, admin) -> Api:
    token = accounts.create_api_token(admin)
    db.session.commit()
    return Api(app.test_client(), token)


@pytest.fixture
def other_api(app, other_admin) -> Api:
    token = accounts.create_api_token(other_admin)
    db.session.commit()
    return Api(app.test_client(), token)


__all__ = ["Organization", "PASSWORD", "make_user"]


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto in server mode on loopback: boto3 reaches it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def point_at(app, monkeypatch, setting: str, url: str) -> None:
    """Point one provider's base URL at a local server for this test."""
    monkeypatch.setitem(app.config, setting, url.rstrip("/"))


@pytest.fixture
def moto_keys(app, monkeypatch, moto_endpoint):
    """Make an IAM user allowed `action` in moto, then have moto check every request's
    SigV4 signature for the rest of the test. Returns (access key id, secret)."""
    import json
    import uuid

    import boto3
    import requests

    monkeypatch.setitem(app.config, "AWS_ENDPOINT_URL", moto_endpoint)
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint,
                       aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="setup")
    previous = []

    def make(action: str) -> tuple[str, str]:
        assert not previous, "make one key per test: signatures are checked once the first exists"
        user = f"switchboard-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="allow", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        previous.append(requests.post(f"{moto_endpoint}/moto-api/reset-auth", data=b"0", timeout=5).json())
        return key["AccessKeyId"], key["SecretAccessKey"]

    yield make
    if previous:
        requests.post(f"{moto_endpoint}/moto-api/reset-auth",
                      data=previous[0]["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"].encode(), timeout=5)
