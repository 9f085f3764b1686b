"""Timestamped lines for logs nobody watches live: CI, ``ray job logs``, ``nohup``, a pipe.

One line per step start, finish, failure and rollback, each message and log, and a
progress line at most every ``progress_every_s`` seconds *and* 10 points of progress
(whichever is rarer), so a long run writes a few dozen lines, not thousands.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console

from synapse_steps.display.summary import key_values, print_summary

PROGRESS_STEP = 0.10  # at least this much more progress between two progress lines


def utc_stamp(moment: datetime | None = None) -> str:
    """``2026-12-01T22:50:01Z``: ISO-8601, UTC, whole seconds."""
    return (moment or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PlainView:
    """A ``Reporter`` writing plain lines (no colours, no cursor tricks) to ``stream``."""

    def __init__(self, stream: TextIO, progress_every_s: float = 30.0) -> None:
        self._stream = stream
        self._every_s = progress_every_s
        self.console = Console(file=stream, soft_wrap=True, no_color=True, highlight=False)
        self._errors = Console(stderr=True, soft_wrap=True, no_color=True, highlight=False)
        self._title = ""
        self._started = False
        self._last_time = time.monotonic()
        self._last_fraction = 0.0
        self._fraction = 0.0
        self._step: dict[str, str] = {}  # step name -> "step 2 of 3: name"
        self._current: str | None = None
        self._inner: tuple[float, float] | None = None
        self._reported: dict[str, tuple[str, str | None]] = {}

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.flush()

    def _line(self, text: str, moment: datetime | None = None) -> None:
        self._stream.write(f"{utc_stamp(moment)} {text}\n")
        self._stream.flush()

    def start(self, info: dict[str, Any]) -> None:
        """Print the run's title line."""
        self._title = f"{info['action']} on {info['executor']}"
        self._started = True
        self._last_time = time.monotonic()
        self._line(f"{self._title} — {len(info['steps'])} steps, run {info['job_id']}", info.get("timestamp"))

    def progress(self, fraction: float, step: str | None) -> None:
        """Print progress at most every ``every_s`` seconds and in steps of ``PROGRESS_STEP``: logs stay short."""
        self._fraction = fraction
        now = time.monotonic()
        if now - self._last_time < self._every_s or fraction - self._last_fraction < PROGRESS_STEP or fraction >= 1:
            return
        self._last_time, self._last_fraction = now, fraction
        where = self._step.get(step or "", step or "-")
        inner = f" {self._inner[0]:g}/{self._inner[1]:g}" if self._inner and step == self._current else ""
        self._line(f"progress {fraction:.0%} ({where}{inner})")

    def step_progress(self, step: str, current: float, total: float) -> None:
        """Remember the running step's own progress for the next progress line."""
        if step == self._current:
            self._inner = (current, total)

    def step(self, entry: dict[str, Any]) -> None:
        """Print a line when a step's status or rollback state changes, never twice for the same state."""
        name, status, rollback = entry["step"], entry["status"], entry["rollback"]
        label = self._step.setdefault(name, f"step {entry['order']} of {entry['of']}: {name}")
        before_status, before_rollback = self._reported.get(name, ("pending", None))
        self._reported[name] = (status, rollback)
        moment = entry.get("timestamp")  # set when the entry is replayed from a run's events
        if status == "running":
            self._current, self._inner = name, None
            self._line(f"{label} started", moment)
        elif status != before_status:
            took = "" if entry["duration_s"] is None else f" in {entry['duration_s']:.2f} s"
            error = f": {entry['error']}" if status == "failed" and entry["error"] else ""
            self._line(f"{label} {status}{took}{error}", moment)
        if rollback is not None and rollback != before_rollback:
            self._line(f"rollback of {name}: {rollback}", moment)

    def runtime_event(self, event: dict[str, Any]) -> None:
        """Print a step's message with its step name and level."""
        where = f"[{event['step'] or '-'}]"
        if event["event"] == "message":
            level = "" if event["level"] == "info" else f"{event['level']}: "
            self._line(f"{where} {level}{event['message']}", event.get("timestamp"))
        elif event["event"] == "log":
            self._line(f"{where} {event['name']} {key_values(event['data'])}", event.get("timestamp"))

    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None:
        """Print the outcome line (or, for a run that never started, the error on stderr)."""
        if not self._started or summary is None:  # the run never started
            self._errors.print(f"error: {error}", markup=False)
            return
        outcome = "succeeded" if exit_code == 0 else "stopped" if exit_code == 130 else "failed"
        if summary.get("action") == "rollback":
            outcome = "rolled back" if exit_code == 0 else "rollback " + outcome
        self._line(f"run {outcome} at {self._fraction:.0%} after {summary['duration_s']:.1f} s")
        print_summary(self.console, self._errors, self._title, exit_code, summary, error)
        self._stream.flush()
