"""Deleting old runs, their orphaned blobs, and giving the space back (VACUUM on SQLite)."""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.engine import URL, Engine

from synapse_steps.journal import queries, schema
from synapse_steps.journal.blobs import BlobStore
from synapse_steps.journal.engine import database_errors, writer
from synapse_steps.journal.records import RunStatus


def prune(engine: Engine, url: URL, store: BlobStore, cutoff: float) -> list[str]:
    """Delete every run last updated before ``cutoff`` (UNIX s) whose owner is not alive; return their ids."""
    runs, commits = schema.runs, schema.context_commits
    with database_errors(url, "pruning runs"), writer(engine).begin() as conn:
        now = time.time()
        old = [queries.summary(row, now) for row in conn.execute(select(runs).where(runs.c.updated_at < cutoff))]
        ids = [run.run_id for run in old if run.status is not RunStatus.RUNNING]
        if not ids:
            return []
        dropped = {d for (blobs,) in conn.execute(select(commits.c.blobs).where(commits.c.run_id.in_(ids))) for d in blobs}
        conn.execute(delete(runs).where(runs.c.run_id.in_(ids)))  # child rows cascade
        kept = {d for (blobs,) in conn.execute(select(commits.c.blobs)) for d in blobs} if dropped else set()
    # After the commit: a crash here leaves unreferenced blobs, never a row without its blob.
    for digest in dropped - kept:
        store.delete(digest)
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("VACUUM")  # autocommit connection (see engine.py), so outside any transaction
            cursor.close()
        finally:
            raw.close()
    return ids
