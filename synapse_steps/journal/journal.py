"""``Journal``: the durable record of runs, opened by URL, written by drivers, read for history."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import URL, Engine

from synapse_steps.errors import JournalError
from synapse_steps.journal import engine as engines
from synapse_steps.journal import owner as owners
from synapse_steps.journal import queries, schema, snapshot
from synapse_steps.journal.blobs import BlobStore, open_store
from synapse_steps.journal.fingerprint import fingerprint
from synapse_steps.journal.location import default_blobs, parse_url
from synapse_steps.journal.migrations import migrate
from synapse_steps.journal.pruning import prune
from synapse_steps.journal.records import FINISHED, RunDetail, RunStatus, RunSummary, StepEntry
from synapse_steps.journal.run_journal import RunJournal

HEARTBEAT_INTERVAL_S = 10.0
MAX_RUN_ID = 64  # runs.run_id is String(64)
RESUMABLE = frozenset({RunStatus.INTERRUPTED, RunStatus.ROLLBACK_INCOMPLETE})


def new_run_id() -> str:
    """A run id that sorts by start time and reads well: ``20261201-223000-1a2b3c4d`` (UTC)."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


class Journal:
    """The run journal: one SQLite file or Postgres database holding every run's record.

    Open it by URL, start (or take over) a run to get its :class:`RunJournal` writer, and
    read history. Only the driver writes; workers never touch the journal.

    Example::

        journal = Journal.open("sqlite:///runs.db")          # None: the per-user default
        run = journal.start_run(target="pkg.mod:Action", params={"epochs": 3},
                                registry=entries_of(registry.get_steps()),
                                executor={"kind": "local"})
        attempt = run.step_started("load", order=0)          # before dispatching the step
        run.commit_context({"dataset": ds}, step="load")     # after it (or from ctx.commit())
        run.step_finished("load", attempt, StepStatus.SUCCEEDED, result=result.data)
        run.finish(RunStatus.SUCCEEDED)
        journal.get_run(run.run_id).attempts                 # history
        journal.close()

    Wiring into the orchestrator (all on the driver; ``run`` is the :class:`RunJournal`):

    - step ``i`` about to be dispatched: ``attempt = run.step_started(name, i, node=...)``;
      a skipped step: ``step_started`` then ``step_finished(name, attempt, StepStatus.SKIPPED)``.
    - ``ctx.commit()`` and the end of a succeeded step: ``run.commit_context(fields, step=name)``
      (the context's state fields, not ``runtime_ctx``).
    - outcome: ``run.step_finished(name, attempt, SUCCEEDED | FAILED, node=..., result=data,
      error=ErrorInfo.of(exc, traceback=text))``.
    - rollback: ``rollback_started(name)`` then ``rollback_finished(name, DONE | FAILED, error=...)``;
      ``StepRecord.rollback`` values "not needed" / "not run" map to
      ``rollback_finished(name, NOT_NEEDED | NOT_RUN)`` (``RollbackStatus(value)`` does it).
    - progress callback: ``run.progress(overall, step)`` (throttled here, call it freely);
      while waiting on a long step: ``with run.keep_alive(interval_s): ...``.
    - end: ``run.finish(SUCCEEDED | FAILED | INTERRUPTED | ROLLBACK_INCOMPLETE, error=str(exc))``.
    - resume ``run_id``: ``detail = journal.get_run(run_id)``; compare ``detail.fingerprint``
      with ``fingerprint(entries_of(registry.get_steps()))`` *before* taking over (a refusal
      changes nothing); ``run = journal.take_over(run_id)`` (exactly one of concurrent
      callers wins); restore ``journal.load_context(run_id)``; skip
      ``detail.succeeded_steps()``; ``step_started`` of the in-flight step returns attempt 2.
    - rollback after a crash: ``run = journal.take_over(run_id)``; for each step of
      ``detail.pending_rollbacks()`` (highest order first) restore
      ``journal.load_context(run_id, seq=detail.last_attempt(step).context_seq)`` (or the
      latest commit when that is None), record ``rollback_started``/``rollback_finished``;
      then ``run.finish(RunStatus.ROLLED_BACK)``.
    - history: ``list_runs(status=..., limit=...)``, ``get_run(run_id)``, ``prune(older_than_s)``.

    Guarantees: every write is a committed transaction when the call returns (SQLite in
    WAL mode survives any process crash; an OS crash may drop the last writes). Each
    step's rollback outcome is recorded once. A driver that lost its run to a take-over
    cannot write to it any more. Every refusal is a one-line :class:`JournalError` and
    changes nothing.
    """

    def __init__(self, engine: Engine, url: URL, store: BlobStore) -> None:
        self._engine = engine
        self._url = url
        self._store = store

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        blobs: str | None = None,
        connect_timeout_s: float = engines.CONNECT_TIMEOUT_S,
        busy_timeout_s: float = engines.BUSY_TIMEOUT_S,
    ) -> Journal:
        """Open (creating or migrating) the journal at ``url``.

        ``url``: ``sqlite:///PATH``, ``postgresql+psycopg://USER@HOST:PORT/DB`` or None for
        ``$SYNAPSE_STEPS_JOURNAL``, else ``$XDG_STATE_HOME/synapse-steps/runs.db`` (default
        ``~/.local/state/synapse-steps/runs.db``). ``blobs``: where context values of 1 MiB
        or more go, a folder or an fsspec URL; default ``PATH.blobs/`` next to a SQLite
        file, the per-user state folder for Postgres. Raises :class:`JournalError` if the
        URL does not parse, the database does not answer within ``connect_timeout_s``, or
        its schema is newer than this version knows.
        """
        parsed = parse_url(url)
        engine = engines.create(parsed, connect_timeout_s=connect_timeout_s, busy_timeout_s=busy_timeout_s)
        try:
            with engines.connect_errors(parsed), engine.connect():
                pass
            migrate(engine, parsed)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, parsed, open_store(blobs or default_blobs(parsed)))

    @property
    def url(self) -> str:
        """The journal URL, password hidden."""
        return engines.describe(self._url)

    @property
    def blobs(self) -> str:
        """Where large context values are stored."""
        return self._store.location

    # -- writers -------------------------------------------------------------------------

    def start_run(
        self,
        *,
        target: str,
        params: Mapping[str, Any],
        registry: Sequence[StepEntry],
        executor: Mapping[str, Any],
        run_id: str | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> RunJournal:
        """Record a new run owned by this process (status RUNNING) and return its writer.

        ``target``: what a resume rebuilds (``module:Class`` or a file); ``params``,
        ``executor``: JSON-compatible mappings; ``registry``: see ``entries_of``. The run
        id is generated (see :func:`new_run_id`) unless given. ``heartbeat_interval_s``
        is how often this driver promises to write (any write counts; use
        ``RunJournal.keep_alive`` during long steps): another host presumes the run dead
        after three missed intervals.
        """
        run_id = run_id or new_run_id()
        if len(run_id) > MAX_RUN_ID:
            raise JournalError(f"run id {run_id[:20]!r}... is longer than {MAX_RUN_ID} characters")
        for what, value in (("params", params), ("executor", executor)):
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise JournalError(f"run {run_id!r}: {what} must be JSON-compatible to be journaled: {exc}") from None
        me, now = owners.current(), time.time()
        row = {
            "run_id": run_id,
            "target": target,
            "params": dict(params),
            "registry": [{"name": e.name, "cls": e.cls, "weight": e.weight} for e in registry],
            "fingerprint": fingerprint(registry),
            "executor": dict(executor),
            "status": RunStatus.RUNNING.value,
            "owner_host": me.host,
            "owner_pid": me.pid,
            "owner_started": me.started,
            "owner_epoch": 1,
            "heartbeat_at": now,
            "heartbeat_interval_s": heartbeat_interval_s,
            "created_at": now,
            "updated_at": now,
        }
        with engines.database_errors(self._url, f"recording run {run_id!r}"), engines.writer(self._engine).begin() as conn:
            if conn.execute(select(schema.runs.c.run_id).where(schema.runs.c.run_id == run_id)).first() is not None:
                raise JournalError(f"run {run_id!r} already exists in the journal")
            conn.execute(schema.runs.insert().values(**row))
        return RunJournal(self._engine, self._url, self._store, run_id, epoch=1)

    def take_over(
        self,
        run_id: str,
        *,
        allowed: Collection[RunStatus] = RESUMABLE,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> RunJournal:
        """Make this process the owner of ``run_id`` (to resume or roll it back); status becomes RUNNING.

        The run's (derived) status must be in ``allowed`` (default: interrupted, i.e. its
        owner is gone, or rollback incomplete). Ownership moves by compare-and-swap on the
        owner epoch, so of several concurrent callers exactly one wins; the others get a
        :class:`JournalError` naming the winner. Also refused, with a one-line message: an
        unknown run id, a run still running, a finished run.
        """
        with engines.database_errors(self._url, f"reading run {run_id!r}"), self._engine.connect() as conn:
            run = queries.summary(queries.run_row(conn, run_id), time.time())
        if run.status not in allowed:
            raise JournalError(refusal(run, allowed))
        return self._claim(run_id, run.owner_epoch, heartbeat_interval_s)

    def _claim(self, run_id: str, epoch: int, heartbeat_interval_s: float) -> RunJournal:
        """The compare-and-swap: take ``run_id`` only if its owner epoch is still ``epoch``."""
        me, now = owners.current(), time.time()
        runs = schema.runs
        with engines.database_errors(self._url, f"taking over run {run_id!r}"), engines.writer(self._engine).begin() as conn:
            swapped = conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id, runs.c.owner_epoch == epoch)
                .values(
                    owner_host=me.host,
                    owner_pid=me.pid,
                    owner_started=me.started,
                    owner_epoch=epoch + 1,
                    status=RunStatus.RUNNING.value,
                    heartbeat_at=now,
                    heartbeat_interval_s=heartbeat_interval_s,
                    updated_at=now,
                    finished_at=None,
                )
            )
            if swapped.rowcount != 1:
                winner = queries.summary(queries.run_row(conn, run_id), now).owner
                raise JournalError(f"run {run_id!r} was taken over first by {winner.host} pid {winner.pid}")
            a, c = schema.step_attempts, schema.context_commits
            counted = select(a.c.step, func.max(a.c.attempt)).where(a.c.run_id == run_id).group_by(a.c.step)
            attempts = {step: int(n) for step, n in conn.execute(counted)}
            last_seq = conn.execute(select(func.coalesce(func.max(c.c.seq), 0)).where(c.c.run_id == run_id)).scalar_one()
        return RunJournal(self._engine, self._url, self._store, run_id, epoch + 1, attempts, int(last_seq))

    # -- history -------------------------------------------------------------------------

    def list_runs(self, *, status: RunStatus | None = None, limit: int | None = queries.DEFAULT_LIMIT) -> list[RunSummary]:
        """Runs newest first; ``status`` filters on the derived status (INTERRUPTED finds crashed runs)."""
        with engines.database_errors(self._url, "listing runs"), self._engine.connect() as conn:
            return queries.list_runs(conn, status, limit)

    def get_run(self, run_id: str) -> RunDetail:
        """Everything journaled about ``run_id`` (JournalError if unknown)."""
        with engines.database_errors(self._url, f"reading run {run_id!r}"), self._engine.connect() as conn:
            return queries.get_run(conn, run_id)

    def load_context(self, run_id: str, seq: int | None = None) -> dict[str, object] | None:
        """The context fields of commit ``seq`` (default: the last) of ``run_id``; None if it committed none."""
        c = schema.context_commits
        query = select(c.c.snapshot).where(c.c.run_id == run_id).order_by(c.c.seq.desc()).limit(1)
        if seq is not None:
            query = select(c.c.snapshot).where(c.c.run_id == run_id, c.c.seq == seq)
        with engines.database_errors(self._url, f"reading the context of run {run_id!r}"), self._engine.connect() as conn:
            queries.run_row(conn, run_id)
            data = conn.execute(query).scalar_one_or_none()
        return None if data is None else snapshot.decode(data, self._store)

    def prune(self, older_than_s: float) -> list[str]:
        """Delete runs not active for ``older_than_s`` seconds (never a live run); return their ids.

        Their blobs no other run refers to are deleted too; SQLite is then VACUUMed.
        Interrupted runs are pruned like finished ones: roll them back first if needed.
        """
        return prune(self._engine, self._url, self._store, time.time() - older_than_s)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refusal(run: RunSummary, allowed: Collection[RunStatus]) -> str:
    """Why ``run`` cannot be taken over: still running, already finished, or another status."""
    if run.status is RunStatus.RUNNING:
        return f"run {run.run_id!r} is still running (owner {run.owner.host} pid {run.owner.pid})"
    if run.status in FINISHED:
        return f"run {run.run_id!r} already finished ({run.status.value})"
    return f"run {run.run_id!r} is {run.status.value}, not {' or '.join(sorted(s.value for s in allowed))}"
