"""A run's ``--json`` event lines turned back into ``Reporter`` calls: the view of a run elsewhere.

A Ray job's log holds the run's stdout (the JSON events) and its stderr (Ray's lines,
warnings, tracebacks) interleaved, so only lines that parse as an event of this run
are taken. Everything ``run`` shows can be rebuilt: the events carry the start info,
each step entry, progress, logs, metrics, messages and the end summary.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from synapse_steps.watch import Reporter

_ENVELOPE = ("event", "timestamp", "run_id")
_RUNTIME = ("log", "metrics", "message")


def parse_event(line: str, run_id: str) -> dict[str, Any] | None:
    """The event on ``line`` if it is one of run ``run_id``'s JSON events, else None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("run_id") != run_id or "event" not in record:
        return None
    return record


class EventLines:
    """Cuts a growing log into complete lines and keeps the run's events, each once."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._consumed = 0
        self.end: dict[str, Any] | None = None

    def new_events(self, log: str, final: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """``(line, event)`` for each event in ``log`` after the last call's; a last line
        without its newline waits for the next call unless ``final``."""
        fresh = log[self._consumed :]
        cut = len(fresh) if final else fresh.rfind("\n") + 1
        self._consumed += cut
        found = []
        for line in fresh[:cut].splitlines():
            event = parse_event(line, self.run_id)
            if event is not None:
                if event["event"] == "end":
                    self.end = event
                found.append((line.strip(), event))
        return found


def replay(event: dict[str, Any], reporter: Reporter) -> None:
    """Send one event to ``reporter`` as ``watch_run`` sent it on the run's side."""
    kind = event["event"]
    # With the event's own time (a UTC datetime, as the views take it), not the replay's.
    fields = {k: v for k, v in event.items() if k not in _ENVELOPE}
    fields["timestamp"] = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    if kind == "start":
        fields.pop("step", None)
        reporter.start(fields)
    elif kind == "progress":
        reporter.progress(event["progress"], event["step"])
    elif kind == "step":
        reporter.step(fields)
    elif kind in _RUNTIME:
        reporter.runtime_event({"event": kind, **fields})
    elif kind == "end":
        reporter.end(event["exit_code"], event["summary"], event["error"])
