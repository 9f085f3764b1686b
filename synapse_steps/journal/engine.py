"""SQLAlchemy engines for the journal, tuned per database, and database errors as one-line JournalErrors.

SQLite: WAL (readers never block the writer), ``BEGIN IMMEDIATE`` for write transactions
(the write lock is taken up front, so two writers queue on the busy timeout instead of
failing on lock upgrade), ``synchronous=NORMAL`` (in WAL mode a committed transaction
survives a crash of any process; only an OS crash or power loss can drop the last ones).
Postgres: psycopg 3 with a connect timeout, so an address that does not answer fails fast.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from synapse_steps.errors import JournalError

CONNECT_TIMEOUT_S = 5.0
BUSY_TIMEOUT_S = 30.0
# Execution option read by the SQLite "begin" hook: how this connection opens a transaction.
_BEGIN = "journal_sqlite_begin"


def create(parsed: URL, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for ``parsed`` (already checked by ``location.parse_url``)."""
    if parsed.drivername == "sqlite":
        return _sqlite(parsed, busy_timeout_s)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise JournalError('a Postgres journal needs psycopg 3: pip install "synapse-steps[postgres]"') from None
    return create_engine(
        parsed,
        connect_args={"connect_timeout": max(1, round(connect_timeout_s)), "application_name": "synapse-steps"},
        pool_pre_ping=True,
    )


def _sqlite(parsed: URL, busy_timeout_s: float) -> Engine:
    engine = create_engine(parsed, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling would defer BEGIN and skip it for DDL;
        # autocommit mode plus our own BEGIN (below) makes every transaction explicit.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _switch_to_wal(cursor, busy_timeout_s)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN, 'DEFERRED')}")

    return engine


def _switch_to_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Set WAL mode (persistent: once per database file).

    The switch needs the database to itself, and SQLite answers "locked" at once instead of
    waiting on the busy handler when several connections open a new file together; so
    retry until the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def writer(engine: Engine) -> Engine:
    """The same engine, opening write transactions (``BEGIN IMMEDIATE`` on SQLite)."""
    return engine.execution_options(**{_BEGIN: "IMMEDIATE"})


def describe(url: URL) -> str:
    """The URL as shown in messages (password hidden)."""
    return url.render_as_string(hide_password=True)


@contextmanager
def database_errors(url: URL, doing: str) -> Iterator[None]:
    """Turn a driver or SQLAlchemy error into a one-line JournalError naming the journal and the operation."""
    try:
        yield
    except DBAPIError as exc:
        raise JournalError(f"journal {describe(url)}: {doing} failed: {_first_line(exc.orig)}") from exc
    except SQLAlchemyError as exc:
        raise JournalError(f"journal {describe(url)}: {doing} failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def connect_errors(url: URL) -> Iterator[None]:
    """As :func:`database_errors`, worded for the first connection (the URL does not answer)."""
    try:
        yield
    except DBAPIError as exc:
        raise JournalError(f"journal {describe(url)} does not answer: {_first_line(exc.orig)}") from exc
