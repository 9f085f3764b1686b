"""Reading the journal: rows into records, a run's derived status, run history."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from synapse_steps.errors import JournalError
from synapse_steps.journal import schema
from synapse_steps.journal.owner import is_alive
from synapse_steps.journal.records import (
    ContextCommit,
    ErrorInfo,
    Owner,
    Progress,
    RollbackRecord,
    RollbackStatus,
    RunDetail,
    RunStatus,
    RunSummary,
    StepAttempt,
    StepEntry,
    StepStatus,
)

DEFAULT_LIMIT = 50


def summary(row: Row[Any], now: float) -> RunSummary:
    """A ``runs`` row as a summary; a RUNNING run whose owner is gone reads INTERRUPTED."""
    owner = Owner(row.owner_host, row.owner_pid, row.owner_started)
    stored = RunStatus(row.status)
    status = stored
    if stored is RunStatus.RUNNING and not is_alive(owner, row.heartbeat_at, row.heartbeat_interval_s, now):
        status = RunStatus.INTERRUPTED
    return RunSummary(
        run_id=row.run_id,
        target=row.target,
        status=status,
        stored_status=stored,
        owner=owner,
        owner_epoch=row.owner_epoch,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        error=row.error,
        metrics=row.metrics,
    )


def run_row(conn: Connection, run_id: str) -> Row[Any]:
    """The ``runs`` row of ``run_id``; JournalError if there is none."""
    row = conn.execute(select(schema.runs).where(schema.runs.c.run_id == run_id)).first()
    if row is None:
        raise JournalError(f"no run {run_id!r} in the journal")
    return row


def list_runs(conn: Connection, status: RunStatus | None, limit: int | None) -> list[RunSummary]:
    """Runs newest first, optionally only those whose (derived) status is ``status``."""
    query = select(schema.runs).order_by(schema.runs.c.created_at.desc(), schema.runs.c.run_id.desc())
    if status in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
        # Derived statuses: a stored RUNNING row may read either way.
        query = query.where(schema.runs.c.status.in_([RunStatus.RUNNING.value, status.value]))
    elif status is not None:
        query = query.where(schema.runs.c.status == status.value)
    if limit is not None and limit < 1:
        return []
    now = time.time()
    found: list[RunSummary] = []
    for row in conn.execute(query):
        run = summary(row, now)
        if status is None or run.status is status:
            found.append(run)
            if limit is not None and len(found) >= limit:
                break
    return found


def _error(row: Row[Any]) -> ErrorInfo | None:
    if row.error_type is None:
        return None
    return ErrorInfo(row.error_type, row.error_message or "", row.traceback)


def get_run(conn: Connection, run_id: str) -> RunDetail:
    """Everything journaled about ``run_id``."""
    row = run_row(conn, run_id)
    a, r, c, p = schema.step_attempts, schema.rollbacks, schema.context_commits, schema.progress
    attempts = tuple(
        StepAttempt(
            step=x.step,
            order=x.step_order,
            attempt=x.attempt,
            status=StepStatus(x.status),
            node=x.node,
            result=x.result,
            error=_error(x),
            started_at=x.started_at,
            finished_at=x.finished_at,
            context_seq=x.context_seq,
        )
        for x in conn.execute(select(a).where(a.c.run_id == run_id).order_by(a.c.id))
    )
    rollbacks = tuple(
        RollbackRecord(
            step=x.step,
            status=RollbackStatus(x.status),
            node=x.node,
            error=_error(x),
            started_at=x.started_at,
            finished_at=x.finished_at,
        )
        for x in conn.execute(select(r).where(r.c.run_id == run_id).order_by(r.c.id))
    )
    commits = tuple(
        ContextCommit(x.seq, x.step, x.committed_at, tuple(x.fields), tuple(x.blobs))
        for x in conn.execute(
            select(c.c.seq, c.c.step, c.c.committed_at, c.c.fields, c.c.blobs).where(c.c.run_id == run_id).order_by(c.c.seq)
        )
    )
    prog = conn.execute(select(p).where(p.c.run_id == run_id)).first()
    return RunDetail(
        summary=summary(row, time.time()),
        params=row.params,
        registry=tuple(StepEntry(e["name"], e["cls"], e["weight"]) for e in row.registry),
        fingerprint=row.fingerprint,
        executor=row.executor,
        heartbeat_interval_s=row.heartbeat_interval_s,
        attempts=attempts,
        rollbacks=rollbacks,
        commits=commits,
        progress=None if prog is None else Progress(prog.overall, prog.step, prog.updated_at),
    )
