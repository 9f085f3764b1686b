"""``synapse-steps``: run or check an action from the command line.

    synapse-steps run examples/train/action.py:DigitsTrainAction --config examples/train/ray.yaml
    synapse-steps run examples/upload/action.py:DirectoryUploadAction --param destination=/tmp/up --json
    synapse-steps validate examples/train/action.py:DigitsTrainAction --executor ray --param epochs=0

TARGET names an action class (a ``BaseAction`` subclass such as
``BaseTrainAction[MyParams]``) as ``package.module:Class`` or ``path/to/file.py:Class``.
Settings, lowest first: the config file, ``SYNAPSE_STEPS_*`` environment variables, the
``--executor``/``--address`` flags. Exit status: 0 success; 1 a step failed (the executed
steps were rolled back); 2 nothing ran (bad usage, target, params, config or steps);
130 interrupted (after rolling back).
"""

from __future__ import annotations

import argparse
import logging
import traceback
from collections.abc import Sequence

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli_report import JsonReporter, RichReporter, claim_stdout
from synapse_steps.cli_run import EXIT_USAGE, Reporter, RunWatcher, run_action
from synapse_steps.cli_target import TARGET_FORMS, build_config, load_action_class, make_action, read_params
from synapse_steps.cli_validate import validate_action
from synapse_steps.errors import StepsError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``synapse-steps`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    # The CLI shows the steps' events itself; without this, Python's last-resort handler
    # would print their warnings a second time, across the live view.
    logging.getLogger("synapse_steps").addHandler(logging.NullHandler())
    if args.command == "run":
        return _run(args)
    return validate_action(args)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("target", metavar="TARGET", help=f"the action class: {TARGET_FORMS}")
    common.add_argument("--config", metavar="FILE", help="executor config (YAML, TOML or JSON)")
    common.add_argument("--executor", choices=["local", "ray"], help="where steps run (overrides config and env)")
    common.add_argument("--address", metavar="ADDR", help="Ray cluster to join (overrides ray.address)")
    common.add_argument("--params", metavar="FILE", help="action params from a YAML or JSON file")
    common.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one param, value parsed as YAML (epochs=3, name=abc, tags=[a,b]); repeatable, wins over --params",
    )
    common.add_argument("--json", action="store_true", help="JSON lines on stdout instead of the live view")
    parser = argparse.ArgumentParser(
        prog="synapse-steps",
        description="Run step workflows (actions) in-process or on Ray.",
        epilog="Exit status: 0 success, 1 a step failed (rolled back), 2 nothing ran (usage, target, params, "
        "config), 130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        parents=[common],
        help="run an action with a live progress bar (or --json events)",
        description="Run an action's steps; on failure the executed steps are rolled back.",
    )
    commands.add_parser(
        "validate",
        parents=[common],
        help="check target, params, config and steps without running anything",
        description="Load the action, validate its params and the executor config, build its steps, run nothing.",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    reporter: Reporter = JsonReporter(claim_stdout()) if args.json else RichReporter()
    watcher = RunWatcher(reporter)
    try:
        action = _load_action(args)
        orchestrator = action.build_orchestrator(watcher.on_progress, watcher.before_step)
    except StepsError as exc:
        reporter.end(EXIT_USAGE, None, str(exc))
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a bug in setup_steps/create_context: show where
        traceback.print_exc()
        reporter.end(EXIT_USAGE, None, f"setting up {args.target} failed: {type(exc).__name__}: {exc}")
        return EXIT_USAGE
    return run_action(action, orchestrator, watcher, reporter, args.target)


def _load_action(args: argparse.Namespace) -> BaseAction:
    action_class = load_action_class(args.target)
    config = build_config(args.config, args.executor, args.address)
    return make_action(action_class, read_params(args.params, args.param), config)


if __name__ == "__main__":
    raise SystemExit(main())
