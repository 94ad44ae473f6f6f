"""Benchmark the inbox pages on a busy organisation.

Fills a database with 1 organisation, 6 connected accounts (2 Facebook Pages, 2 Instagram
accounts, 2 WhatsApp numbers), 5,000 conversations with their contacts and 100,000 messages
(one busy conversation holds 5,000 of them; the others about 19 each), using bulk Core inserts.
Then, signed in through the login form, it requests the inbox, a conversation and the polls N
times through the Flask test client and prints the median and 95th-percentile server time and
the SQL statements per request, next to a baseline measured in the same run (a bare route
registered only in the bench app, with every request hook, including loading the signed-in user).

    .venv/bin/python bench/inbox_page.py
    .venv/bin/python bench/inbox_page.py -n 100 --show-sql
    .venv/bin/python bench/inbox_page.py --database-url postgresql://postgres@127.0.0.1:5432/bench_inbox

SQLite (a temporary file) is the default. A PostgreSQL database given with --database-url is
EMPTIED (tables dropped, then migrated): name a scratch database. No Redis is needed.
"""
from __future__ import annotations

import argparse
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

from sqlalchemy import insert, select, text  # noqa: E402

from app.crypto import vault  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import (  # noqa: E402
    Contact,
    Conversation,
    ConversationMessage,
    Integration,
    MessageTemplate,
    Organization,
    User,
    utcnow,
)
from bench.bench_integrations_list import PASSWORD, QueryCounter, login, make_app, reset_schema  # noqa: E402

ACCOUNTS = [("facebook", "messenger", "Acme Bakery"), ("facebook", "messenger", "Acme Catering"),
            ("instagram", "instagram", "@acmebakery"), ("instagram", "instagram", "@acmecatering"),
            ("whatsapp", "whatsapp", "Acme Bakery (+1 555-078-3881)"),
            ("whatsapp", "whatsapp", "Acme Catering (+1 555-078-3882)")]
WORDS = ("cake", "order", "delivery", "tomorrow", "price", "gluten", "birthday", "pickup", "thanks", "open",
         "Sunday", "chocolate", "lemon", "invoice", "address", "table", "catering", "menu", "photo", "today")
OUT_STATUSES = ("read",) * 6 + ("delivered",) * 3 + ("sent", "failed")


def fill(app, n_conversations: int, n_messages: int, busy_messages: int) -> dict:
    """Bulk insert the data set; return the conversations worth measuring."""
    rng = random.Random(5)
    with app.app_context():
        org = Organization(name="Bench Bakery")
        user = User(organization=org, email="admin@bench.example.com", role="admin")
        user.set_password(PASSWORD)
        db.session.add_all([org, user])
        db.session.commit()
        org_id = org.id
        now = utcnow()

        accounts = []
        for index, (kind, channel, name) in enumerate(ACCOUNTS):
            secrets = {"access_token": "bench-token"} if kind == "whatsapp" else {"page_access_token": "bench-token"}
            accounts.append({
                "public_id": f"benchacct{index:04d}", "organization_id": org_id, "integration_type": kind,
                "provider": {"facebook": "graph_api", "instagram": "graph_api", "whatsapp": "cloud_api"}[kind],
                "name": name, "status": "active", "is_active": True, "external_id": f"10{index}000000000001",
                "config": {"page_id": f"10{index}000000000001", "business_account_id": "102290129340398"},
                "secrets_ciphertext": vault().encrypt_json(secrets), "created_at": now, "updated_at": now,
                "subscribed_at": now})
        db.session.execute(insert(Integration.__table__), accounts)
        db.session.commit()
        account_rows = db.session.execute(select(Integration.id, Integration.integration_type)
                                          .where(Integration.organization_id == org_id).order_by(Integration.id)).all()
        channel_of = {"facebook": "messenger", "instagram": "instagram", "whatsapp": "whatsapp"}
        whatsapp_ids = [i for i, kind in account_rows if kind == "whatsapp"]
        db.session.execute(insert(MessageTemplate.__table__), [
            {"organization_id": org_id, "integration_id": account_id, "name": f"template_{n}", "language": "en_US",
             "status": "APPROVED", "category": "UTILITY", "parameter_count": 1, "synced_at": now,
             "components": [{"type": "BODY", "text": "Hi {{1}}, your order is ready."}]}
            for account_id in whatsapp_ids for n in range(5)])

        # Messages per conversation: one busy thread, the rest spread at random around the mean.
        rest = n_messages - busy_messages
        counts = [1] * (n_conversations - 1)
        for _ in range(rest - len(counts)):
            counts[rng.randrange(len(counts))] += 1
        counts.insert(3, busy_messages)  # among the newest, so its window is open like most read threads

        contacts, conversations = [], []
        for index in range(n_conversations):
            account_id, kind = account_rows[index % len(account_rows)]
            channel = channel_of[kind]
            person = f"1650{index:07d}" if channel == "whatsapp" else f"65432{index:011d}"
            last = now - timedelta(minutes=index * 8 + rng.randrange(8))  # newest first, over about a month
            name = f"{rng.choice(('Jane', 'Sam', 'Ivy', 'Omar', 'Lena', 'Tom'))} {index:05d}"
            contacts.append({"organization_id": org_id, "name": name, "source": channel, "created_at": last,
                             "updated_at": last, "version": 1, "fields": {},
                             "phone": f"+{person}" if channel == "whatsapp" else None})
            conversations.append({
                "organization_id": org_id, "integration_id": account_id, "channel": channel,
                "external_user_id": person, "name": name, "last_message_at": last,
                "last_message_preview": " ".join(rng.choice(WORDS) for _ in range(8)),
                "last_inbound_at": last, "unread_count": rng.choice((0, 0, 0, 1, 2)),
                "created_at": last - timedelta(days=2), "updated_at": last})
        db.session.execute(insert(Contact.__table__), contacts)
        contact_ids = list(db.session.scalars(select(Contact.id).where(Contact.organization_id == org_id)
                                              .order_by(Contact.id)))
        for conversation, contact_id in zip(conversations, contact_ids):
            conversation["contact_id"] = contact_id
        db.session.execute(insert(Conversation.__table__), conversations)
        db.session.commit()
        rows = db.session.execute(select(Conversation.id, Conversation.integration_id, Conversation.last_message_at)
                                  .where(Conversation.organization_id == org_id).order_by(Conversation.id)).all()

        batch, busy_id = [], None
        for (conversation_id, account_id, last), count in zip(rows, counts):
            if count == busy_messages:
                busy_id = conversation_id
            span = timedelta(days=2) if count < 100 else timedelta(days=60)
            for n in range(count):
                direction = "in" if n % 3 != 1 else "out"
                at = last - span * (count - 1 - n) / max(count - 1, 1)
                media = None
                if rng.random() < 0.05:
                    media = {"type": "image", "mime_type": "image/jpeg", "status": "stored", "size": 48_213,
                             "storage_key": f"media/{org_id}/{conversation_id}/{n}.jpg"}
                batch.append({
                    "organization_id": org_id, "conversation_id": conversation_id, "integration_id": account_id,
                    "direction": direction, "kind": "image" if media else "text",
                    "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 25))),
                    "media": media, "provider_message_id": f"mid.{conversation_id}.{n}",
                    "status": "received" if direction == "in" else rng.choice(OUT_STATUSES),
                    "attempts": 0 if direction == "in" else 1, "created_at": at, "updated_at": at})
                if len(batch) == 10_000:
                    db.session.execute(insert(ConversationMessage.__table__), batch)
                    batch = []
        if batch:
            db.session.execute(insert(ConversationMessage.__table__), batch)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ANALYZE"))  # what autovacuum would have done by now
            db.session.commit()
        typical = rows[1]  # a Messenger conversation of this morning
        stale_whatsapp = next(r for r in rows[10:] if r.integration_id in whatsapp_ids)
        # One WhatsApp conversation whose person wrote two days ago: only templates can be sent.
        db.session.execute(Conversation.__table__.update().where(Conversation.id == stale_whatsapp.id)
                           .values(last_inbound_at=now - timedelta(days=2)))
        db.session.commit()
        data = {"typical": typical.id, "busy": busy_id, "template_only": stale_whatsapp.id,
                "typical_messages": counts[rows.index(typical)], "whatsapp": whatsapp_ids[0]}
        db.session.remove()
    return data


def measure(client, counter, url: str, n: int, status: int = 200, warmup: int = 2) -> dict:
    headers = {"HX-Request": "true"} if status == 204 or "/list" in url or "/thread" in url else {}
    for _ in range(warmup):
        assert client.get(url, headers=headers).status_code == status, url
    times, queries, sql, size = [], [], [], 0
    for _ in range(n):
        counter.reset()
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        body = response.get_data()
        times.append(time.perf_counter() - started)
        assert response.status_code == status, (url, response.status_code)
        queries.append(counter.count)
        sql.append(counter.seconds)
        size = len(body)
    times.sort()
    return {"median": statistics.median(times) * 1000, "p95": times[int(0.95 * (len(times) - 1))] * 1000,
            "queries": max(queries), "queries_min": min(queries), "sql": statistics.median(sql) * 1000,
            "bytes": size, "statements": list(counter.statements)}


def poll_url(html: str, element_id: str) -> str:
    tag = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', html, re.S).group(0)
    return re.search(r'hx-get="([^"]+)"', tag).group(1).replace("&amp;", "&")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL of a scratch database (it is emptied); default SQLite")
    parser.add_argument("-n", "--requests", type=int, default=50, help="measured requests per page (default 50)")
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--busy", type=int, default=5000, help="messages of the one busy conversation (default 5000)")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL of one request per page")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="switchboard-bench-")
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    app = make_app(url)
    dialect = app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0]
    print(f"database: {dialect}  ({'temporary file' if not args.database_url else 'given URL'})")

    started = time.perf_counter()
    reset_schema(app)
    data = fill(app, args.conversations, args.messages, args.busy)
    print(f"filled 1 organisation, {len(ACCOUNTS)} accounts, {args.conversations:,} conversations, "
          f"{args.messages:,} messages in {time.perf_counter() - started:.1f}s  (busy conversation: "
          f"{args.busy:,} messages, ordinary one: {data['typical_messages']})")

    with app.app_context():
        counter = QueryCounter(db.engine)
    client = app.test_client()
    login(client)
    inbox_html = client.get("/inbox").get_data(as_text=True)
    conversation_html = client.get(f"/inbox/{data['typical']}").get_data(as_text=True)
    list_poll, thread_poll = poll_url(inbox_html, "conversation-list"), poll_url(conversation_html, "thread-live")

    pages = [
        ("baseline: bare route /_bench/ping", "/_bench/ping", 200),
        (f"inbox /inbox ({args.conversations:,} conversations)", "/inbox", 200),
        ("inbox ?channel=whatsapp", "/inbox?channel=whatsapp", 200),
        ("inbox ?account=<WhatsApp number>", f"/inbox?account={data['whatsapp']}", 200),
        ("inbox ?q=lemon (search, many match)", "/inbox?q=lemon", 200),
        ("inbox ?q=nobody (search, none match)", "/inbox?q=nobody", 200),
        ("inbox ?page=60 (older conversations)", "/inbox?page=60", 200),
        (f"conversation ({data['typical_messages']} messages)", f"/inbox/{data['typical']}", 200),
        (f"conversation, busy ({args.busy:,} messages)", f"/inbox/{data['busy']}", 200),
        ("conversation, WhatsApp template picker", f"/inbox/{data['template_only']}", 200),
        ("poll: list unchanged (204)", list_poll, 204),
        ("poll: thread unchanged (204)", thread_poll, 204),
        ("poll: list changed (fragment)", re.sub(r"v=\w+", "v=old", list_poll), 200),
        ("poll: thread changed (fragment)", re.sub(r"v=\w+", "v=old", thread_poll), 200),
        ("stats /inbox/stats (30 days)", "/inbox/stats", 200),
    ]
    results = []
    for label, path, status in pages:
        results.append((label, measure(client, counter, path, args.requests, status)))

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
