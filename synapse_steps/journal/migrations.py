"""The schema version and its explicit migration path.

``schema_version`` holds one row per applied migration. Migration N takes a version N-1
database to version N; opening a journal applies every missing migration, in order, in
one write transaction (DDL is transactional on SQLite and Postgres), so a failure leaves
the database exactly as it was. A database whose version is newer than the last migration
known here was written by a newer synapse-steps and is refused untouched.

Adding a version: append ``Migration(N, ...)`` whose ``apply`` issues the changes (for
example ``ALTER TABLE`` through ``conn.exec_driver_sql``, with types spelled out, not taken
from ``schema.py``, so the migration stays what it was), and add the new columns or tables to
``schema.define`` marked as added in version N, with ``schema.VERSION = N``. Migration 1
creates the version 1 shape from ``schema.define(..., 1)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import JSON, MetaData, func, insert, inspect, select, text
from sqlalchemy.engine import URL, Connection, Engine

from synapse_steps.errors import JournalError
from synapse_steps.journal import schema
from synapse_steps.journal.engine import database_errors, describe, writer

# Any constant: serializes concurrent first opens of one Postgres database.
_PG_MIGRATION_LOCK = 0x5E5_7EB5


@dataclass(frozen=True)
class Migration:
    """One schema change: applied in version order, once, and recorded so a newer journal is refused."""

    version: int
    summary: str
    apply: Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    schema.define(MetaData(), 1).create_all(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN metrics {JSON().compile(dialect=conn.dialect)}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, step attempts, context commits, rollbacks, progress", _v1),
    Migration(2, "runs.metrics: the run's final metrics", _v2),
)


def current_version(conn: Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    return int(conn.execute(select(func.coalesce(func.max(schema.schema_version.c.version), 0))).scalar_one())


def migrate(engine: Engine, url: URL, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to the last of ``migrations``; return that version.

    Raises :class:`JournalError` (and changes nothing) when the database is newer, or when
    a migration fails.
    """
    latest = migrations[-1].version
    with database_errors(url, "reading the schema version"), engine.connect() as conn:
        version = current_version(conn)
    _refuse_newer(url, version, latest)
    if version == latest:
        return version
    with database_errors(url, f"migrating the schema to version {latest}"), writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        version = current_version(conn)  # another process may have migrated meanwhile
        _refuse_newer(url, version, latest)
        if version == 0:
            schema.schema_version.create(conn, checkfirst=True)
        for step in migrations:
            if step.version > version:
                step.apply(conn)
                conn.execute(insert(schema.schema_version).values(version=step.version, applied_at=time.time()))
    return latest


def _refuse_newer(url: URL, version: int, latest: int) -> None:
    if version > latest:
        raise JournalError(
            f"journal {describe(url)} has schema version {version}, newer than this synapse-steps knows "
            f"({latest}): upgrade synapse-steps to use it"
        )
