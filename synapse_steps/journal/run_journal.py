"""The journal of one run, as written by the driver that owns it.

Every write is one short transaction that first checks this driver still owns the run
(``owner_epoch`` unchanged) and refreshes its heartbeat: a driver whose run was taken
over after it was presumed dead gets a :class:`JournalError` instead of writing over the
new owner. Writes are synchronous: when a method returns, the record is durable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import URL, Connection, Engine

from synapse_steps.errors import JournalError
from synapse_steps.journal import schema, snapshot
from synapse_steps.journal.blobs import BlobStore
from synapse_steps.journal.engine import database_errors, writer
from synapse_steps.journal.records import FINAL_ROLLBACK, ErrorInfo, RollbackStatus, RunStatus, StepStatus

PROGRESS_INTERVAL_S = 1.0
T = TypeVar("T")

# Built once: a step costs three transactions, and building statements would cost more than running them.
_runs, _attempts, _commits = schema.runs, schema.step_attempts, schema.context_commits
_FENCE = (
    update(_runs)
    .where(_runs.c.run_id == bindparam("b_run"), _runs.c.owner_epoch == bindparam("b_epoch"))
    .values(updated_at=bindparam("b_now"), heartbeat_at=bindparam("b_now"))
)
_INSERT_ATTEMPT = insert(_attempts)
_UPDATE_ATTEMPT = update(_attempts).where(
    _attempts.c.run_id == bindparam("b_run"), _attempts.c.step == bindparam("b_step"), _attempts.c.attempt == bindparam("b_attempt")
)
_INSERT_COMMIT = insert(_commits)


def _json_safe(value: Mapping[str, Any]) -> Any:
    """A JSON copy of ``value``; what JSON cannot hold is stored as its ``repr``."""
    return json.loads(json.dumps(value, default=repr))


def _error_columns(error: ErrorInfo | None) -> dict[str, str | None]:
    if error is None:
        return {"error_type": None, "error_message": None, "traceback": None}
    return {"error_type": error.type, "error_message": error.message, "traceback": error.traceback}


class RunJournal:
    """Writes the records of one run; get one from ``Journal.start_run`` or ``Journal.take_over``.

    Call only from the driver, from the thread that runs the steps; ``heartbeat`` (and
    ``keep_alive``'s thread) may run beside it. Each write is its own transaction.
    """

    def __init__(
        self,
        engine: Engine,
        url: URL,
        store: BlobStore,
        run_id: str,
        epoch: int,
        attempts: Mapping[str, int] | None = None,
        last_seq: int = 0,
    ) -> None:
        self._engine = writer(engine)
        self._url = url
        self._store = store
        self.run_id = run_id
        self.epoch = epoch  # the owner epoch this driver holds
        # Only the owner writes (every write is fenced), so it can count attempts and commits itself.
        self._attempts: dict[str, int] = dict(attempts or {})
        self._last_seq = last_seq
        self._lock = threading.Lock()
        self._progress_written_at = 0.0
        self._pending_progress: tuple[float, str | None] | None = None
        self._finished = False

    # -- one write -----------------------------------------------------------------------

    def _write(self, doing: str, body: Callable[[Connection, float], T]) -> T:
        if self._finished:
            raise JournalError(f"run {self.run_id!r} is already finished in the journal; {doing} refused")
        now = time.time()
        with database_errors(self._url, doing), self._engine.begin() as conn:
            fenced = conn.execute(_FENCE, {"b_run": self.run_id, "b_epoch": self.epoch, "b_now": now})
            if fenced.rowcount != 1:
                raise self._lost(conn)
            return body(conn, now)

    def _lost(self, conn: Connection) -> JournalError:
        row = conn.execute(
            select(schema.runs.c.owner_host, schema.runs.c.owner_pid).where(schema.runs.c.run_id == self.run_id)
        ).first()
        if row is None:
            return JournalError(f"run {self.run_id!r} is no longer in the journal (pruned?)")
        return JournalError(
            f"run {self.run_id!r} was taken over by {row.owner_host} pid {row.owner_pid}; this driver no longer owns it"
        )

    # -- steps ---------------------------------------------------------------------------

    def step_started(self, step: str, order: int, *, node: str | None = None) -> int:
        """Record that ``step`` (registry position ``order``) is about to be dispatched.

        Call *before* dispatching it. Returns the attempt number (1 for a first run; a
        resumed run re-runs the in-flight step as the next attempt).
        """
        attempt = self._attempts.get(step, 0) + 1

        def body(conn: Connection, now: float) -> int:
            conn.execute(
                _INSERT_ATTEMPT,
                {
                    "run_id": self.run_id,
                    "step": step,
                    "step_order": order,
                    "attempt": attempt,
                    "status": StepStatus.STARTED.value,
                    "node": node,
                    "started_at": now,
                },
            )
            return attempt

        self._write(f"recording the start of step {step!r}", body)
        self._attempts[step] = attempt
        return attempt

    def step_finished(
        self,
        step: str,
        attempt: int,
        status: StepStatus,
        *,
        node: str | None = None,
        result: Mapping[str, Any] | None = None,
        error: ErrorInfo | None = None,
        context: Mapping[str, object] | None = None,
    ) -> int | None:
        """Record the outcome of an attempt: SUCCEEDED, FAILED (with ``error``) or SKIPPED.

        ``result`` is stored as JSON (values JSON cannot hold are stored as their repr);
        ``node`` overrides the node given at start (where the step actually ran). With
        ``context``, the context after the step is committed in the same transaction (as
        :meth:`commit_context`, one write instead of two) and its sequence number returned.
        """
        if status is StepStatus.STARTED:
            raise ValueError("step_finished needs an outcome: SUCCEEDED, FAILED or SKIPPED")
        values: dict[str, Any] = {"status": status.value, **_error_columns(error)}
        values.update(b_run=self.run_id, b_step=step, b_attempt=attempt)
        if result is not None:
            values["result"] = _json_safe(result)
        if node is not None:
            values["node"] = node
        encoded = None if context is None else snapshot.encode(context, self._store)
        seq = None if context is None else self._last_seq + 1

        def body(conn: Connection, now: float) -> None:
            if encoded is not None and context is not None:
                self._insert_commit(conn, now, seq, step, list(context), *encoded)
                values["context_seq"] = seq
            done = conn.execute(_UPDATE_ATTEMPT, {**values, "finished_at": now})
            if done.rowcount != 1:
                raise JournalError(f"run {self.run_id!r} has no attempt {attempt} of step {step!r}")
            if now - self._progress_written_at >= PROGRESS_INTERVAL_S:
                self._flush_progress(conn, now)  # what the throttle held back, at most once a second

        self._write(f"recording the outcome of step {step!r}", body)
        if seq is not None:
            self._last_seq = seq
        return seq

    def commit_context(self, fields: Mapping[str, object], *, step: str | None = None) -> int:
        """Make a context snapshot durable; returns its sequence number (1, 2, ...).

        ``fields``: the context's state fields by name (not the runtime context). Each is
        cloudpickled; values of 1 MiB or more are written to the blob store first, so a
        committed row never refers to a missing blob. With ``step``, the snapshot is also
        linked to that step's latest attempt (the context committed after it). Raises
        ``ContextNotSerializableError`` naming a field that cannot be pickled.
        """
        data, digests = snapshot.encode(fields, self._store)
        seq = self._last_seq + 1

        def body(conn: Connection, now: float) -> None:
            self._insert_commit(conn, now, seq, step, list(fields), data, digests)
            if step is not None and step in self._attempts:
                link = {"b_run": self.run_id, "b_step": step, "b_attempt": self._attempts[step], "context_seq": seq}
                conn.execute(_UPDATE_ATTEMPT, link)

        self._write("committing the context", body)
        self._last_seq = seq
        return seq

    def _insert_commit(
        self, conn: Connection, now: float, seq: int | None, step: str | None, fields: list[str], data: bytes, digests: list[str]
    ) -> None:
        row = {"run_id": self.run_id, "seq": seq, "step": step, "committed_at": now, "fields": fields}
        conn.execute(_INSERT_COMMIT, {**row, "blobs": digests, "snapshot": data})

    # -- rollbacks -----------------------------------------------------------------------

    def rollback_started(self, step: str, *, node: str | None = None) -> None:
        """Record that ``step``'s rollback is starting.

        Raises :class:`JournalError` if its rollback already has a final outcome (done,
        failed, not needed): each outcome is recorded once, so nothing is undone twice.
        A rollback left ``started`` by a crash, or ``not run``, may start again.
        """
        self._record_rollback(step, RollbackStatus.STARTED, node, None)

    def rollback_finished(
        self, step: str, status: RollbackStatus, *, node: str | None = None, error: ErrorInfo | None = None
    ) -> None:
        """Record ``step``'s rollback outcome: DONE, FAILED (with ``error``), NOT_NEEDED or NOT_RUN.

        NOT_NEEDED and NOT_RUN need no ``rollback_started``. Refused (JournalError) when
        the step already has a final outcome.
        """
        if status is RollbackStatus.STARTED:
            raise ValueError("rollback_finished needs an outcome, not 'started'")
        self._record_rollback(step, status, node, error)

    def _record_rollback(self, step: str, status: RollbackStatus, node: str | None, error: ErrorInfo | None) -> None:
        r = schema.rollbacks
        values: dict[str, Any] = {"status": status.value, **_error_columns(error)}
        if node is not None:
            values["node"] = node

        def body(conn: Connection, now: float) -> None:
            row = conn.execute(select(r.c.status, r.c.started_at).where(r.c.run_id == self.run_id, r.c.step == step)).first()
            if row is not None and RollbackStatus(row.status) in FINAL_ROLLBACK:
                raise JournalError(
                    f"the rollback of step {step!r} in run {self.run_id!r} is already recorded as {row.status!r}"
                )
            if status is RollbackStatus.STARTED:
                values.update(started_at=now, finished_at=None)
            else:
                values["finished_at"] = now
            if row is None:
                conn.execute(insert(r).values(run_id=self.run_id, step=step, **values))
            else:
                conn.execute(update(r).where(r.c.run_id == self.run_id, r.c.step == step).values(**values))

        self._write(f"recording the rollback of step {step!r} as {status.value!r}", body)

    # -- liveness, progress, end ---------------------------------------------------------

    def heartbeat(self) -> None:
        """Prove this driver is alive (any write does too). Raises JournalError once the run was taken over."""
        self._write("writing the heartbeat", lambda conn, now: None)

    @contextmanager
    def keep_alive(self, interval_s: float) -> Iterator[None]:
        """Heartbeat from a daemon thread every ``interval_s`` while the block runs (e.g. during a long step).

        A failed heartbeat (lost ownership, database gone) stops the thread; the next
        write from the driver raises the error.
        """
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except JournalError:
                    return

        thread = threading.Thread(target=beat, name=f"journal-heartbeat-{self.run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def progress(self, overall: float, step: str | None = None) -> bool:
        """Record overall progress (0..1), at most one write per second; returns whether it wrote now.

        A value held back by the throttle is written with the next step outcome a
        second or more later, or at ``finish``: the final progress is never lost.
        """
        with self._lock:
            self._pending_progress = (overall, step)
            if time.time() - self._progress_written_at < PROGRESS_INTERVAL_S:
                return False
        self._write("recording progress", self._flush_progress)
        return True

    def _flush_progress(self, conn: Connection, now: float) -> None:
        with self._lock:
            pending, self._pending_progress = self._pending_progress, None
            if pending is None:
                return
            self._progress_written_at = now
        p = schema.progress
        overall, step = pending
        values = {"overall": overall, "step": step, "updated_at": now}
        if conn.execute(update(p).where(p.c.run_id == self.run_id).values(**values)).rowcount == 0:
            conn.execute(insert(p).values(run_id=self.run_id, **values))

    def finish(self, status: RunStatus, *, error: str | None = None, metrics: Mapping[str, Any] | None = None) -> None:
        """Record how the run ended (any status but RUNNING); no write is accepted after it.

        ``metrics``: the run's final metrics (e.g. the last values per step), stored as JSON
        like a step's result (values JSON cannot hold are stored as their repr).
        """
        if status is RunStatus.RUNNING:
            raise ValueError("finish needs a final status, not 'running'")
        stored = None if metrics is None else _json_safe(metrics)

        def body(conn: Connection, now: float) -> None:
            self._flush_progress(conn, now)
            conn.execute(
                update(schema.runs)
                .where(schema.runs.c.run_id == self.run_id)
                .values(status=status.value, finished_at=now, error=error, metrics=stored)
            )

        self._write(f"recording the end of the run as {status.value!r}", body)
        self._finished = True
