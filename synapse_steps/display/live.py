"""A live progress bar for a terminal: overall weighted progress, ETA, the step and its own progress.

Usable from Python as ``action.run(show_progress=True)``, or as a reporter of your own
run (``watch_run(action, LiveView())``). As a context manager it always leaves the
terminal clean (cursor shown, bar stopped), also on Ctrl-C.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from synapse_steps.display.summary import LEVEL_STYLE, key_values, print_summary


class _StateColumn(SpinnerColumn):
    """A spinner while running; the run's outcome mark (✓ or ✗) once it ended."""

    def render(self, task: Any) -> Any:
        mark = task.fields.get("mark")
        return Text(mark, style="bold green" if mark == "✓" else "bold red") if mark else super().render(task)


class LiveView:
    """A ``Reporter`` drawing one bar: ``step 2 of 4: train 7/15 ━━━━━━  45% 0:00:03 eta 0:00:04``.

    Step messages and logs print above the bar; at the end, a summary table.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(soft_wrap=True)
        self._errors = Console(stderr=True, soft_wrap=True)
        self._bar = Progress(
            _StateColumn(),
            TextColumn("{task.fields[label]}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task: Any = None
        self._names: list[str] = []
        self._title = ""
        self._step_label = "starting"

    def __enter__(self) -> LiveView:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the bar if it still runs (idempotent); the terminal gets its cursor back."""
        if self._bar.live.is_started:
            self._bar.stop()

    def start(self, info: dict[str, Any]) -> None:
        """Print the run's title and start the progress bar."""
        self._names = [s["name"] for s in info["steps"]]
        self._title = f"{info['action']} on {info['executor']}"
        self.console.print(Text(self._title, style="bold") + Text(f" — {len(self._names)} steps, run {info['job_id']}"))
        self._task = self._bar.add_task("run", total=1.0, label="starting", mark=None)
        self._bar.start()

    def progress(self, fraction: float, step: str | None) -> None:
        """Move the bar to the overall fraction."""
        self._bar.update(self._task, completed=fraction)

    def step_progress(self, step: str, current: float, total: float) -> None:
        """Show the running step's own ``current/total`` beside its label."""
        if total and step in self._names:
            self._bar.update(self._task, label=f"{self._step_label} {current:g}/{total:g}")

    def step(self, entry: dict[str, Any]) -> None:
        """Relabel the bar when a step starts."""
        if entry["status"] == "running":
            self._step_label = f"step {entry['order']} of {entry['of']}: {entry['step']}"
            self._bar.update(self._task, label=self._step_label)

    def runtime_event(self, event: dict[str, Any]) -> None:
        """Print a step's message above the bar, styled by level."""
        where = f"[{event['step'] or '-'}]"
        if event["event"] == "message":
            style = LEVEL_STYLE.get(event["level"], "")
            self._bar.console.print(Text(f"{where} {event['message']}", style=style))
        elif event["event"] == "log":
            self._bar.console.print(Text(f"{where} {event['name']} {key_values(event['data'])}", style="dim"))

    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None:
        """Stop the bar and print the outcome (or, for a run that never started, the error)."""
        if self._task is None or summary is None:  # the run never started
            self._errors.print(Text("error: ", style="bold red") + Text(str(error)))
            return
        if exit_code == 0:
            label = "done"
        else:
            label = f"failed at {summary['failed_step']}" if summary["failed_step"] else "stopped"
        self._bar.update(self._task, label=label, mark="✓" if exit_code == 0 else "✗")
        self.close()
        print_summary(self.console, self._errors, self._title, exit_code, summary, error)
