"""Which journal a run writes to, and starting or taking over its record.

``journal=`` on the orchestrator (or ``journal:`` in the executor config, or
``SYNAPSE_STEPS_JOURNAL``) is a URL, an open :class:`Journal`, ``True`` for the per-user
default, or ``False``/None for none. The CLI journals by default; the library only when asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from synapse_steps.errors import JournalError
from synapse_steps.journal.fingerprint import entries_of, fingerprint
from synapse_steps.journal.journal import Journal
from synapse_steps.journal.recorder import NodeOf, RunRecorder
from synapse_steps.journal.records import RunDetail

JournalSpec = str | Journal | bool | None


def open_journal(spec: JournalSpec, blobs: str | None = None) -> tuple[Journal, bool] | None:
    """The journal ``spec`` names and whether the caller must close it; None when journaling is off.

    ``blobs``: where large context values go (default: see ``Journal.open``).
    """
    if spec is None or spec is False:
        return None
    if isinstance(spec, Journal):
        return spec, False
    return Journal.open(None if spec is True else spec, blobs=blobs), True


def start_recorder(
    spec: JournalSpec,
    *,
    run_id: str,
    target: str,
    params: Mapping[str, Any],
    steps: Sequence[Any],
    executor: Mapping[str, Any],
    node_of: NodeOf,
    blobs: str | None = None,
) -> RunRecorder | None:
    """Record a new run (before any step is dispatched); None when journaling is off."""
    opened = open_journal(spec, blobs)
    if opened is None:
        return None
    journal, owned = opened
    try:
        run = journal.start_run(
            run_id=run_id, target=target, params=params, registry=entries_of(steps), executor=executor
        )
    except BaseException:
        if owned:
            journal.close()
        raise
    return RunRecorder(journal, run, owns_journal=owned, node_of=node_of)


def take_over_recorder(
    spec: JournalSpec, run_id: str, steps: Sequence[Any], *, force: bool, node_of: NodeOf, blobs: str | None = None
) -> tuple[RunRecorder, RunDetail]:
    """Become the owner of an interrupted (or rollback-incomplete) run; refuse a changed registry.

    The checks come before the take-over, so a refusal changes nothing.
    """
    opened = open_journal(True if spec is None or spec is False else spec, blobs)
    assert opened is not None
    journal, owned = opened
    try:
        detail = journal.get_run(run_id)
        if not force:
            check_same_steps(detail, steps)
        run = journal.take_over(run_id)
        return RunRecorder(journal, run, owns_journal=owned, node_of=node_of), journal.get_run(run_id)
    except BaseException:
        if owned:
            journal.close()
        raise


def check_same_steps(detail: RunDetail, steps: Sequence[Any]) -> None:
    """Refuse (JournalError) ``steps`` that are not the registry ``detail``'s run started with."""
    entries = entries_of(steps)
    if fingerprint(entries) == detail.fingerprint:
        return
    journaled = ", ".join(f"{e.name} ({e.cls}, {e.weight:g})" for e in detail.registry)
    now = ", ".join(f"{e.name} ({e.cls}, {e.weight:g})" for e in entries)
    raise JournalError(
        f"run {detail.run_id!r}: its steps changed since it started (journaled: {journaled}; now: {now}); "
        "pass --force (force=True) to go on anyway"
    )
