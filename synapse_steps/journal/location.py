"""Where the journal lives: the default per-user SQLite file, and checking a journal URL.

Default: ``$SYNAPSE_STEPS_JOURNAL`` if set, else ``sqlite:///$XDG_STATE_HOME/synapse-steps/runs.db``
(``~/.local/state/synapse-steps/runs.db`` when ``XDG_STATE_HOME`` is unset), per the XDG base
directory spec: run history is state, not cache (it must survive) and not config.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from synapse_steps.errors import JournalError

ENV_VAR = "SYNAPSE_STEPS_JOURNAL"
BLOBS_ENV_VAR = "SYNAPSE_STEPS_JOURNAL_BLOBS"
SUPPORTED = ("sqlite", "postgresql+psycopg")


def state_dir() -> Path:
    """The per-user state folder of synapse-steps (not created here)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "synapse-steps"


def default_url() -> str:
    """The journal URL used when none is given (see the module docstring)."""
    return os.environ.get(ENV_VAR) or _per_user_url()


def _per_user_url() -> str:
    return f"sqlite:///{state_dir() / 'runs.db'}"


def parse_url(url: str | None) -> URL:
    """Parse and check ``url`` (None: :func:`default_url`); raises a one-line :class:`JournalError`.

    Only ``sqlite:///PATH`` and ``postgresql+psycopg://...`` are accepted. A SQLite file's
    folder must exist, except the default location's, which is created.
    """
    text = default_url() if url is None else url
    try:
        parsed = make_url(text)
    except ArgumentError:
        raise JournalError(f"journal URL {text!r} does not parse; use sqlite:///PATH or postgresql+psycopg://...") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in SUPPORTED:
        raise JournalError(
            f"journal URL {parsed.render_as_string()!r}: unsupported database {parsed.drivername!r}; "
            "use sqlite:///PATH or postgresql+psycopg://..."
        )
    if parsed.drivername == "sqlite":
        _check_sqlite_path(parsed, is_default=text == _per_user_url())
    return parsed


def _check_sqlite_path(parsed: URL, *, is_default: bool) -> None:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise JournalError("journal URL 'sqlite://' names no file: an in-memory journal would not outlive the driver")
    folder = Path(database).expanduser().resolve().parent
    if is_default:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise JournalError(f"journal URL {parsed.render_as_string()!r}: folder {str(folder)!r} does not exist")


def default_blobs(parsed: URL) -> str:
    """Where large context values go by default: a folder next to the SQLite file.

    For Postgres it is the per-user state folder on the driver's machine: set
    ``$SYNAPSE_STEPS_JOURNAL_BLOBS`` (or ``journal_blobs`` in the config, or ``blobs=``) to a
    shared folder or fsspec URL (``s3://...``) when a run may be resumed from another machine.
    """
    if os.environ.get(BLOBS_ENV_VAR):
        return os.environ[BLOBS_ENV_VAR]
    if parsed.drivername == "sqlite":
        db = Path(parsed.database or "").expanduser().resolve()
        return str(db.with_name(db.name + ".blobs"))
    return str(state_dir() / "blobs")
