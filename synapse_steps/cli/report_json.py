"""``--json``: one JSON object per line on a private stdout, each with a timestamp and the run id.

``claim_stdout`` is what keeps the stream parseable: Ray (and any library or step that
prints) writes to file descriptor 1 from C code and child processes, which no
``sys.stdout`` swap can catch. So fd 1 is duplicated for the JSON lines alone, and fd 1
itself is pointed at stderr for everything else.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from pydantic_core import to_jsonable_python


def claim_stdout() -> TextIO:
    """A private stream on the original stdout; fd 1 (and ``sys.stdout``) now write to stderr.

    The private descriptor is not inherited by child processes (Ray's raylet, workers).
    """
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(private, "w", buffering=1, encoding="utf-8")


def _fallback(value: Any) -> Any:
    """numpy/torch scalars become numbers (``.item()``), anything else unknown its ``repr``."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):  # not a one-element array
            pass
    return repr(value)


def jsonable(value: Any) -> Any:
    """Strict JSON values: tuples and sets become lists, paths and times strings, and NaN or
    infinity ``null`` (a diverged loss must not break the stream)."""
    return to_jsonable_python(value, fallback=_fallback, inf_nan_mode="null")


def utc_iso(moment: datetime | None = None) -> str:
    """``2026-12-01T22:50:01.123Z``: ISO-8601 in UTC, milliseconds."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonReporter:
    """Every event: ``event``, ``timestamp`` (ISO-8601 UTC), ``run_id`` (the job id), ``step``,
    then its own fields; see the README for each event's fields."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._run_id: str | None = None

    def _emit(self, event: str, step: str | None = None, timestamp: datetime | None = None, **fields: Any) -> None:
        record = {"event": event, "timestamp": utc_iso(timestamp), "run_id": self._run_id, "step": step, **fields}
        self._stream.write(json.dumps(jsonable(record), allow_nan=False) + "\n")

    def start(self, info: dict[str, Any]) -> None:
        """Emit the ``start`` line; its run id tags every later line."""
        self._run_id = info["job_id"]
        self._emit("start", **info)

    def progress(self, fraction: float, step: str | None) -> None:
        """Emit a ``progress`` line (overall fraction, 0..1)."""
        self._emit("progress", step=step, progress=fraction)

    def step_progress(self, step: str, current: float, total: float) -> None:
        """In-step progress is folded into ``progress`` events (one per whole percent)."""

    def step(self, entry: dict[str, Any]) -> None:
        """Emit a ``step`` line when a step's status or rollback state changes."""
        self._emit("step", **entry)

    def runtime_event(self, event: dict[str, Any]) -> None:
        """Emit a step's own event (message, metrics, log) under its kind."""
        fields = dict(event)
        self._emit(fields.pop("event"), **fields)

    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None:
        """Emit the ``end`` line and flush, so a reader sees it before the process exits."""
        step = summary.get("failed_step") if summary else None
        self._emit("end", step=step, success=exit_code == 0, exit_code=exit_code, error=error, summary=summary)
        self._stream.flush()

    def abort(self, error: str) -> None:
        """The last line when the command must stop at once (Ctrl-C while Ray starts)."""
        self._emit("end", success=False, exit_code=130, error=error, summary=None)
        self._stream.flush()
