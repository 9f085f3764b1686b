"""The journal's tables (SQLAlchemy Core), as of any schema version up to :data:`VERSION`.

``define(metadata, version)`` builds the tables as they were at ``version``: the module's
tables are the latest shape, and migration 1 creates the version 1 shape from the same
definitions, so a column added later exists once (here, marked with its version) and
arrives through its own migration. Times are UNIX seconds (``Float``): the same arithmetic
on every database. Child rows cascade from ``runs``, so pruning a run is one DELETE.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

VERSION = 2  # the last migration in ``migrations.MIGRATIONS``


def _run_fk() -> Column[str]:
    return Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False)


def _since(added: int, version: int, *columns: Column[Any]) -> list[Column[Any]]:
    """``columns`` if schema ``version`` has them (they were added by migration ``added``)."""
    return list(columns) if version >= added else []


def define(metadata: MetaData, version: int = VERSION) -> MetaData:
    """Add the journal's tables, as they were at schema ``version``, to ``metadata``; return it."""
    Table(
        "schema_version",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", Float, nullable=False),
    )
    Table(
        "runs",
        metadata,
        Column("run_id", String(64), primary_key=True),
        Column("target", Text, nullable=False),
        Column("params", JSON, nullable=False),
        Column("registry", JSON, nullable=False),  # [{"name", "cls", "weight"}, ...] in order
        Column("fingerprint", String(64), nullable=False),  # sha256 of the registry list
        Column("executor", JSON, nullable=False),
        Column("status", String(32), nullable=False),
        Column("owner_host", Text, nullable=False),
        Column("owner_pid", Integer, nullable=False),
        Column("owner_started", Text),
        Column("owner_epoch", Integer, nullable=False),  # compare-and-swap token for take-over
        Column("heartbeat_at", Float, nullable=False),
        Column("heartbeat_interval_s", Float, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("finished_at", Float),
        Column("error", Text),
        *_since(2, version, Column("metrics", JSON)),  # the run's final metrics, as JSON
        Index("ix_runs_created_at", "created_at"),
        Index("ix_runs_status", "status"),
    )
    Table(
        "step_attempts",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        _run_fk(),
        Column("step", Text, nullable=False),
        Column("step_order", Integer, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("node", Text),
        Column("result", JSON),
        Column("error_type", Text),
        Column("error_message", Text),
        Column("traceback", Text),
        Column("started_at", Float, nullable=False),
        Column("finished_at", Float),
        Column("context_seq", Integer),
        UniqueConstraint("run_id", "step", "attempt", name="uq_step_attempts_run_step_attempt"),
    )
    Table(
        "context_commits",
        metadata,
        _run_fk(),
        Column("seq", Integer, nullable=False),
        Column("step", Text),
        Column("committed_at", Float, nullable=False),
        Column("fields", JSON, nullable=False),  # field names, in order
        Column("blobs", JSON, nullable=False),  # sha256 digests this snapshot refers to
        Column("snapshot", LargeBinary, nullable=False),  # see snapshot.py
        PrimaryKeyConstraint("run_id", "seq", name="pk_context_commits"),
    )
    Table(
        "rollbacks",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),  # order of first record
        _run_fk(),
        Column("step", Text, nullable=False),
        Column("status", String(16), nullable=False),
        Column("node", Text),
        Column("error_type", Text),
        Column("error_message", Text),
        Column("traceback", Text),
        Column("started_at", Float),
        Column("finished_at", Float),
        UniqueConstraint("run_id", "step", name="uq_rollbacks_run_step"),  # one outcome per step
    )
    Table(
        "progress",
        metadata,
        Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        Column("overall", Float, nullable=False),
        Column("step", Text),
        Column("updated_at", Float, nullable=False),
    )
    return metadata


metadata = define(MetaData())
schema_version = metadata.tables["schema_version"]
runs = metadata.tables["runs"]
step_attempts = metadata.tables["step_attempts"]
context_commits = metadata.tables["context_commits"]
rollbacks = metadata.tables["rollbacks"]
progress = metadata.tables["progress"]
