"""Webhook intake: signed WhatsApp status webhooks through verify + store + enqueue, served by
gunicorn with the configuration of scripts/run.sh, against a bare Flask endpoint served the
same way in the same run, both loaded in turns by the lean clients of bench/intake_load.py.
Prints both req/s, the ratio (target >= 0.7) and p99 latency.

    .venv/bin/python bench/webhook_intake.py [--seconds 15] [--rounds 5] [--clients 8] [--database-url URL]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from redis import Redis  # noqa: E402

from bench.intake_load import BARE, GUNICORN, REQUESTS_PER_CONNECTION, Post, report, serve, take_turns  # noqa: E402

APP_SECRET = "bench-app-secret"


def status_webhook(wamid: str) -> bytes:
    """A WhatsApp 'delivered' status, as Meta sends it."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                                       "statuses": [{"id": wamid, "status": "delivered",
                                                     "timestamp": str(int(time.time())), "recipient_id": "14155552671"}]}}]}]},
                      separators=(",", ":")).encode()


def signed_statuses(path: str):
    """posts(round, client): a unique status in each request, signed with the app secret."""
    def posts(round_number: int, client: int) -> Iterator[Post]:
        for n in itertools.count():
            body = status_webhook(f"wamid.bench{round_number}.{client}.{n}")
            signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            yield path, body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}, None
    return posts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--database-url", help="a scratch database (emptied); default: SQLite in a temporary folder")
    args = parser.parse_args()

    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.services import accounts
    from app.services import integrations as svc
    from config import database_url

    workdir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    database = database_url(args.database_url or f"sqlite:///{workdir / 'bench.db'}")
    keys = Fernet.generate_key().decode()
    settings = {"APP_ENV": "production", "SECRET_KEY": "bench", "ENCRYPTION_KEYS": keys, "DATABASE_URL": database,
                "REDIS_URL": args.redis_url, "RQ_QUEUE": "bench-intake", "PUBLIC_BASE_URL": "http://127.0.0.1",
                "INSTANCE_PATH": str(workdir)}
    Redis.from_url(args.redis_url).flushdb()
    app = create_app({"SQLALCHEMY_DATABASE_URI": database, "ENCRYPTION_KEYS": keys, "SECRET_KEY": "bench",
                      "REDIS_URL": args.redis_url})
    with app.app_context():
        db.drop_all()
        db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade(directory=str(ROOT / "migrations"))
        org = accounts.find_or_create_organization("Bench")
        integration, _ = svc.create_integration(org.id, None, "whatsapp", "Bench WhatsApp", "cloud_api")
        svc.configure(integration, {"phone_number_id": "106540352242922", "business_account_id": "102290129340398",
                                    "access_token": "EAAB", "app_secret": APP_SECRET}, None, partial=True)
        db.session.commit()
        path = f"/api/webhooks/cloud_api/{integration.public_id}/"
    env = {**os.environ, **settings}

    endpoints = {BARE[0]: (BARE[1], "/hook"), "webhook intake": ("wsgi:app", path)}
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for name, (target, _) in endpoints.items():
            servers[name] = serve(target, env)
        tallies = take_turns({name: port for name, (_, port) in servers.items()}, args.rounds, args.seconds,
                             args.clients, {name: signed_statuses(url) for name, (_, url) in endpoints.items()})
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            process.wait(timeout=30)
    with app.app_context():
        from app.models import WebhookEvent
        stored = db.session.query(WebhookEvent).count()
    queued = Redis.from_url(args.redis_url).llen("rq:queue:bench-intake")

    print(f"gunicorn {' '.join(GUNICORN)}, {args.clients} clients (keep-alive, a new connection every "
          f"{REQUESTS_PER_CONNECTION} requests), {args.seconds:g} s per endpoint in {args.rounds} alternating rounds, "
          f"database {database.split('://')[0]}")
    print()
    report(tallies, "webhook intake", 0.7)
    print(f"{stored} webhook events stored, {queued} jobs queued")


if __name__ == "__main__":
    main()
