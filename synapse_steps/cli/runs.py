"""``synapse-steps runs list | show | prune``: the run history kept in the run journal.

Every command reads the journal named by ``--journal URL`` (``journal_option``; default
``$SYNAPSE_STEPS_JOURNAL``, else the per-user SQLite file) and opens it with
``open_journal``, which ``resume`` and ``rollback`` share. A problem (a URL that does not
parse or does not answer, a schema newer than this version, an unknown run id) is one
line on stderr and exit status 2, with nothing changed. What is shown: ``runs_format``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from synapse_steps.cli.run import EXIT_OK, EXIT_USAGE
from synapse_steps.cli.runs_format import detail_json, detail_lines, duration, local_time, owner, record
from synapse_steps.cli.target import CliError
from synapse_steps.errors import JournalError, StepsError
from synapse_steps.journal import Journal, RunStatus

F = TypeVar("F", bound=Callable[..., Any])
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_JSON = click.option("--json", "json_output", is_flag=True, help="JSON on stdout instead of text.")


def journal_option(command: F) -> F:
    """The ``--journal URL`` option, passed to the command as ``journal_url`` (None: the default journal)."""
    return click.option(
        "--journal",
        "journal_url",
        metavar="URL",
        default=None,
        help="The run journal: sqlite:///PATH or postgresql+psycopg://... "
        "(default: $SYNAPSE_STEPS_JOURNAL, else ~/.local/state/synapse-steps/runs.db).",
    )(command)


def open_journal(url: str | None) -> Journal:
    """``Journal.open(url)``; its refusal (bad URL, no answer, newer schema) as a :class:`CliError` (exit 2)."""
    try:
        return Journal.open(url)
    except JournalError as exc:
        raise CliError(str(exc)) from None


def _outcome(body: Callable[[], None]) -> int:
    """Run a command's body: 0, or its refusal as one line on stderr and 2."""
    try:
        body()
    except StepsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    return EXIT_OK


class Duration(click.ParamType[int]):
    """A duration such as 90s, 15m, 12h, 30d or 2w, in seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Seconds in ``value``; a usage error (exit 2) naming the accepted forms otherwise."""
        found = re.fullmatch(r"(\d+)([smhdw])", str(value).strip())
        if found is None:
            self.fail(f"{value!r} is not a duration: a whole number and s, m, h, d or w (90s, 15m, 12h, 30d, 2w)", param, ctx)
        return int(found.group(1)) * _UNITS_S[found.group(2)]

    @staticmethod
    def show(seconds: int) -> str:
        """``seconds`` in the largest unit that divides it: 2592000 is 30d, 0 is 0s."""
        unit, size = next(((u, n) for u, n in reversed(_UNITS_S.items()) if seconds and seconds % n == 0), ("s", 1))
        return f"{seconds // size}{unit}"


# -- list ---------------------------------------------------------------------------------------


def _list(url: str | None, status: RunStatus | None, limit: int, json_output: bool) -> None:
    with open_journal(url) as journal:
        found = journal.list_runs(status=status, limit=limit)
        where = journal.url
    if json_output:
        for run in found:
            print(json.dumps(record(run)), flush=True)
        return
    if not found:
        sys.stderr.write(f"no {status.value + ' ' if status else ''}runs in journal {where}\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run id", "status", "target", "started (local time)", "duration", "owner")
    for run in found:
        table.add_row(run.run_id, run.status.value, run.target, local_time(run.created_at), duration(run.duration_s), owner(run))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 200  # a pipe or a log: whole ids and targets, not an 80-column cut
    console.print(table)


# -- show ---------------------------------------------------------------------------------------


def _show(url: str | None, run_id: str, json_output: bool) -> None:
    with open_journal(url) as journal:
        detail = journal.get_run(run_id)
    if json_output:
        print(json.dumps(detail_json(detail)), flush=True)
    else:
        click.echo("\n".join(detail_lines(detail)))


# -- prune --------------------------------------------------------------------------------------


def _prune(url: str | None, older_than_s: int, json_output: bool) -> None:
    with open_journal(url) as journal:
        pruned = journal.prune(older_than_s)
        where = journal.url
    if json_output:
        print(json.dumps({"journal": where, "older_than_s": older_than_s, "count": len(pruned), "run_ids": pruned}), flush=True)
        return
    click.echo(f"pruned {len(pruned)} run{'' if len(pruned) == 1 else 's'} not active for {Duration.show(older_than_s)} from {where}")
    for run_id in pruned:
        click.echo(f"  {run_id}")


# -- the commands -------------------------------------------------------------------------------

RUNS_EXIT_STATUS = (
    "Exit status: 0 done; 2 nothing done (a journal URL that does not parse or does not answer, "
    "a journal written by a newer synapse-steps, an unknown run id, bad usage)."
)


@click.group(epilog=RUNS_EXIT_STATUS)
def runs() -> None:
    """The run history in the run journal: list, show, prune."""


@runs.command("list", epilog=RUNS_EXIT_STATUS)
@click.option(
    "--status",
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs with this status (interrupted: the owner is gone).",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many runs.")
@_JSON
@journal_option
@click.pass_context
def list_command(ctx: click.Context, status: str | None, limit: int, json_output: bool, journal_url: str | None) -> None:
    """List runs, newest first.

    Columns: run id, status, target, started (local time), duration, owner host and pid.
    --json: one object per line per run.
    """
    wanted = None if status is None else RunStatus(status)
    ctx.exit(_outcome(lambda: _list(journal_url, wanted, limit, json_output)))


@runs.command("show", epilog=RUNS_EXIT_STATUS)
@click.argument("run_id", metavar="RUN_ID")
@_JSON
@journal_option
@click.pass_context
def show_command(ctx: click.Context, run_id: str, json_output: bool, journal_url: str | None) -> None:
    """Show one run: its record, steps and attempts, rollbacks, context commits.

    Every attempt of every step in registry order, with node, duration, result, error and
    full traceback; each step's rollback outcome; each context commit. --json: one object.
    """
    ctx.exit(_outcome(lambda: _show(journal_url, run_id, json_output)))


@runs.command("prune", epilog=RUNS_EXIT_STATUS)
@click.option(
    "--older-than",
    "older_than_s",
    type=Duration(),
    required=True,
    metavar="DURATION",
    help="Delete runs not written to for this long: 90s, 15m, 12h, 30d, 2w. A live run is never deleted.",
)
@_JSON
@journal_option
@click.pass_context
def prune_command(ctx: click.Context, older_than_s: int, json_output: bool, journal_url: str | None) -> None:
    """Delete runs not written to for DURATION (never a live run).

    Finished and interrupted runs go, with their context blobs no other run uses; then
    SQLite is VACUUMed. Prints how many runs were deleted and their ids.
    """
    ctx.exit(_outcome(lambda: _prune(journal_url, older_than_s, json_output)))
