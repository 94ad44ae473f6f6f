"""The store of store-first intake (DESIGN rule 1) on the hot path: webhooks and sign-ups.

Intake writes one row per request and answers; it needs no unit of work, only a durable INSERT.
So it has an engine of its own whose statements each commit on their own: the INSERT is durable
when it returns, SQLite's write lock is held only within that one call (never while its thread
waits for the GIL between an INSERT and a COMMIT), and PostgreSQL needs no COMMIT round trip.

On SQLite, two more things keep a request's INSERT short under load (bench/README.md):
- It never checkpoints. SQLite's automatic checkpoint runs inside the commit that crosses 1,000
  pages of write-ahead log, and waits there for two fsyncs; a thread of this process's own
  (Checkpointer) does it instead, a tenth of a second after intake writes.
- It waits for another writer's lock in steps of 50 us to 1 ms (20 ms once the lock has been held for
  0.1 s), where SQLite's own busy handler sleeps at least 1 ms, then 2, 5, 10...: a lock taken by
  another INSERT is held for well under 1 ms.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from flask import current_app
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from ..extensions import SQLITE_BUSY_TIMEOUT, db


class Precompiled:
    """A Core statement compiled once for a dialect, for the driver's cursor: the hot path skips
    SQLAlchemy's per-call cache key, compiled-statement lookup and execution context. Parameters still
    go through their column types' bind processors (JSON, SQLite's datetime format, the driver's
    binary type)."""

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positions = compiled.positiontup if compiled.positional else None
        self.processors = [(name, processor) for name, bind in compiled.binds.items()
                           if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))]

    def parameters(self, params: dict) -> tuple | dict:
        for name, processor in self.processors:
            params[name] = processor(params[name])
        return tuple(params[name] for name in self.positions) if self.positions else params


log = logging.getLogger(__name__)
APPLICATION_NAME = "switchboard intake"  # how PostgreSQL lists intake's connections
SQLITE_BUSY = 5  # the primary result code of "database is locked" (extended codes add high bits)
# Seconds between tries for SQLite's write lock: short while it is an INSERT's (well under 1 ms), longer
# once it has been held for a while (a long transaction elsewhere), so that waiting threads do not spin.
FIRST_WAIT, SHORT_WAIT_MAX, LONG_WAIT_AFTER, LONG_WAIT_MAX = 0.00005, 0.001, 0.1, 0.02
CHECKPOINT_AFTER = 0.1  # seconds from intake's writes to the checkpoint that copies them into the database
CHECKPOINTER_IDLE_ROUNDS = 50  # rounds without writes after which the checkpoint thread ends (5 s)


class Checkpointer:
    """SQLite: checkpoints the write-ahead log for intake's connections, which do not (see the module
    docstring), from a thread of this process that runs while intake writes and ends when it stops.
    Passive: it never waits for readers or writers, and never holds a lock they wait for. Other
    connections (pages, workers) keep SQLite's automatic checkpoint."""

    def __init__(self, engine):
        self.engine = engine
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.written = False  # intake wrote since the last checkpoint

    def wrote(self) -> None:
        self.written = True
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.start()

    def start(self) -> None:  # with self.lock held
        self.thread = threading.Thread(target=self.run, name="intake checkpoint", daemon=True)
        self.thread.start()

    def run(self) -> None:
        connection = None
        try:
            connection = self.engine.raw_connection()
            connection.detach()
            idle_rounds = 0
            while idle_rounds < CHECKPOINTER_IDLE_ROUNDS:
                time.sleep(CHECKPOINT_AFTER)
                if not self.written:
                    idle_rounds += 1
                    continue
                self.written, idle_rounds = False, 0
                connection.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception:  # noqa: BLE001 - the database file went away: nothing left to checkpoint
            log.debug("intake's checkpoint thread stopped", exc_info=True)
        finally:
            if connection is not None:
                connection.close()
            with self.lock:
                self.thread = None
                if self.written:  # written after the last look: this thread's successor checkpoints it
                    self.start()


class IntakeDatabase:
    def __init__(self, url):
        named = {"connect_args": {"application_name": APPLICATION_NAME}} if url.get_backend_name() == "postgresql" else {}
        # Nothing to roll back when a connection goes back to the pool: no transaction is ever open. The
        # pool serves intake's reads (an integration or page whose copy expired), rare enough to check
        # each connection first, so a database restarted since costs no request an error.
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, pool_pre_ping=True,
                                    **named)
        self.compiled: dict[int, Precompiled] = {}
        self.local = threading.local()
        self.checkpointer = Checkpointer(self.engine) if url.get_backend_name() == "sqlite" else None

    def cursor(self):
        """This thread's own cursor on its own connection, kept open: a pool's checkout and return cost
        more than the INSERT itself, and no transaction is ever left open on it."""
        cursor = getattr(self.local, "cursor", None)
        if cursor is None:
            connection = self.engine.raw_connection()
            connection.detach()  # this thread's for good: never returned to the pool, closed with it
            cursor = self.local.cursor = connection.dbapi_connection.cursor()
            if self.checkpointer is not None:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
                cursor.execute("PRAGMA busy_timeout=0")  # execute_when_unlocked waits for the write lock instead
            self.local.connection = connection
        return cursor

    def run(self, statement, params: dict) -> int:
        """Run one of intake's module-level statements (compiled on first use, kept by identity) on
        this thread's cursor, and return its rowcount. Errors are SQLAlchemy's, as anywhere else
        (IntegrityError for a unique key already held). A connection found lost (the database server
        restarted) is dropped with the pool's, and the statement runs once more on a new one."""
        dialect = self.engine.dialect
        precompiled = self.compiled.get(id(statement))
        if precompiled is None:
            precompiled = self.compiled[id(statement)] = Precompiled(statement, dialect)
        parameters = precompiled.parameters(params)
        for attempt in range(2):
            cursor = self.cursor()
            try:
                if self.checkpointer is None:
                    cursor.execute(precompiled.sql, parameters)
                else:
                    self.execute_when_unlocked(cursor, precompiled.sql, parameters)
                    self.checkpointer.wrote()
                return cursor.rowcount
            except dialect.loaded_dbapi.Error as exc:
                lost = dialect.is_disconnect(exc, cursor.connection, cursor)
                if lost:  # the server restarted: the pool's connections are as dead as this one
                    self.local.cursor = None
                    self.local.connection.invalidate(exc)
                    self.engine.dispose()
                    if attempt == 0:
                        continue
                raise DBAPIError.instance(precompiled.sql, parameters, exc, dialect.loaded_dbapi.Error,
                                          connection_invalidated=lost, dialect=dialect) from exc

    @staticmethod
    def execute_when_unlocked(cursor, sql: str, parameters) -> None:
        """SQLite: execute, trying again while another connection holds the write lock, for up to the
        app's busy timeout; then "database is locked" as anywhere else."""
        wait, started = FIRST_WAIT, None
        while True:
            try:
                cursor.execute(sql, parameters)
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != SQLITE_BUSY:
                    raise
                now = time.monotonic()
                started = started or now
                if now - started >= SQLITE_BUSY_TIMEOUT:
                    raise
                time.sleep(wait)
                wait = min(wait * 2, SHORT_WAIT_MAX if now - started < LONG_WAIT_AFTER else LONG_WAIT_MAX)


class Copies:
    """Per-process copies of rows intake reads on every request (an integration and its secrets, a
    sign-up page), by key, each used for up to `ttl` seconds from when it was read; at most `limit`
    kept. A copy is never trusted alone: its users store only if the row is still at the copy's
    version, and refuse only on a fresh read."""

    def __init__(self, ttl: float, limit: int):
        self.ttl, self.limit = ttl, limit
        self.entries: dict[Any, tuple[Any, float]] = {}
        self.lock = threading.Lock()

    def get(self, key) -> Any | None:
        entry = self.entries.get(key)
        if entry is None or time.monotonic() - entry[1] >= self.ttl:
            return None
        return entry[0]

    def put(self, key, value) -> None:
        """Keep `value` as read now; None forgets the key (unknown addresses are not kept)."""
        now = time.monotonic()
        with self.lock:
            if value is None:
                self.entries.pop(key, None)
                return
            for expired in [k for k, (_, read_at) in self.entries.items() if now - read_at >= self.ttl]:
                del self.entries[expired]
            if len(self.entries) >= self.limit:
                del self.entries[next(iter(self.entries))]  # the oldest
            self.entries[key] = (value, now)


def intake_database() -> IntakeDatabase:
    extensions = current_app.extensions
    if "intake_database" not in extensions:
        extensions["intake_database"] = IntakeDatabase(db.engine.url)
    return extensions["intake_database"]


class Answer:
    """What intake answers: an HTTP status and a JSON object (or, for a few handshakes, plain text)."""

    def __init__(self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers
