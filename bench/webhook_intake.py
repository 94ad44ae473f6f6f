"""Webhook intake: signed WhatsApp status webhooks through verify + store + enqueue, served by
gunicorn with the configuration of scripts/run.sh, against a bare Flask endpoint served the
same way in the same run. Prints both req/s, the ratio (target >= 0.7) and p99 latency.

    .venv/bin/python bench/webhook_intake.py [--seconds 15] [--rounds 5] [--clients 8] [--database-url URL]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from redis import Redis  # noqa: E402

GUNICORN = ["--workers", "2", "--threads", "4"]  # as scripts/run.sh serves the app
APP_SECRET = "bench-app-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(target: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *GUNICORN, target],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn {target} did not start")


def status_webhook(number: int) -> bytes:
    """A WhatsApp 'delivered' status, unique per request, as Meta sends it."""
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                                       "statuses": [{"id": f"wamid.bench{number}", "status": "delivered",
                                                     "timestamp": str(int(time.time())), "recipient_id": "14155552671"}]}}]}]},
                      separators=(",", ":")).encode()


def load(port: int, path: str, seconds: float, clients: int) -> tuple[list[float], float, int]:
    """Keep-alive clients posting for `seconds`; returns (each request's latency, seconds taken, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(10**9))
    stop = time.monotonic() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        while time.monotonic() < stop:
            with lock:
                number = next(counter)
            body = status_webhook(number)
            signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            started = time.perf_counter()
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                                  "X-Hub-Signature-256": signature})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.monotonic() - began, errors[0]


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

    # Both servers run side by side and take turns in short rounds (in alternating order), so that
    # load from other processes on the machine weighs on both endpoints alike.
    endpoints = (("bare Flask endpoint", "bench.bare_app:app", "/hook"), ("webhook intake", "wsgi:app", path))
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    results = {name: ([], 0.0, 0) for name, _, _ in endpoints}
    try:
        for name, target, _ in endpoints:
            servers[name] = serve(target, env)
        for name, _, url in endpoints:
            load(servers[name][1], url, 2, args.clients)  # warm up
        for round_number in range(args.rounds):
            for name, _, url in (endpoints if round_number % 2 == 0 else endpoints[::-1]):
                latencies, elapsed, errors = load(servers[name][1], url, args.seconds / args.rounds, args.clients)
                total = results[name]
                results[name] = (total[0] + latencies, total[1] + elapsed, total[2] + errors)
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            process.wait(timeout=30)
    with app.app_context():
        from app.models import WebhookEvent
        stored = db.session.query(WebhookEvent).count()
    queued = Redis.from_url(args.redis_url).llen("rq:queue:bench-intake")

    print(f"gunicorn {' '.join(GUNICORN)}, {args.clients} keep-alive clients, {args.seconds:g} s per endpoint "
          f"in {args.rounds} alternating rounds, database {database.split('://')[0]}")
    print()
    print(f"{'endpoint':<24}{'req/s':>10}{'p99 ms':>10}{'errors':>8}")
    rates = {}
    for name, (latencies, elapsed, errors) in results.items():
        latencies.sort()
        rates[name] = len(latencies) / elapsed
        print(f"{name:<24}{rates[name]:>10.0f}{latencies[int(len(latencies) * 0.99) - 1] * 1000:>10.1f}{errors:>8}")
    ratio = rates["webhook intake"] / rates["bare Flask endpoint"]
    print()
    print(f"ratio {ratio:.2f} (target >= 0.7); {stored} webhook events stored, {queued} jobs queued")


if __name__ == "__main__":
    main()
