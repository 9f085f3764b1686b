"""The ``--journal URL`` option the run, resume, rollback and runs commands share (kept light: no SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def journal_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--journal URL``: which journal (default ``$SYNAPSE_STEPS_JOURNAL``, else the per-user file)."""
    return click.option(
        "--journal",
        metavar="URL",
        help="Run journal: sqlite:///PATH or postgresql+psycopg://... "
        "(default: $SYNAPSE_STEPS_JOURNAL, else ~/.local/state/synapse-steps/runs.db).",
    )(command)
