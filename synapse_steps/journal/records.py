"""What the journal hands back: statuses and read-only records of runs, attempts and rollbacks.

Times are UNIX seconds (UTC, ``time.time()``), so durations are plain subtraction and the
same on SQLite and Postgres. ``dataclasses.asdict(record)`` is ready for ``json.dumps``
(statuses are ``str`` enums), which is what a ``--json`` output needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """A run's status. ``INTERRUPTED`` is also reported for a ``RUNNING`` run whose owner is gone."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed and the rollback completed
    INTERRUPTED = "interrupted"
    ROLLBACK_INCOMPLETE = "rollback_incomplete"
    ROLLED_BACK = "rolled_back"  # rolled back after a crash (``rollback RUN_ID``)


FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ROLLED_BACK})


class StepStatus(str, Enum):
    """One attempt of one step. ``STARTED`` is written before the step is dispatched."""

    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class RollbackStatus(str, Enum):
    """One step's rollback. ``DONE``, ``FAILED`` and ``NOT_NEEDED`` are final: recorded once, never redone."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    NOT_NEEDED = "not needed"
    NOT_RUN = "not run"


FINAL_ROLLBACK = frozenset({RollbackStatus.DONE, RollbackStatus.FAILED, RollbackStatus.NOT_NEEDED})


@dataclass(frozen=True)
class StepEntry:
    """One registered step, as fingerprinted at the start of a run."""

    name: str
    cls: str  # "module:QualName"
    weight: float


@dataclass(frozen=True)
class ErrorInfo:
    """An exception as journaled: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def of(cls, exc: BaseException, traceback: str | None = None) -> ErrorInfo:
        """Describe ``exc``; pass ``traceback`` when it was formatted elsewhere (a Ray worker)."""
        import traceback as tb

        text = traceback if traceback is not None else "".join(tb.format_exception(exc))
        return cls(type(exc).__qualname__, str(exc), text)


@dataclass(frozen=True)
class Owner:
    """The driver process that owns a run: host name, pid and the process's start mark."""

    host: str
    pid: int
    started: str | None  # boot id + start time in clock ticks (Linux); guards against pid reuse


@dataclass(frozen=True)
class RunSummary:
    """One row of ``list_runs``: the run without its steps."""

    run_id: str
    target: str
    status: RunStatus  # derived: a RUNNING run whose owner is gone reads INTERRUPTED
    stored_status: RunStatus  # as written by the owner
    owner: Owner
    owner_epoch: int
    created_at: float
    updated_at: float
    finished_at: float | None
    heartbeat_at: float
    error: str | None
    metrics: Mapping[str, Any] | None = None  # the run's final metrics, as given to ``finish``

    @property
    def duration_s(self) -> float | None:
        """Seconds from the run's creation to its end, or None while it runs."""
        return None if self.finished_at is None else self.finished_at - self.created_at


@dataclass(frozen=True)
class StepAttempt:
    """One attempt of one step."""

    step: str
    order: int
    attempt: int  # 1, 2, ... per step (a resumed run re-runs the in-flight step as attempt 2)
    status: StepStatus
    node: str | None
    result: Mapping[str, Any] | None
    error: ErrorInfo | None
    started_at: float
    finished_at: float | None
    context_seq: int | None  # the context commit made after this attempt, if any

    @property
    def duration_s(self) -> float | None:
        """Seconds the attempt ran, or None while it runs."""
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(frozen=True)
class RollbackRecord:
    """The one rollback outcome of one step."""

    step: str
    status: RollbackStatus
    node: str | None
    error: ErrorInfo | None
    started_at: float | None
    finished_at: float | None

    @property
    def duration_s(self) -> float | None:
        """Seconds the rollback ran, or None if it has not started or finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class ContextCommit:
    """A committed context snapshot (its fields are loaded with ``Journal.load_context``)."""

    seq: int
    step: str | None
    committed_at: float
    fields: tuple[str, ...]
    blobs: tuple[str, ...]  # sha256 digests of the values stored as blobs


@dataclass(frozen=True)
class Progress:
    """The last journaled progress of a run (throttled to about one write a second)."""

    overall: float
    step: str | None
    updated_at: float


@dataclass(frozen=True)
class RunDetail:
    """Everything journaled about one run (``Journal.get_run``)."""

    summary: RunSummary
    params: Mapping[str, Any]
    registry: tuple[StepEntry, ...]
    fingerprint: str
    executor: Mapping[str, Any]
    heartbeat_interval_s: float
    attempts: tuple[StepAttempt, ...]  # in order of start
    rollbacks: tuple[RollbackRecord, ...]  # in order of start (last step first for a normal unwind)
    commits: tuple[ContextCommit, ...]
    progress: Progress | None
    steps: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(e.name for e in self.registry))

    @property
    def run_id(self) -> str:
        """The run's id (shortcut for ``summary.run_id``)."""
        return self.summary.run_id

    @property
    def status(self) -> RunStatus:
        """The run's status (shortcut for ``summary.status``)."""
        return self.summary.status

    @property
    def metrics(self) -> Mapping[str, Any] | None:
        """The run's final metrics, as its driver passed them to ``finish``."""
        return self.summary.metrics

    def last_attempt(self, step: str) -> StepAttempt | None:
        """The latest attempt of ``step``, or None if it never started."""
        found = [a for a in self.attempts if a.step == step]
        return found[-1] if found else None

    def succeeded_steps(self) -> list[str]:
        """Steps whose latest attempt succeeded or was skipped: a resume does not run them again."""
        done = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
        return [s for s in self.steps if (a := self.last_attempt(s)) is not None and a.status in done]

    def pending_rollbacks(self) -> list[str]:
        """Steps a rollback after a crash must still undo, highest step order first.

        A step qualifies when its latest attempt started and was not skipped, and its rollback
        has no final outcome yet (none, ``started`` when the crash hit mid-rollback, or ``not run``).
        """
        final = {r.step for r in self.rollbacks if r.status in FINAL_ROLLBACK}
        latest = {a.step: a for a in self.attempts}
        todo = [a for a in latest.values() if a.status is not StepStatus.SKIPPED and a.step not in final]
        return [a.step for a in sorted(todo, key=lambda a: a.order, reverse=True)]
