"""Lead intake: JSON sign-up posts (POST /api/signup/<public id>/ with X-API-Key) through store +
upsert + tag + enrol, served by gunicorn with the configuration of scripts/run.sh, against a bare
Flask endpoint served the same way in the same run. RQ workers (`python worker.py`) process the
submissions after the load (--process during: while it runs, sharing the cores). People repeat,
with their email and phone written differently each time.

Prints both req/s, the ratio (target >= 0.6), p99 latency, how long processing took to finish after
the load, and the number of duplicate contacts (target 0).

    .venv/bin/python bench/lead_intake.py [--seconds 15] [--rounds 5] [--clients 8] [--people 300]
                                          [--workers 2] [--process after|during] [--database-url URL]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
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
FORM_FIELDS = [{"name": "email", "type": "email", "label": "Email"},
               {"name": "phone", "type": "phone", "label": "Phone"},
               {"name": "first_name", "type": "text", "label": "First name"}]


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


def load(port: int, path: str, seconds: float, clients: int, people: int, key: str,
         seed: int = 0) -> tuple[list[float], float, int, set]:
    """Keep-alive clients posting for `seconds`; returns (each request's latency, seconds taken, errors,
    people posted)."""
    latencies: list[float] = []
    errors = [0]
    seen: set[int] = set()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(number: int):
        rng = random.Random(seed * 1000 + number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, posted = [], set()
        while time.monotonic() < stop:
            person = rng.randrange(people)
            body = sign_up(person, rng)
            started = time.perf_counter()
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json", "X-API-Key": key})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status not in (200, 201):
                with lock:
                    errors[0] += 1
            else:
                posted.add(person)
        with lock:
            latencies.extend(mine)
            seen.update(posted)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.monotonic() - began, errors[0], seen


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

    # Both servers run side by side and take turns in short rounds (in alternating order), so that
    # load from other processes on the machine weighs on both endpoints alike.
    endpoints = (("bare Flask endpoint", "bench.bare_app:app", "/hook"), ("sign-up intake", "wsgi:app", path))
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    results = {name: ([], 0.0, 0, set()) for name, _, _ in endpoints}
    workers: list[subprocess.Popen] = []
    try:
        for name, target, _ in endpoints:
            servers[name] = serve(target, env)
        for name, _, url in endpoints:  # warm up (the people posted count: their sign-ups are kept)
            warm_up_people = load(servers[name][1], url, 2, args.clients, args.people, key, seed=99)[3]
            results[name] = (*results[name][:3], warm_up_people)
        if args.process == "during":
            workers = start_workers(args.workers, env)
        for round_number in range(args.rounds):
            for name, _, url in (endpoints if round_number % 2 == 0 else endpoints[::-1]):
                latencies, elapsed, errors, seen = load(servers[name][1], url, args.seconds / args.rounds,
                                                        args.clients, args.people, key, seed=round_number)
                total = results[name]
                results[name] = (total[0] + latencies, total[1] + elapsed, total[2] + errors, total[3] | seen)
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
    people_posted = len(results["sign-up intake"][3])

    print(f"gunicorn {' '.join(GUNICORN)}, {args.clients} keep-alive clients, {args.seconds:g} s per endpoint in "
          f"{args.rounds} alternating rounds, {args.workers} RQ workers {args.process} the load, "
          f"database {database.split('://')[0]}")
    print()
    print(f"{'endpoint':<24}{'req/s':>10}{'p99 ms':>10}{'errors':>8}")
    rates = {}
    for name, (latencies, elapsed, errors, _) in results.items():
        latencies.sort()
        rates[name] = len(latencies) / elapsed
        print(f"{name:<24}{rates[name]:>10.0f}{latencies[int(len(latencies) * 0.99) - 1] * 1000:>10.1f}{errors:>8}")
    ratio = rates["sign-up intake"] / rates["bare Flask endpoint"]
    stored = sum(by_status.values())
    print()
    print(f"ratio {ratio:.2f} (target >= 0.6)")
    print(f"{stored} submissions stored ({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))}); "
          f"{left_at_end} pending when the load ended, all processed {drained_after:.1f} s after it "
          f"(workers starting included)")
    print(f"{people_posted} people posted; {contacts} contacts, {tagged} tagged, {enrolments} enrolled; "
          f"duplicate contacts: {contacts - people_posted} (target 0)")


if __name__ == "__main__":
    main()
