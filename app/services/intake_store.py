"""The store of store-first intake (DESIGN rule 1) on the hot path: webhooks and sign-ups.

Intake writes one row per request and answers; it needs no unit of work, only a durable INSERT.
So it has an engine of its own whose statements each commit on their own: the INSERT is durable
when it returns, SQLite's write lock is held only within that one call (never while its thread
waits for the GIL between an INSERT and a COMMIT), and PostgreSQL needs no COMMIT round trip.
"""
from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import create_engine

from ..extensions import db


class Precompiled:
    """A Core statement compiled once for a dialect and run with exec_driver_sql: the hot path skips
    SQLAlchemy's per-call cache key and compiled-statement lookup. Parameters still go through their
    column types' bind processors (JSON, SQLite's datetime format, the driver's binary type)."""

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positions = compiled.positiontup if compiled.positional else None
        self.processors = [(name, processor) for name, bind in compiled.binds.items()
                           if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))]

    def execute(self, connection, params: dict):
        for name, processor in self.processors:
            params[name] = processor(params[name])
        return connection.exec_driver_sql(self.sql, tuple(params[name] for name in self.positions)
                                          if self.positions else params)


class IntakeDatabase:
    def __init__(self, url):
        # Nothing to roll back when a connection goes back to the pool: no transaction is ever open.
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
        self.compiled: dict[int, Precompiled] = {}

    def execute(self, connection, statement, params: dict):
        """Run one of the module-level statements of intake (compiled on first use, kept by identity)."""
        precompiled = self.compiled.get(id(statement))
        if precompiled is None:
            precompiled = self.compiled[id(statement)] = Precompiled(statement, connection.dialect)
        return precompiled.execute(connection, params)


def intake_database() -> IntakeDatabase:
    extensions = current_app.extensions
    if "intake_database" not in extensions:
        extensions["intake_database"] = IntakeDatabase(db.engine.url)
    return extensions["intake_database"]


class Answer:
    """What intake answers: an HTTP status and a JSON object (or, for a few handshakes, plain text)."""

    def __init__(self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers
