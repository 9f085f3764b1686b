"""``synapse-steps run``: build the action, run it with a view, and turn the outcome into an exit status."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli.interrupt import EXIT_INTERRUPTED, StartupInterrupt
from synapse_steps.cli.report_json import JsonReporter, claim_stdout
from synapse_steps.cli.request import Request, make_action
from synapse_steps.display import LiveView, view_for_stdout
from synapse_steps.errors import RollbackIncompleteError, StepFailedError, StepsError
from synapse_steps.orchestrator import Orchestrator
from synapse_steps.watch import Reporter, RunWatcher, watch_run

# Exit statuses of ``synapse-steps run`` (also documented in the README).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ROLLBACK_INCOMPLETE = 0, 1, 2, 3


def exit_code_of(exc: BaseException | None) -> int:
    """0 success; 1 a step failed (rolled back) or the run broke; 2 the run could not start
    (a ``StepsError`` such as an unreachable Ray address); 3 the rollback was abandoned
    (a third signal) and some steps were not undone; 130 interrupted."""
    if exc is None:
        return EXIT_OK
    if isinstance(exc, RollbackIncompleteError):
        return EXIT_ROLLBACK_INCOMPLETE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, StepFailedError):
        return EXIT_FAILED
    if isinstance(exc, StepsError):
        return EXIT_USAGE
    return EXIT_FAILED


def run_command(
    request: Request,
    *,
    build: Callable[[Request], BaseAction[Any, Any]] = make_action,
    start: Callable[[Orchestrator[Any]], dict[str, Any]] | None = None,
) -> int:
    """Run the action and report it; returns the exit status (0, 1, 2, 3 or 130).

    ``build`` makes the action (default: from TARGET and params); ``start`` runs the
    orchestrator (default ``execute``) — ``resume`` and ``rollback`` pass their own.
    """
    reporter: Reporter = JsonReporter(claim_stdout()) if request.json else view_for_stdout(request.progress_every_s)
    watcher = RunWatcher(reporter)
    guard = StartupInterrupt(lambda: watcher.steps_started, lambda: _abort(reporter))
    try:
        with guard:
            return _run(request, reporter, watcher, build, start)
    except KeyboardInterrupt:  # before the run started, or while its end was being printed
        return EXIT_INTERRUPTED
    finally:
        _close(reporter)


def _run(
    request: Request,
    reporter: Reporter,
    watcher: RunWatcher,
    build: Callable[[Request], BaseAction[Any, Any]],
    start: Callable[[Orchestrator[Any]], dict[str, Any]] | None,
) -> int:
    try:
        action = build(request)
        watcher.user_callback = action.progress_callback
        watch_run(action, reporter, target=request.target, exit_code_of=exit_code_of, watcher=watcher, start=start)
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - every failure becomes an exit status
        if watcher.orchestrator is not None:  # the run started: watch_run has reported the end
            return exit_code_of(exc)
        if isinstance(exc, StepsError):
            message = str(exc)
        else:  # a bug in setup_steps/create_context: show where
            traceback.print_exc()
            message = f"setting up {request.target} failed: {type(exc).__name__}: {exc}"
        reporter.end(EXIT_USAGE, None, message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if watcher.orchestrator is None:
            reporter.end(EXIT_INTERRUPTED, None, "interrupted before the run started")
        return EXIT_INTERRUPTED


def _close(reporter: Reporter) -> None:
    if isinstance(reporter, LiveView):
        reporter.close()
    sys.stdout.flush()


def _abort(reporter: Reporter) -> None:
    """Called from the interrupt thread just before ``os._exit(130)``: leave a clean terminal."""
    message = "interrupted while the run was starting; no step had run"
    if isinstance(reporter, JsonReporter):
        reporter.abort(message)
    elif isinstance(reporter, LiveView) and reporter.console.is_terminal:
        reporter.console.file.write("\x1b[?25h\n")  # show the cursor the live bar hid
    sys.stdout.flush()
    sys.stderr.write(f"✗ {message}\n")
    sys.stderr.flush()
