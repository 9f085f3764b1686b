"""The end of a run, as both views print it: a table of steps, metrics, results, the outcome."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "skipped": "yellow", "running": "cyan", "pending": "dim"}
LEVEL_STYLE = {"warning": "yellow", "error": "red", "danger": "red", "critical": "bold red"}


def short_node(node: str | None) -> str:
    """``local``, ``-`` (never ran), or a Ray node id cut to 12 digits (``--json`` has it in full)."""
    if node is None:
        return "-"
    return node if node == "local" or len(node) <= 12 else node[:12] + "…"


def key_values(values: dict[str, Any]) -> str:
    """``k=v`` pairs for one line of output; floats shortened to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def print_summary(
    console: Console, errors: Console, title: str, exit_code: int, summary: dict[str, Any], error: str | None
) -> None:
    """The steps table, each step's last metrics and result data, then success or what failed.

    Rollback outcomes are printed exactly as the step records say.
    """
    table = Table(title=title, title_justify="left")
    for column in ("step", "status", "duration", "node", "rollback"):
        table.add_column(column, justify="right" if column == "duration" else "left")
    for entry in summary["steps"]:
        duration = "-" if entry["duration_s"] is None else f"{entry['duration_s']:.2f} s"
        status = Text(entry["status"], style=STATUS_STYLE.get(entry["status"], ""))
        table.add_row(Text(entry["step"]), status, duration, short_node(entry["node"]), entry["rollback"] or "")
    console.print(table)
    for step, values in summary["metrics"].items():
        console.print(f"metrics [{step}] {key_values(values)}", highlight=False, markup=False)
    if exit_code == 0 and summary.get("action") == "rollback":
        rolled = ", ".join(summary["rolled_back"]) or "nothing was left to undo"
        console.print(Text("✓ rolled back", style="bold green") + Text(f" (last first): {rolled}"))
        return
    if exit_code == 0:
        for entry in summary["steps"]:
            if entry["data"]:
                console.print(f"result [{entry['step']}] {key_values(entry['data'])}", highlight=False, markup=False)
        console.print(
            Text("✓ succeeded", style="bold green")
            + Text(f": {summary['steps_executed']}/{summary['steps_total']} steps in {summary['duration_s']:.1f} s")
        )
        return
    if summary.get("traceback"):
        errors.print(summary["traceback"].rstrip(), style="dim", markup=False, highlight=False)
    console.print(Text("✗ run failed: ", style="bold red") + Text(str(error)))
    rolled = summary["rolled_back"]
    console.print(f"  rolled back (last first): {', '.join(rolled) if rolled else 'nothing'}", highlight=False)
    problems = summary["rollback_errors"]
    console.print(f"  rollback errors: {'; '.join(problems) if problems else 'none'}", highlight=False, markup=False)
    left = summary.get("not_rolled_back") or []
    if left:
        console.print(
            Text(f"  NOT undone (rollback abandoned): {', '.join(left)}", style="bold red"), highlight=False
        )
