"""Benchmark the integrations pages on a full organisation.

Fills a database with 1 organisation, 1,000 integrations spread over every type and
provider and 100,000 integration_logs rows, then measures pages through the Flask test
client, signed in: median and 95th-percentile server time over N requests, the number
of SQL statements per request and the time spent in them, next to a baseline measured
in the same run (a bare route registered only in this app, and a static file).

    .venv/bin/python bench/bench_integrations_list.py
    .venv/bin/python bench/bench_integrations_list.py -n 50
    .venv/bin/python bench/bench_integrations_list.py --database-url postgresql://postgres@127.0.0.1:5432/test_h3

SQLite (a temporary file) is the default. A PostgreSQL database given with
--database-url is EMPTIED (tables dropped, then migrated): name a scratch database.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import event, insert, select, text  # noqa: E402

from app import create_app  # noqa: E402
from app.crypto import vault  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Integration, IntegrationLog, Organization, User, utcnow  # noqa: E402
from app.providers import INTEGRATION_TYPES  # noqa: E402
from config import database_url  # noqa: E402

PASSWORD = "bench password 123"
EVENTS = {"info": ("test_passed", "config_changed", "status_changed", "message_sent"),
          "warning": ("retry_scheduled", "rate_limited"),
          "error": ("test_failed", "send_failed")}


def make_app(url: str):
    app = create_app({
        "APP_ENV": "testing",
        "SECRET_KEY": "bench-secret-key",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SQLALCHEMY_DATABASE_URI": database_url(url),
        "RATELIMIT_STORAGE_URI": "memory://",  # the bench needs no Redis
        "PUBLIC_BASE_URL": "https://switchboard.example.com",
    })
    app.logger.disabled = True

    @app.get("/_bench/ping")
    def bench_ping():  # the baseline: every before/after_request hook, no page
        return "ok"

    return app


def reset_schema(app) -> None:
    with app.app_context():
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        with contextlib.redirect_stderr(io.StringIO()):  # alembic's INFO lines
            upgrade()  # the real migrations, so the real indexes


def fill(app, n_integrations: int, n_logs: int, hot_share: float) -> dict:
    """Bulk insert the data set; return the ids worth measuring."""
    with app.app_context():
        org = Organization(name="Bench Bakery")
        user = User(organization=org, email="admin@bench.example.com", role="admin")
        user.set_password(PASSWORD)
        db.session.add_all([org, user])
        db.session.commit()
        org_id, user_id = org.id, user.id

        combos = [(kind.key, p) for kind in INTEGRATION_TYPES.values() for p in kind.providers]
        ciphertexts = {p.name: vault().encrypt_json({f.name: "bench-secret-value" for f in p.secret_fields()})
                       for _, p in combos}
        now = utcnow()
        statuses = ("active", "active", "active", "pending", "error", "inactive")
        rows = []
        for i in range(n_integrations):
            kind, provider = combos[i % len(combos)]
            status = statuses[i % len(statuses)]
            rows.append({
                "public_id": f"bench{i:08d}", "organization_id": org_id, "integration_type": kind,
                "provider": provider.name, "name": f"{provider.label} {i:04d}", "status": status,
                "is_active": status != "inactive", "config": {}, "secrets_ciphertext": ciphertexts[provider.name],
                "last_tested_at": now - timedelta(minutes=i), "error_count": 3 if status == "error" else 0,
                "last_error": "Provider refused the credentials (bad credentials)." if status == "error" else None,
                "created_at": now - timedelta(days=30), "updated_at": now - timedelta(days=1),
            })
        db.session.execute(insert(Integration.__table__), rows)  # Core executemany: no ORM bookkeeping
        db.session.commit()
        ids = list(db.session.scalars(select(Integration.id).where(Integration.organization_id == org_id)
                                      .order_by(Integration.id)))
        hot, cold = ids[0], ids[len(ids) // 2]

        # A share of the log belongs to one busy integration, interleaved in time with the
        # rest, which is spread evenly; 80% info, 10% warning, 10% error, over the last week.
        rng = random.Random(42)
        levels = ("info",) * 8 + ("warning", "error")
        week = 7 * 24 * 3600
        ages = sorted((rng.randrange(week) for _ in range(n_logs)), reverse=True)  # ids grow with time
        batch = []
        for i in range(n_logs):
            integration_id = hot if rng.random() < hot_share else ids[rng.randrange(len(ids))]
            level = rng.choice(levels)
            batch.append({
                "organization_id": org_id, "integration_id": integration_id, "level": level,
                "event": rng.choice(EVENTS[level]),
                "message": f"Bench event {i}: something happened to this integration ({level}).",
                "details": {"n": i}, "user_id": user_id if rng.random() < 0.3 else None,
                "created_at": now - timedelta(seconds=ages[i]),
            })
            if len(batch) == 10_000:
                db.session.execute(insert(IntegrationLog.__table__), batch)
                batch = []
        if batch:
            db.session.execute(insert(IntegrationLog.__table__), batch)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ANALYZE"))  # what autovacuum would have done by now
            db.session.commit()
        counts = {
            "hot_logs": db.session.scalar(select(db.func.count()).where(IntegrationLog.integration_id == hot)),
            "cold_logs": db.session.scalar(select(db.func.count()).where(IntegrationLog.integration_id == cold)),
            "errors_24h": db.session.scalar(select(db.func.count()).where(
                IntegrationLog.level == "error", IntegrationLog.created_at >= now - timedelta(hours=24))),
        }
        db.session.remove()
    return {"hot": hot, "cold": cold, **counts}


class QueryCounter:
    """Counts SQL statements (and the time in them) through the engine's cursor events."""

    def __init__(self, engine):
        self.count, self.seconds, self.statements, self._started = 0, 0.0, [], 0.0
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def reset(self):
        self.count, self.seconds, self.statements = 0, 0.0, []

    def before(self, conn, cursor, statement, parameters, context, executemany):
        self.count += 1
        self.statements.append(" ".join(statement.split()))
        self._started = time.perf_counter()

    def after(self, conn, cursor, statement, parameters, context, executemany):
        self.seconds += time.perf_counter() - self._started


def login(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"email": "admin@bench.example.com", "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302, response.status_code


def measure(client, counter, url: str, n: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        assert client.get(url).status_code == 200, url
    times, queries, sql, size = [], [], [], 0
    for _ in range(n):
        counter.reset()
        started = time.perf_counter()
        response = client.get(url)
        body = response.get_data()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
        queries.append(counter.count)
        sql.append(counter.seconds)
        size = len(body)
    times.sort()
    return {"url": url, "median": statistics.median(times) * 1000, "p95": times[int(0.95 * (len(times) - 1))] * 1000,
            "queries": max(queries), "queries_min": min(queries), "sql": statistics.median(sql) * 1000,
            "bytes": size, "statements": list(counter.statements)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL of a scratch database (it is emptied); default SQLite")
    parser.add_argument("-n", "--requests", type=int, default=30, help="measured requests per page (default 30)")
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--hot-share", type=float, default=0.1,
                        help="share of the log rows that belong to one busy integration (default 0.1)")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL of one request per page")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="switchboard-bench-")
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    app = make_app(url)
    dialect = app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0]
    print(f"database: {dialect}  ({'temporary file' if not args.database_url else 'given URL'})")

    started = time.perf_counter()
    reset_schema(app)
    data = fill(app, args.integrations, args.logs, args.hot_share)
    print(f"filled 1 organisation, {args.integrations:,} integrations, {args.logs:,} log rows "
          f"in {time.perf_counter() - started:.1f}s  (busy integration: {data['hot_logs']:,} rows, "
          f"ordinary one: {data['cold_logs']:,} rows, errors in the last 24 h: {data['errors_24h']:,})")

    with app.app_context():
        counter = QueryCounter(db.engine)
    client = app.test_client()
    login(client)

    hot, cold = data["hot"], data["cold"]
    last_page = max(1, -(-data["hot_logs"] // 50))
    pages = [
        ("baseline: bare route /_bench/ping", "/_bench/ping"),
        ("baseline: static /static/app.css", "/static/app.css"),
        (f"hub /integrations ({args.integrations:,} integrations)", "/integrations"),
        ("detail /integrations/<id>", f"/integrations/{cold}"),
        (f"log, busy integration ({data['hot_logs']:,} rows)", f"/integrations/{hot}/logs"),
        ("log, busy integration, ?level=error", f"/integrations/{hot}/logs?level=error"),
        (f"log, busy integration, last page ({last_page})", f"/integrations/{hot}/logs?page={last_page}"),
        (f"log, ordinary integration ({data['cold_logs']:,} rows)", f"/integrations/{cold}/logs"),
        (f"stats /integrations/stats ({args.logs:,} log rows)", "/integrations/stats"),
    ]
    results = []
    for label, path in pages:
        result = measure(client, counter, path, args.requests)
        results.append((label, result))

    base = results[0][1]["median"]
    width = max(len(label) for label, _ in results)
    print(f"\n{args.requests} requests per page, in-process (Flask test client), signed in\n")
    header = f"{'page':<{width}}  {'median ms':>9}  {'p95 ms':>7}  {'x base':>6}  {'SQL':>4}  {'SQL ms':>7}  {'KiB':>6}"
    print(header)
    print("-" * len(header))
    for label, r in results:
        queries = str(r["queries"]) if r["queries"] == r["queries_min"] else f"{r['queries_min']}-{r['queries']}"
        print(f"{label:<{width}}  {r['median']:>9.2f}  {r['p95']:>7.2f}  {r['median'] / base:>6.1f}  "
              f"{queries:>4}  {r['sql']:>7.2f}  {r['bytes'] / 1024:>6.1f}")
    if args.show_sql:
        for label, r in results:
            print(f"\n{label}:")
            for statement in r["statements"]:
                print("   ", statement[:300])
    tmp.cleanup()


if __name__ == "__main__":
    main()
