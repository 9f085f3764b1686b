"""The ``synapse-steps`` command: ``run`` and ``validate`` an action, on Click; ``submit``,
``attach``, ``stop`` and ``jobs`` do the same on a Ray cluster through Ray Jobs (``remote``).

    synapse-steps run examples/train/action.py:DigitsTrainAction --config examples/train/ray.yaml
    synapse-steps run examples/upload/action.py:DirectoryUploadAction --destination /tmp/up --json
    synapse-steps run examples/train/action.py:DigitsTrainAction --help     # the action's params

TARGET is loaded while the arguments are parsed, before help is drawn, so each field of
the action's params model becomes an option of its own (``ActionCommand``). Click (not
Typer) because those options exist only once TARGET is known: Click's ``Command`` is a
public class built for that, where Typer builds its options from a function signature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.shell_completion import get_completion_class

from synapse_steps import __version__
from synapse_steps.cli.interrupt import EXIT_INTERRUPTED, exit_now
from synapse_steps.cli.params import META_KEY, PANEL, model_options
from synapse_steps.cli.request import Request, check_run_id
from synapse_steps.cli.runs import journal_option, runs
from synapse_steps.cli.target import CliError, load_action_class

PROG = "synapse-steps"
_LOADED = "synapse_steps.target"  # ctx.meta: (target, action class or None, CliError or None)
_OPTIONS = "synapse_steps.options"  # ctx.meta: the model's options
EXIT_STATUS = (
    "Exit status: 0 success, 1 a step failed (rolled back), 2 nothing ran (usage, target, params, config), "
    "3 rollback incomplete (a third signal abandoned it), 130 interrupted (rolled back)."
)


class ActionCommand(click.Command):
    """A command whose options include one per field of TARGET's params model.

    ``parse_args`` finds TARGET (the first positional argument) and loads it before
    click parses the rest, so ``--epochs 3`` parses and ``run TARGET --help`` lists
    every param with its type, default and description.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Load TARGET before click parses the rest, so its params model's options exist when they are parsed."""
        target = _first_positional(args, self.params)
        if target is not None:
            action_class, error = _load(target)
            ctx.meta[_LOADED] = (target, action_class, error)
            if action_class is not None:
                taken = {opt for param in self.params for opt in getattr(param, "opts", [])}
                ctx.meta[_OPTIONS] = model_options(action_class._resolve_params_model(), taken | {"--help"})
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        """The command's own options plus one per field of the loaded target's params model."""
        return [*super().get_params(ctx), *ctx.meta.get(_OPTIONS, [])]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Help lists the command's options, then the target's params in a section of their own."""
        own = [p.get_help_record(ctx) for p in super().get_params(ctx) if isinstance(p, click.Option)]
        with formatter.section("Options"):
            formatter.write_dl([r for r in own if r is not None])
        loaded = ctx.meta.get(_LOADED)
        if loaded is None:
            return
        _, action_class, error = loaded
        if action_class is None:
            with formatter.section(PANEL):
                formatter.write_text(f"TARGET did not load: {error}")
            return
        records = [o.get_help_record(ctx) for o in ctx.meta.get(_OPTIONS, [])]
        with formatter.section(f"{PANEL} of {action_class.__name__} (or --param NAME=VALUE)"):
            formatter.write_dl([r for r in records if r is not None])


def _load(target: str) -> tuple[Any, CliError | None]:
    try:
        action_class = load_action_class(target)
        action_class._resolve_params_model()
    except CliError as exc:
        return None, exc
    except TypeError as exc:  # no params model
        return None, CliError(str(exc))
    return action_class, None


def _first_positional(args: Sequence[str], params: Sequence[click.Parameter]) -> str | None:
    takes_value = {
        opt for p in params if isinstance(p, click.Option) and not p.is_flag and not p.count for opt in p.opts
    }
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            return next(tokens, None)
        if token.startswith("-"):
            if token in takes_value:
                next(tokens, None)
            continue
        return token
    return None


def _request(ctx: click.Context, target: str, **options: Any) -> Request:
    loaded_target, action_class, error = ctx.meta.get(_LOADED, (None, None, None))
    if loaded_target != target:  # TARGET was not where parse_args looked: load it now
        action_class, error = _load(target)
    return Request(
        target=target, action_class=action_class, load_error=error, param_options=ctx.meta.get(META_KEY, {}), **options
    )


def _common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """TARGET and the options ``run`` and ``validate`` share (innermost listed last)."""
    command = _action_options(command)
    return click.option("--address", metavar="ADDR", help="Ray cluster to join (wins over ray.address).")(command)


def _action_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """TARGET, its config and its params: what ``run``, ``validate`` and ``submit`` share."""
    for decorator in reversed(
        [
            click.argument("target", metavar="TARGET"),
            click.option("--config", metavar="FILE", help="Executor config (YAML, TOML or JSON)."),
            click.option(
                "--executor", type=click.Choice(["local", "ray"]), help="Where steps run (wins over config and env)."
            ),
            click.option("--params", "params_file", metavar="FILE", help="Action params from a YAML or JSON mapping."),
            click.option(
                "--param",
                "params",
                multiple=True,
                metavar="KEY=VALUE",
                help="One param, repeatable; wins over --params. The action's model parses the value "
                "(a str field keeps 'yes' and '007'); lists, dicts and models take JSON; a.b=1 nests.",
            ),
        ]
    ):
        command = decorator(command)
    return command


@click.group(
    name=PROG,
    epilog=EXIT_STATUS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
def app() -> None:
    """Run step workflows (actions) in-process or on Ray.

    TARGET names an action class: 'package.module:ClassName' or 'path/to/file.py:ClassName'.
    'synapse-steps run TARGET --help' lists the action's params.
    """


_PROGRESS_EVERY = click.option(
    "--progress-every",
    "progress_every_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Without a terminal: a progress line at most this often and every 10 %, whichever is rarer.",
)


@app.command(cls=ActionCommand, epilog=EXIT_STATUS)
@_common_options
@click.option("--json", "json_output", is_flag=True, help="JSON lines on stdout (each with timestamp, run_id, step).")
@_PROGRESS_EVERY
@click.option(
    "--run-id",
    callback=lambda ctx, param, value: check_run_id(value),
    metavar="ID",
    help="The run's id (default: 12 random hex digits); 'submit' sets it to the Ray job's submission id.",
)
@journal_option
@click.option("--no-journal", is_flag=True, help="Do not journal this run (it cannot be resumed).")
@click.pass_context
def run(ctx: click.Context, /, target: str, json_output: bool, **options: Any) -> None:
    """Run an action's steps; on failure the executed steps are rolled back.

    In a terminal: a live bar with ETA. Otherwise (CI, a pipe, nohup): one timestamped
    line per step start, finish, failure and rollback, and a few progress lines.
    The run is journaled (see --journal), so if this process dies, 'resume RUN_ID'
    finishes it or 'rollback RUN_ID' undoes it.
    """
    from synapse_steps.cli.run import run_command

    code = run_command(_request(ctx, target, json=json_output, **options))
    if code == EXIT_INTERRUPTED:
        exit_now(code)  # the run has unwound: nothing is left that Ctrl-C should wait for
    ctx.exit(code)


_RUN_JSON = click.option("--json", "json_output", is_flag=True, help="JSON lines on stdout, as 'run --json'.")
_FORCE = click.option("--force", is_flag=True, help="Go on even if the action's steps changed since the run started.")


@app.command(epilog=EXIT_STATUS)
@click.argument("run_id", metavar="RUN_ID")
@journal_option
@_FORCE
@click.option("--executor", type=click.Choice(["local", "ray"]), help="Where steps run (default: as journaled).")
@click.option("--address", metavar="ADDR", help="Ray cluster to join (default: as journaled).")
@_RUN_JSON
@_PROGRESS_EVERY
def resume(run_id: str, json_output: bool, **options: Any) -> None:
    """Finish a journaled run whose driver died: steps that succeeded are not run again.

    Rebuilds the action from the journal (TARGET, params, executor config), restores the
    context committed after the last step that succeeded, and runs the rest; the step
    that was running when the driver died runs again (steps are at-least-once).
    """
    from synapse_steps.cli.journaling import journaled_command

    _finish(journaled_command("resume", run_id, json_output=json_output, **options))


@app.command(epilog=EXIT_STATUS)
@click.argument("run_id", metavar="RUN_ID")
@journal_option
@_FORCE
@_RUN_JSON
@_PROGRESS_EVERY
def rollback(run_id: str, json_output: bool, **options: Any) -> None:
    """Undo a journaled run whose driver died (or whose rollback was abandoned), last step first.

    Each step that started and was not rolled back yet is rolled back with the context it
    had committed; each outcome is journaled once, so running this twice undoes nothing twice.
    """
    from synapse_steps.cli.journaling import journaled_command

    _finish(journaled_command("rollback", run_id, json_output=json_output, **options))


def _finish(code: int) -> None:
    if code == EXIT_INTERRUPTED:
        exit_now(code)
    click.get_current_context().exit(code)


@app.command(cls=ActionCommand)
@_common_options
@click.option("--json", "json_output", is_flag=True, help="One JSON report on stdout instead of text.")
@click.pass_context
def validate(ctx: click.Context, /, target: str, json_output: bool, **options: Any) -> None:
    """Check target, params, config and steps without running anything (exit 0 valid, 2 not)."""
    from synapse_steps.cli.validate import validate_command

    ctx.exit(validate_command(_request(ctx, target, json=json_output, progress_every_s=30.0, **options)))


_DASHBOARD = click.option(
    "--address",
    "dashboard",
    required=True,
    metavar="URL",
    envvar="RAY_API_SERVER_ADDRESS",
    help="The cluster's dashboard, http://HEAD:8265 (or RAY_API_SERVER_ADDRESS).",
)
_JSON_EVENTS = click.option("--json", "json_output", is_flag=True, help="The run's JSON event lines, as 'run --json'.")
JOBS_EXIT_STATUS = (
    "Exit status: the run's (0, 1, 3, 130); 2 when nothing was done (bad address, unknown run id, "
    "invalid params, working dir too large); 130 also when you detach with Ctrl-C."
)


@app.command(cls=ActionCommand, epilog=JOBS_EXIT_STATUS)
@_action_options
@_DASHBOARD
@click.option(
    "--working-dir",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Uploaded as the job's working directory (minus .git, virtualenvs, artifacts/, caches).",
)
@click.option("--wait", is_flag=True, help="Follow the run as 'attach' does, until it ends.")
@click.option(
    "--stop-grace",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="After 'stop' (SIGTERM), how long Ray lets the run roll back before it kills it.",
)
@_JSON_EVENTS
@click.pass_context
def submit(
    ctx: click.Context,
    /,
    target: str,
    dashboard: str,
    working_dir: str,
    wait: bool,
    stop_grace: int,
    json_output: bool,
    **options: Any,
) -> None:
    """Run an action on a Ray cluster as a Ray job; prints the run id (the job's submission id).

    Params and config are validated here first; nothing is uploaded if they are invalid.
    """
    from synapse_steps.cli.remote import submit_command

    request = _request(ctx, target, json=json_output, progress_every_s=30.0, address=None, **options)
    ctx.exit(submit_command(request, dashboard, working_dir, wait, stop_grace))


@app.command(epilog=JOBS_EXIT_STATUS)
@click.argument("run_id", metavar="RUN_ID")
@_DASHBOARD
@_JSON_EVENTS
@click.pass_context
def attach(ctx: click.Context, run_id: str, dashboard: str, json_output: bool) -> None:
    """Follow a submitted run: what it did so far, then live. Ctrl-C detaches; the run goes on."""
    from synapse_steps.cli.remote import attach_command

    ctx.exit(attach_command(dashboard, run_id, json_output))


@app.command(epilog=JOBS_EXIT_STATUS)
@click.argument("run_id", metavar="RUN_ID")
@_DASHBOARD
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=75.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the run to roll back and end.",
)
@_JSON_EVENTS
@click.pass_context
def stop(ctx: click.Context, run_id: str, dashboard: str, timeout_s: float, json_output: bool) -> None:
    """Stop a submitted run: it gets SIGTERM, rolls back its executed steps and ends (exit 130)."""
    from synapse_steps.cli.remote import stop_command

    ctx.exit(stop_command(dashboard, run_id, timeout_s, json_output))


@app.command()
@_DASHBOARD
@click.option("--json", "json_output", is_flag=True, help="One JSON object per run.")
@click.pass_context
def jobs(ctx: click.Context, dashboard: str, json_output: bool) -> None:
    """The runs submitted to a cluster: run id, status, target, start and end (UTC)."""
    from synapse_steps.cli.remote import jobs_command

    ctx.exit(jobs_command(dashboard, json_output))


app.add_command(runs)


@app.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script, e.g. eval "$(synapse-steps completion bash)"."""
    complete_var = "_" + PROG.replace("-", "_").upper() + "_COMPLETE"
    script_class = get_completion_class(shell)
    assert script_class is not None
    click.echo(script_class(app, {}, PROG, complete_var).source())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synapse-steps`` console script; returns the exit status.

    An interrupted ``run`` does not return: once its steps are rolled back the process
    exits 130 at once (``exit_now``), taking the local Ray it started with it.
    """
    # The CLI shows the steps' events itself; without this, Python's last-resort handler
    # would print their warnings a second time, across the live view.
    logging.getLogger("synapse_steps").addHandler(logging.NullHandler())
    try:
        code = app.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False)
    except (click.Abort, KeyboardInterrupt):  # Ctrl-C while the arguments (and TARGET) were loading
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:  # usage errors: exit status 2
        exc.show()
        return exc.exit_code
    except SystemExit as exc:  # shell completion ends this way
        return exc.code if isinstance(exc.code, int) else 0
    return code if isinstance(code, int) else 0
