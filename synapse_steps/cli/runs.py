"""``synapse-steps runs list | show | prune``: the run history kept in the run journal.

Every command reads the journal named by ``--journal URL`` (``journal_option``; default
``$SYNAPSE_STEPS_JOURNAL``, else the per-user SQLite file) and opens it with
``open_journal``, which ``resume`` and ``rollback`` share. A problem (a URL that does not
parse or does not answer, a schema newer than this version, an unknown run id) is one
line on stderr and exit status 2, with nothing changed. Times are shown in local time;
``--json`` gives the records as the journal holds them (UNIX seconds, statuses as values).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

import click

from synapse_steps.cli.run import EXIT_OK, EXIT_USAGE
from synapse_steps.cli.target import CliError
from synapse_steps.errors import JournalError, StepsError
from synapse_steps.journal import ErrorInfo, Journal, Progress, RunDetail, RunStatus, RunSummary, StepAttempt, StepEntry

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


class Duration(click.ParamType):
    """A duration such as 90s, 15m, 12h, 30d or 2w, in seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        found = re.fullmatch(r"(\d+)([smhdw])", str(value).strip())
        if found is None:
            self.fail(f"{value!r} is not a duration: a whole number and s, m, h, d or w (90s, 15m, 12h, 30d, 2w)", param, ctx)
        return int(found.group(1)) * _UNITS_S[found.group(2)]

    @staticmethod
    def show(seconds: int) -> str:
        """``seconds`` in the largest unit that divides it: 2592000 is 30d, 0 is 0s."""
        unit, size = next(((u, n) for u, n in reversed(_UNITS_S.items()) if seconds and seconds % n == 0), ("s", 1))
        return f"{seconds // size}{unit}"


# -- formatting -------------------------------------------------------------------------------


def _record(record: Any) -> dict[str, Any]:
    """A journal record as JSON-ready data: ``asdict`` with enums as their values, plus ``duration_s``."""

    def values(items: list[tuple[str, Any]]) -> dict[str, Any]:
        return {k: v.value if isinstance(v, Enum) else v for k, v in items}

    data = asdict(record, dict_factory=values)
    if hasattr(record, "duration_s"):
        data["duration_s"] = record.duration_s
    return data


def _local(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.2f} s" if s < 60 else str(timedelta(seconds=round(s)))


def _owner(run: RunSummary) -> str:
    return f"{run.owner.host} pid {run.owner.pid}"


def _progress(progress: Progress | None) -> str:
    return "-" if progress is None else f"{progress.overall:.0%} (step {progress.step or '-'})"


def _json_text(value: Mapping[str, Any] | None) -> str:
    return "-" if value is None else json.dumps(value)


# -- list ---------------------------------------------------------------------------------------


def _list(url: str | None, status: RunStatus | None, limit: int, json_output: bool) -> None:
    with open_journal(url) as journal:
        runs = journal.list_runs(status=status, limit=limit)
        where = journal.url
    if json_output:
        for run in runs:
            print(json.dumps(_record(run)), flush=True)
        return
    if not runs:
        sys.stderr.write(f"no {status.value + ' ' if status else ''}runs in journal {where}\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("run id", "status", "target", "started (local time)", "duration", "owner")
    for run in runs:
        table.add_row(run.run_id, run.status.value, run.target, _local(run.created_at), _duration(run.duration_s), _owner(run))
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 200  # a pipe or a log: whole ids and targets, not an 80-column cut
    console.print(table)


# -- show ---------------------------------------------------------------------------------------


def _steps(detail: RunDetail) -> list[tuple[StepEntry | None, str, list[StepAttempt]]]:
    """Each step with its attempts: the run's registry in order, then any step attempted that is
    not in it (a run resumed with ``--force`` on a changed registry), so no attempt goes unshown."""
    names = [e.name for e in detail.registry]
    names += list(dict.fromkeys(a.step for a in detail.attempts if a.step not in names))
    entries = {e.name: e for e in detail.registry}
    return [(entries.get(name), name, [a for a in detail.attempts if a.step == name]) for name in names]


def _detail(detail: RunDetail) -> dict[str, Any]:
    """``runs show --json``: the run, its steps (registry order) with their attempts, rollbacks, commits."""
    steps = [
        {
            "name": name,
            "cls": None if entry is None else entry.cls,
            "weight": None if entry is None else entry.weight,
            "attempts": [_record(a) for a in attempts],
        }
        for entry, name, attempts in _steps(detail)
    ]
    return {
        **_record(detail.summary),
        "params": detail.params,
        "executor": detail.executor,
        "fingerprint": detail.fingerprint,
        "heartbeat_interval_s": detail.heartbeat_interval_s,
        "progress": None if detail.progress is None else _record(detail.progress),
        "steps": steps,
        "rollbacks": [_record(r) for r in detail.rollbacks],
        "commits": [_record(c) for c in detail.commits],
    }


def _error_lines(error: ErrorInfo | None, indent: str) -> list[str]:
    if error is None:
        return []
    lines = [f"{indent}error      {error.type}: {error.message}"]
    if error.traceback:
        lines.append(f"{indent}traceback")
        lines += [f"{indent}  {line}" for line in error.traceback.rstrip("\n").splitlines()]
    return lines


def _text(detail: RunDetail) -> list[str]:
    """``runs show``: the run, then each step with every attempt, the rollbacks, the context commits."""
    run, progress = detail.summary, detail.progress
    lines = [
        f"run        {run.run_id}",
        f"status     {run.status.value}",
        f"target     {run.target}",
        f"params     {json.dumps(detail.params)}",
        f"executor   {json.dumps(detail.executor)}",
        f"owner      {_owner(run)} (epoch {run.owner_epoch}), last heartbeat {_local(run.heartbeat_at)}",
        f"started    {_local(run.created_at)}",
        f"finished   {_local(run.finished_at)}",
        f"duration   {_duration(run.duration_s)}",
        f"progress   {_progress(progress)}",
        f"error      {run.error or '-'}",
        f"metrics    {_json_text(run.metrics)}",
        "",
        "steps",
    ]
    for n, (entry, name, attempts) in enumerate(_steps(detail), 1):
        about = "not in the run's registry" if entry is None else f"{entry.cls}, weight {entry.weight:g}"
        lines.append(f"  {n}. {name} ({about})")
        if not attempts:
            lines.append("     not started")
        for a in attempts:
            context = "" if a.context_seq is None else f", context #{a.context_seq}"
            lines.append(f"     attempt {a.attempt}: {a.status.value}, node {a.node or '-'}, {_duration(a.duration_s)}{context}")
            if a.result:
                lines.append(f"       result     {json.dumps(a.result)}")
            lines += _error_lines(a.error, "       ")
    lines += ["", "rollbacks (in the order they ran)"]
    if not detail.rollbacks:
        lines.append("  none")
    for r in detail.rollbacks:
        lines.append(f"  {r.step}: {r.status.value}, node {r.node or '-'}, {_duration(r.duration_s)}")
        lines += _error_lines(r.error, "    ")
    lines += ["", "context commits"]
    if not detail.commits:
        lines.append("  none")
    for c in detail.commits:
        lines.append(f"  #{c.seq} after {c.step or '-'} at {_local(c.committed_at)}: {', '.join(c.fields) or '-'}")
        lines += [f"    blob {digest}" for digest in c.blobs]
    return lines


def _show(url: str | None, run_id: str, json_output: bool) -> None:
    with open_journal(url) as journal:
        detail = journal.get_run(run_id)
    if json_output:
        print(json.dumps(_detail(detail)), flush=True)
    else:
        click.echo("\n".join(_text(detail)))


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
