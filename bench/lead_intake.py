"""Lead intake: JSON sign-up posts (POST /api/signup/<public id>/ with X-API-Key) through store +
upsert + tag + enrol, served by gunicorn with the configuration of scripts/run.sh, against a bare
Flask endpoint served the same way in the same run, both loaded in turns by the lean clients of
bench/intake_load.py. RQ workers (`python worker.py`) process the
submissions after the load (--process during: while it runs, sharing the cores). People repeat,
with their email and phone written differently each time.

Prints both req/s, the ratio (target >= 0.6), p99 latency, how long processing took to finish after
the load, and the number of duplicate contacts (target 0).

    .venv/bin/python bench/lead_intake.py [--seconds 15] [--rounds 5] [--clients 8] [--people 300]
                                          [--workers 2] [--process after|during] [--database-url URL]
"""
from __future__ import annotations

import argparse
import json
import os
import random
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

FORM_FIELDS = [{"name": "email", "type": "email", "label": "Email"},
               {"name": "phone", "type": "phone", "label": "Phone"},
               {"name": "first_name", "type": "text", "label": "First name"}]


def sign_up(person: int, rng: random.Random) -> bytes:
    """One of `people`, written as a person might: the email's case varies, the phone comes in one of
    several formats or not at all; the email is always there, so each person is exactly one contact."""
    email = rng.choice((f"person{person}@example.com", f"Person{person}@Example.com", f"PERSON{person}@example.COM"))
    digits = f"{2_000_000 + person:07d}"
    phone = rng.choice((f"+1415{digits}", f"(415) {digits[:3]}-{digits[3:]}", f"415{digits}",
                        f"+1 415 {digits[:3]} {digits[3:]}", None))
    body = {"email": email, "first_name": f"Person {person}"}
    if phone:
        body["phone"] = phone
    return json.dumps(body).encode()


def sign_ups(path: str, people: int, key: str):
    """posts(round, client): people posting again and again, each remembered when accepted."""
    def posts(round_number: int, client: int) -> Iterator[Post]:
        rng = random.Random(round_number * 1000 + client)
        while True:
            person = rng.randrange(people)
            yield path, sign_up(person, rng), {"Content-Type": "application/json", "X-API-Key": key}, person
    return posts


def start_workers(count: int, env: dict) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15, help="per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--people", type=int, default=300, help="distinct people; each posts many times")
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--process", choices=("after", "during"), default="after",
                        help="start the workers after the load, or with it")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--database-url", help="a scratch database (emptied); default: SQLite in a temporary folder")
    args = parser.parse_args()

    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from app import create_app
    from app.extensions import db
    from app.models import CampaignEnrollment, Contact, SignupSubmission, contact_tags
    from app.services import accounts, campaigns, signups
    from app.services import integrations as svc
    from config import database_url

    workdir = Path(tempfile.mkdtemp(prefix="bench-lead-"))
    database = database_url(args.database_url or f"sqlite:///{workdir / 'bench.db'}")
    keys = Fernet.generate_key().decode()
    settings = {"APP_ENV": "production", "SECRET_KEY": "bench", "ENCRYPTION_KEYS": keys, "DATABASE_URL": database,
                "REDIS_URL": args.redis_url, "RQ_QUEUE": "bench-lead", "PUBLIC_BASE_URL": "http://127.0.0.1",
                "INSTANCE_PATH": str(workdir)}
    Redis.from_url(args.redis_url).flushdb()
    app = create_app({"SQLALCHEMY_DATABASE_URI": database, "ENCRYPTION_KEYS": keys, "SECRET_KEY": "bench",
                      "REDIS_URL": args.redis_url, "RQ_QUEUE": "bench-lead"})
    with app.app_context():
        db.drop_all()
        db.session.execute(db.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade(directory=str(ROOT / "migrations"))
        org = accounts.find_or_create_organization("Bench")
        campaign, errors = campaigns.create(org.id, {"name": "Welcome", "steps": [
            {"channel": "email", "delay_minutes": 24 * 60, "subject": "Hello", "body": "Hi {{first_name}}"}]})
        assert not errors, errors
        integration, _ = svc.create_integration(org.id, None, "signup_page", "Bench sign-ups", "hosted")
        errors = svc.configure(integration, {"form_fields": FORM_FIELDS, "apply_tag": "bench",
                                             "trigger_campaign": "Welcome"}, None, partial=True)
        assert not errors, errors
        key = signups.create_api_key(integration, None)
        db.session.commit()
        path = f"/api/signup/{integration.public_id}/"
    env = {**os.environ, **settings}

    endpoints = {BARE[0]: (BARE[1], "/hook"), "sign-up intake": ("wsgi:app", path)}
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    workers: list[subprocess.Popen] = []
    try:
        for name, (target, _) in endpoints.items():
            servers[name] = serve(target, env)
        if args.process == "during":
            workers = start_workers(args.workers, env)
        tallies = take_turns({name: port for name, (_, port) in servers.items()}, args.rounds, args.seconds,
                             args.clients, {name: sign_ups(url, args.people, key) for name, (_, url) in endpoints.items()})
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            process.wait(timeout=30)

    load_ended = time.monotonic()
    if args.process == "after":
        workers = start_workers(args.workers, env)
    with app.app_context():
        def pending() -> int:
            db.session.rollback()
            return db.session.scalar(select(func.count()).select_from(SignupSubmission)
                                     .where(SignupSubmission.status == "pending"))
        left_at_end = pending()
        while pending() and time.monotonic() - load_ended < 600:
            time.sleep(0.2)
        drained_after = time.monotonic() - load_ended
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
        by_status = dict(db.session.execute(select(SignupSubmission.status, func.count())
                                            .group_by(SignupSubmission.status)).all())
        contacts = db.session.scalar(select(func.count()).select_from(Contact))
        enrolments = db.session.scalar(select(func.count()).select_from(CampaignEnrollment))
        tagged = db.session.scalar(select(func.count()).select_from(contact_tags))
    people_posted = len(tallies["sign-up intake"].accepted)

    print(f"gunicorn {' '.join(GUNICORN)}, {args.clients} clients (keep-alive, a new connection every "
          f"{REQUESTS_PER_CONNECTION} requests), {args.seconds:g} s per endpoint in {args.rounds} alternating rounds, "
          f"{args.workers} RQ workers {args.process} the load, database {database.split('://')[0]}")
    print()
    report(tallies, "sign-up intake", 0.6)
    stored = sum(by_status.values())
    print(f"{stored} submissions stored ({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))}); "
          f"{left_at_end} pending when the load ended, all processed {drained_after:.1f} s after it "
          f"(workers starting included)")
    print(f"{people_posted} people posted; {contacts} contacts, {tagged} tagged, {enrolments} enrolled; "
          f"duplicate contacts: {contacts - people_posted} (target 0)")


if __name__ == "__main__":
    main()
