"""The store of store-first intake (DESIGN rule 1) on the hot path: webhooks and sign-ups.

Intake writes one row per request and answers; it needs no unit of work, only a durable INSERT.
So it has an engine of its own whose statements each commit on their own: the INSERT is durable
when it returns, SQLite's write lock is held only within that one call (never while its thread
waits for the GIL between an INSERT and a COMMIT), and PostgreSQL needs no COMMIT round trip.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from flask import current_app
from sqlalchemy import create_engine
from sqlalchemy.exc import DBAPIError

from ..extensions import db


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


APPLICATION_NAME = "switchboard intake"  # how PostgreSQL lists intake's connections


class IntakeDatabase:
    def __init__(self, url):
        named = {"connect_args": {"application_name": APPLICATION_NAME}} if url.get_backend_name() == "postgresql" else {}
        # Nothing to roll back when a connection goes back to the pool: no transaction is ever open.
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, **named)
        self.compiled: dict[int, Precompiled] = {}
        self.local = threading.local()

    def cursor(self):
        """This thread's own cursor on its own connection, kept open: a pool's checkout and return cost
        more than the INSERT itself, and no transaction is ever left open on it."""
        cursor = getattr(self.local, "cursor", None)
        if cursor is None:
            connection = self.engine.raw_connection()
            connection.detach()  # this thread's for good: never returned to the pool, closed with it
            cursor = self.local.cursor = connection.dbapi_connection.cursor()
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
                cursor.execute(precompiled.sql, parameters)
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
