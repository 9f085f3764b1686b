"""How ``synapse-steps run`` shows a run: JSON lines on a private stdout, or a rich live view.

``claim_stdout`` is what keeps ``--json`` output parseable: Ray (and any library or step
that prints) writes to file descriptor 1 from C code and child processes, which no
``sys.stdout`` swap can catch. So fd 1 is duplicated for the JSON lines alone, and fd 1
itself is pointed at stderr for everything else.
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO


def claim_stdout() -> TextIO:
    """A private stream on the original stdout; fd 1 (and ``sys.stdout``) now write to stderr.

    The private descriptor is not inherited by child processes (Ray's raylet, workers).
    """
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(private, "w", buffering=1, encoding="utf-8")


def _plain(value: Any) -> Any:
    """What steps report, as strict JSON values.

    numpy/torch scalars become numbers, tuples and sets lists, paths and times strings,
    NaN and infinity ``null`` (a diverged loss must not break the stream), anything else
    its ``repr``.
    """
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):  # not a one-element array
            pass
    return repr(value)


class JsonReporter:
    """One JSON object per line, each with an ``event`` key; see the README for the fields."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps(_plain({"event": event, **fields}), allow_nan=False)
        self._stream.write(line + "\n")

    def start(self, info: dict[str, Any]) -> None:
        self._emit("start", **info)

    def progress(self, fraction: float, step: str | None) -> None:
        self._emit("progress", progress=fraction, step=step)

    def step(self, entry: dict[str, Any]) -> None:
        self._emit("step", **entry)

    def runtime_event(self, event: dict[str, Any]) -> None:
        fields = dict(event)
        self._emit(fields.pop("event"), **fields)

    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None:
        self._emit("end", success=exit_code == 0, exit_code=exit_code, error=error, summary=summary)
        self._stream.flush()


_STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "skipped": "yellow", "running": "cyan", "pending": "dim"}
_LEVEL_STYLE = {"warning": "yellow", "error": "red", "danger": "red", "critical": "bold red"}


class RichReporter:
    """A live bar (overall weighted progress and the current step), then a summary table."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class StateColumn(SpinnerColumn):
            """A spinner while running; the run's outcome mark (✓ or ✗) once it ended."""

            def render(self, task: Any) -> Any:
                mark = task.fields.get("mark")
                return Text(mark, style="bold green" if mark == "✓" else "bold red") if mark else super().render(task)

        self.console = Console(soft_wrap=True)
        self._errors = Console(stderr=True, soft_wrap=True)
        self._bar = Progress(
            StateColumn(),
            TextColumn("{task.fields[label]}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task: Any = None
        self._names: list[str] = []
        self._title = ""

    def start(self, info: dict[str, Any]) -> None:
        from rich.text import Text

        self._names = [s["name"] for s in info["steps"]]
        self._title = f"{info['action']} on {info['executor']}"
        self.console.print(Text(self._title, style="bold") + Text(f" — {len(self._names)} steps, job {info['job_id']}"))
        self._task = self._bar.add_task("run", total=1.0, label="starting", mark=None)
        self._bar.start()

    def progress(self, fraction: float, step: str | None) -> None:
        self._bar.update(self._task, completed=fraction)

    def step(self, entry: dict[str, Any]) -> None:
        name = entry["step"]
        if entry["status"] == "running":
            order = self._names.index(name) + 1 if name in self._names else "?"
            self._bar.update(self._task, label=f"{name} ({order}/{len(self._names)})")

    def runtime_event(self, event: dict[str, Any]) -> None:
        from rich.text import Text

        if event["event"] == "message":
            style = _LEVEL_STYLE.get(event["level"], "")
            self._bar.console.print(Text(f"[{event['step'] or '-'}] {event['message']}", style=style))
        elif event["event"] == "log":
            data = " ".join(f"{k}={v}" for k, v in event["data"].items())
            self._bar.console.print(Text(f"[{event['step'] or '-'}] {event['name']} {data}", style="dim"))

    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None:
        from rich.text import Text

        if self._task is None:  # the run never started
            self._errors.print(Text("error: ", style="bold red") + Text(str(error)))
            return
        assert summary is not None
        if exit_code == 0:
            label = "done"
        else:
            label = f"failed at {summary['failed_step']}" if summary["failed_step"] else "stopped"
        self._bar.update(self._task, label=label, mark="✓" if exit_code == 0 else "✗")
        self._bar.stop()
        self.console.print(self._table(summary))
        self._print_metrics(summary["metrics"])
        if exit_code == 0:
            self.console.print(
                f"[bold green]✓ succeeded[/]: {summary['steps_executed']}/{summary['steps_total']} steps "
                f"in {summary['duration_s']:.1f} s",
                highlight=False,
            )
            return
        if summary.get("traceback"):
            self._errors.print(summary["traceback"].rstrip(), style="dim", markup=False, highlight=False)
        self.console.print(Text("✗ run failed: ", style="bold red") + Text(str(error)))
        rolled = summary["rolled_back"]
        self.console.print(f"  rolled back (last first): {', '.join(rolled) if rolled else 'nothing'}", highlight=False)
        errors = summary["rollback_errors"]
        self.console.print(f"  rollback errors: {'; '.join(errors) if errors else 'none'}", highlight=False)

    def _table(self, summary: dict[str, Any]) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self._title, title_justify="left")
        for column in ("step", "status", "duration", "node", "rollback"):
            table.add_column(column, justify="right" if column == "duration" else "left")
        for entry in summary["steps"]:
            duration = "-" if entry["duration_s"] is None else f"{entry['duration_s']:.2f} s"
            node = entry["node"] or "-"
            if node != "local" and len(node) > 12:
                node = node[:12] + "…"  # a Ray node id (56 hex digits); --json has it in full
            status = Text(entry["status"], style=_STATUS_STYLE.get(entry["status"], ""))
            table.add_row(Text(entry["step"]), status, duration, node, entry["rollback"] or "")
        return table

    def _print_metrics(self, metrics: dict[str, dict[str, Any]]) -> None:
        for step, values in metrics.items():
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            self.console.print(f"metrics [{step}] {shown}", highlight=False, markup=False)
