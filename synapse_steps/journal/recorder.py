"""The orchestrator's side of the run journal: a run's events turned into durable records.

The orchestrator calls one method per event (step dispatched, step finished,
``ctx.commit()``, rollback started and finished, progress, the end). Writes during a
rollback never stop it: a journal that fails then is reported on stderr and the
rollback goes on, since undoing the work matters more than recording it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from synapse_steps.context_state import read_state
from synapse_steps.errors import JournalError, RollbackIncompleteError, StepFailedError
from synapse_steps.journal.journal import HEARTBEAT_INTERVAL_S, Journal
from synapse_steps.journal.records import ErrorInfo, RollbackStatus, RunStatus, StepStatus
from synapse_steps.journal.run_journal import RunJournal
from synapse_steps.result import StepResult

NodeOf = Callable[[str], "str | None"]


def run_status_of(failure: BaseException | None) -> RunStatus:
    """How a run that ended with ``failure`` (None: success) is journaled.

    A failed step or an interrupt whose rollback completed is ``failed`` (nothing left
    to do); an abandoned rollback is ``rollback_incomplete`` (``rollback RUN_ID`` goes on).
    """
    if failure is None:
        return RunStatus.SUCCEEDED
    if isinstance(failure, RollbackIncompleteError):
        return RunStatus.ROLLBACK_INCOMPLETE
    return RunStatus.FAILED


def describe_failure(failure: BaseException) -> str:
    """The run's error line in the journal, as the CLI prints it."""
    if isinstance(failure, (StepFailedError, RollbackIncompleteError)):
        return str(failure)
    if isinstance(failure, KeyboardInterrupt):
        return f"interrupted ({failure})" if str(failure) else "interrupted"
    return f"{type(failure).__name__}: {failure}"


class RunRecorder:
    """Journals one run for the orchestrator; built by ``opening.start_recorder`` or ``take_over_recorder``.

    ``node_of(step)`` says where a step ran (the executor's node id, or None).
    """

    def __init__(self, journal: Journal, run: RunJournal, *, owns_journal: bool, node_of: NodeOf) -> None:
        self.journal = journal
        self.run = run
        self._owns_journal = owns_journal
        self._node_of = node_of
        self._attempts: dict[str, int] = {}
        self._warned = False

    @property
    def run_id(self) -> str:
        """The journaled run's id."""
        return self.run.run_id

    @contextmanager
    def alive(self) -> Iterator[None]:
        """Heartbeat while the run goes, so another host can tell a live run from a dead one."""
        with self.run.keep_alive(HEARTBEAT_INTERVAL_S):
            yield

    # -- steps ---------------------------------------------------------------------------

    def step_started(self, name: str, order: int) -> None:
        """Before ``name`` is dispatched: from now on a crash leaves it to be rolled back."""
        self._attempts[name] = self.run.step_started(name, order)

    def step_skipped(self, name: str, order: int, context: Any) -> None:
        """A step whose ``can_skip`` said yes: recorded (with the context) so a resume does not ask again."""
        attempt = self.run.step_started(name, order)
        self.run.step_finished(name, attempt, StepStatus.SKIPPED, context=read_state(context))

    def step_finished(self, name: str, result: StepResult, context: Any) -> None:
        """The outcome of a dispatched step, with the context after it (one transaction)."""
        attempt = self._attempts.pop(name, None)
        if attempt is None:
            return  # never dispatched (a hook failed first): nothing ran, nothing to journal
        status = StepStatus.SUCCEEDED if result.success else StepStatus.FAILED
        error = None if result.success else ErrorInfo("StepFailed", result.error or "", result.traceback)
        self.run.step_finished(
            name, attempt, status, node=self._node_of(name), result=result.data, error=error, context=read_state(context)
        )

    def committed(self, context: Any) -> None:
        """``ctx.commit()`` on the driver: the context as it is now becomes durable."""
        self.run.commit_context(read_state(context), step=getattr(context, "current_step", None))

    def progress(self, overall: float, step: str | None) -> None:
        """Overall progress (0..1); the journal writes about once a second."""
        self.run.progress(overall, step)

    # -- rollbacks (never stopped by the journal) -----------------------------------------

    def rollback_started(self, name: str) -> None:
        """Before ``name``'s rollback: a crash from here on leaves it to ``rollback RUN_ID``."""
        self._tolerant(lambda: self.run.rollback_started(name, node=self._node_of(name)))

    def rollback_finished(self, name: str, outcome: str, error: BaseException | None = None) -> None:
        """``outcome``: a ``StepRecord.rollback`` value (done, failed, not needed, not run)."""
        info = None if error is None else ErrorInfo.of(error)
        status = RollbackStatus(outcome)
        self._tolerant(lambda: self.run.rollback_finished(name, status, node=self._node_of(name), error=info))

    def _tolerant(self, write: Callable[[], None]) -> None:
        try:
            write()
        except JournalError as exc:
            if not self._warned:
                self._warned = True
                sys.stderr.write(f"synapse-steps: the run journal did not record a rollback outcome: {exc}\n")

    # -- the end ---------------------------------------------------------------------------

    def finish(
        self, failure: BaseException | None, *, after_crash: bool = False, metrics: Mapping[str, Any] | None = None
    ) -> None:
        """Record how the run ended, then release the journal if this recorder opened it.

        ``after_crash``: the end of ``rollback RUN_ID``: ``rolled_back``, else ``rollback_incomplete``.
        ``metrics``: the run's final metrics (``runtime_ctx.metrics``), shown by ``runs show``.
        """
        status = run_status_of(failure)
        if after_crash:  # whatever stopped it, what was not undone can still be
            status = RunStatus.ROLLED_BACK if failure is None else RunStatus.ROLLBACK_INCOMPLETE
        try:
            error = None if failure is None else describe_failure(failure)
            self._tolerant(lambda: self.run.finish(status, error=error, metrics=metrics))
        finally:
            self.close()

    def close(self) -> None:
        """Release the journal's connections if this recorder opened it."""
        if self._owns_journal:
            self.journal.close()

