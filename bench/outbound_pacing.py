"""Outbound pacing: 10,000 messages through real RQ workers to a local fake provider that
answers after 100 ms, with the integration's rate_limit at 80 messages per second.

Prints the achieved rate as a share of the limit (target: at least 95%) and the busiest
one-second window seen by the provider (it must never exceed the limit), next to a baseline
from the same run: the same workers sending unpaced, which shows the capacity the limiter holds back.

    .venv/bin/python bench/outbound_pacing.py [--messages 10000] [--rate 80] [--workers 8]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
import requests  # noqa: E402
from redis import Redis  # noqa: E402


class SlowProvider:
    """bench/slow_provider.py in a process of its own (see there why)."""

    def __init__(self, latency: float):
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "slow_provider.py"),
                                         "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def count(self) -> int:
        return requests.get(f"{self.url}/_bench/count", timeout=10).json()["count"]

    def reset(self) -> None:
        requests.post(f"{self.url}/_bench/reset", timeout=10).raise_for_status()

    def arrivals(self) -> tuple[list[float], float]:
        """(arrival moments, longest garbage-collection pause of the provider's process)"""
        answer = requests.get(f"{self.url}/_bench/arrivals", timeout=30).json()
        return answer["arrivals"], answer["longest_gc_pause"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def busiest_window(times: list[float], width: float = 1.0) -> int:
    times, best, start = sorted(times), 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(app, args, env, provider, integration_id, count: int, rate: float | None) -> dict:
    from app.extensions import db
    from app.models import Integration, Message
    from app.services import messaging

    with app.app_context():
        integration = db.session.get(Integration, integration_id)
        integration.rate_limit = rate if rate else 10_000.0
        db.session.commit()
        organization_id = integration.organization_id
    provider.reset()
    # Every message is stored and queued before the workers start, so this process's CPU goes to
    # the fake provider alone while they send.
    with app.app_context():
        for first in range(0, count, 1000):
            batch = [{"to": f"c{n}@example.com", "subject": "Hello", "body": "Hi"}
                     for n in range(first, min(count, first + 1000))]
            _, _, errors = messaging.create_bulk(organization_id, {"integration_id": integration_id,
                                                                  "messages": batch})
            assert not errors, errors
    workers = [subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(args.workers)]
    try:
        deadline = time.monotonic() + count / (rate or 50) * 3 + 60
        while provider.count() < count and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    with app.app_context():
        db.session.query(Message).delete()
        db.session.commit()
    arrivals, longest_gc_pause = provider.arrivals()
    arrivals.sort()
    if rate and os.environ.get("PACING_DUMP"):
        Path(os.environ["PACING_DUMP"]).write_text("\n".join(f"{a:.6f}" for a in arrivals))
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    achieved = (len(arrivals) - 1) / span if span else float("nan")
    return {"sent": len(arrivals), "seconds": span, "rate": achieved, "busiest": busiest_window(arrivals),
            "longest_gc_pause": longest_gc_pause}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--baseline-messages", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=80.0)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--database-url", help="a scratch database (emptied); default: SQLite in a temporary folder")
    args = parser.parse_args()

    from flask_migrate import upgrade

    from app import create_app
    from config import database_url
    from app.extensions import db
    from app.services import accounts
    from app.services import integrations as svc

    workdir = Path(tempfile.mkdtemp(prefix="bench-pacing-"))
    provider = SlowProvider(args.latency)
    settings = {"APP_ENV": "testing", "SECRET_KEY": "bench", "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "SQLALCHEMY_DATABASE_URI": database_url(args.database_url or f"sqlite:///{workdir / 'bench.db'}"), "REDIS_URL": args.redis_url,
                "RATELIMIT_STORAGE_URI": args.redis_url, "RQ_QUEUE": "bench-pacing",
                "SENDGRID_API_BASE": provider.url}
    Redis.from_url(args.redis_url).flushdb()
    app = create_app(settings)
    with app.app_context():
        db.drop_all()
        db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade(directory=str(ROOT / "migrations"))
        org = accounts.find_or_create_organization("Bench")
        integration, _ = svc.create_integration(org.id, None, "email", "Bench mail", "sendgrid")
        svc.configure(integration, {"from_email": "bench@example.com", "api_key": "SG.bench"}, None, partial=True)
        db.session.commit()
        integration_id = integration.id
    env = {**os.environ, "APP_ENV": "testing", "SECRET_KEY": "bench", "ENCRYPTION_KEYS": settings["ENCRYPTION_KEYS"],
           "DATABASE_URL": settings["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": args.redis_url,
           "RQ_QUEUE": "bench-pacing", "SENDGRID_API_BASE": provider.url, "INSTANCE_PATH": str(workdir)}

    print(f"{args.workers} RQ workers, provider latency {args.latency * 1000:.0f} ms, "
          f"database {settings['SQLALCHEMY_DATABASE_URI'].split('://')[0]}")
    try:
        baseline = run(app, args, env, provider, integration_id, args.baseline_messages, None)
        paced = run(app, args, env, provider, integration_id, args.messages, args.rate)
    finally:
        provider.stop()
    print()
    print(f"{'run':<28}{'messages':>10}{'seconds':>10}{'msg/s':>10}{'busiest 1 s':>14}{'share of limit':>16}")
    print(f"{'baseline: unpaced':<28}{baseline['sent']:>10}{baseline['seconds']:>10.1f}{baseline['rate']:>10.1f}"
          f"{baseline['busiest']:>14}{'':>16}")
    share = paced["rate"] / args.rate
    print(f"{f'paced at {args.rate:g}/s':<28}{paced['sent']:>10}{paced['seconds']:>10.1f}{paced['rate']:>10.1f}"
          f"{paced['busiest']:>14}{share:>15.1%}")
    print()
    print(f"achieved {share:.1%} of the limit (target >= 95%); busiest one-second window {paced['busiest']} "
          f"(limit {args.rate:g}: {'held' if paced['busiest'] <= args.rate else 'EXCEEDED'})")
    print(f"longest garbage-collection pause of the fake provider's process during the paced run: "
          f"{paced['longest_gc_pause'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
