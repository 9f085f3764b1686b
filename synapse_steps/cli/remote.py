"""``submit``, ``attach``, ``stop`` and ``jobs``: runs on a Ray cluster, driven from a laptop.

A submitted run is a Ray job whose entrypoint is ``python -m synapse_steps.cli run TARGET
--json --run-id ID``: its driver runs on the head node, whatever happens to the
submitter. Its submission id is the run id, so the events' ``run_id``, the job and the
commands here all use one name. ``attach`` rebuilds the ``run`` view from the JSON
events in the job's log; ``stop`` has Ray send SIGTERM, which the run turns into a
rollback and exit 130.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synapse_steps.cli.interrupt import EXIT_INTERRUPTED
from synapse_steps.cli.replay import EventLines, replay
from synapse_steps.cli.request import Request
from synapse_steps.cli.run import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from synapse_steps.cli.target import CliError
from synapse_steps.display import LiveView, view_for_stdout
from synapse_steps.display.summary import print_summary
from synapse_steps.errors import StepsError

if TYPE_CHECKING:
    from ray_backend.jobs import ClusterJobs

POLL_S = 0.5
LOG_TAIL_LINES = 20
INSTALL_HINT = 'a cluster\'s Jobs API needs Ray and aiohttp here: pip install "synapse-steps[ray]"'
_STATUS_EXIT = {"SUCCEEDED": EXIT_OK, "STOPPED": EXIT_INTERRUPTED}  # when the run wrote no end event


def _fail(message: str) -> int:
    """One line on stderr; exit 2: nothing was done."""
    sys.stderr.write(f"error: {message}\n")
    return EXIT_USAGE


def _cluster(address: str) -> ClusterJobs:
    try:
        from ray_backend.jobs import ClusterJobs
    except ImportError as exc:
        raise CliError(f"{INSTALL_HINT} ({exc})") from None
    return ClusterJobs(address)


def submit_command(request: Request, address: str, working_dir: str, wait: bool, stop_grace_s: int) -> int:
    """Validate locally, size the working dir, submit; print the run id (or follow it with ``wait``)."""
    from synapse_steps.cli.validate import check

    result = check(request)
    if not result.valid:
        return _fail("; ".join(f"{p['area']}: {p['message']}" for p in result.problems) + "; nothing was submitted")
    try:
        from ray_backend.job_package import check_working_dir

        root, excludes, _ = check_working_dir(working_dir)
        entrypoint = _entrypoint(request, root, run_id := uuid.uuid4().hex[:12])
        jobs = _cluster(address)
        jobs.submit(
            run_id,
            entrypoint,
            target=request.target,
            working_dir=str(root),
            excludes=excludes,
            env_vars={"RAY_JOB_STOP_WAIT_TIME_S": str(stop_grace_s)},
        )
    except ImportError as exc:
        return _fail(f"{INSTALL_HINT} ({exc})")
    except StepsError as exc:
        return _fail(str(exc))
    if not request.json:
        print(run_id, flush=True)
    elif not wait:  # with --wait the events say it
        print(json.dumps({"run_id": run_id, "address": jobs.url}), flush=True)
    sys.stderr.write(
        f"submitted run {run_id} to {jobs.url}\n"
        + ("" if wait else f"  follow: synapse-steps attach {run_id} --address {jobs.url}\n")
    )
    return _follow(jobs, run_id, request.json) if wait else EXIT_OK


def _entrypoint(request: Request, root: Path, run_id: str) -> str:
    """The ``run`` command line the job executes, in the uploaded working dir (its cwd there)."""
    target = request.target
    module, sep, name = target.rpartition(":")
    if sep and module.endswith(".py"):
        target = f"{_inside(module, root, 'TARGET')}:{name}"
    args = ["python", "-m", "synapse_steps.cli", "run", target, "--json", "--run-id", run_id]
    if request.config:
        args += ["--config", _inside(request.config, root, "--config")]
    if request.executor:
        args += ["--executor", request.executor]
    if request.params_file:
        args += ["--params", _inside(request.params_file, root, "--params")]
    for item in request.params:
        args += ["--param", item]
    for name, value in request.param_options.items():
        args += ["--param", f"{name}={value}"]
    return shlex.join(args)


def _inside(path: str, root: Path, what: str) -> str:
    """``path`` relative to the working dir: the job sees only what is uploaded."""
    resolved = Path(path).expanduser().resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        raise CliError(f"{what} {path} is outside the working dir {root}: the job would not see it") from None


def attach_command(address: str, run_id: str, json_output: bool) -> int:
    """``synapse-steps attach``: follow a submitted run's output until it ends; returns the exit status."""
    try:
        jobs = _cluster(address)
        jobs.status(run_id)  # an unknown run id is an error before any view is drawn
    except StepsError as exc:
        return _fail(str(exc))
    return _follow(jobs, run_id, json_output)


def _follow(jobs: ClusterJobs, run_id: str, json_output: bool) -> int:
    """Show the run from its first event, then live, until the job ends; Ctrl-C detaches."""
    view = None if json_output else view_for_stdout()
    lines = EventLines(run_id)
    try:
        while True:
            status, message = jobs.status(run_id)
            ended = status.is_terminal()
            log = jobs.logs(run_id)
            for line, event in lines.new_events(log, final=ended):
                if view is None:
                    print(line, flush=True)
                else:
                    replay(event, view)
            if ended:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _close(view)
        sys.stderr.write(
            f"detached: run {run_id} is still running on {jobs.url}\n"
            f"  re-attach: synapse-steps attach {run_id} --address {jobs.url}\n"
            f"  stop:      synapse-steps stop {run_id} --address {jobs.url}\n"
        )
        return EXIT_INTERRUPTED
    except StepsError as exc:
        _close(view)
        return _fail(str(exc))
    _close(view)
    if lines.end is not None:
        return int(lines.end["exit_code"])
    _no_end_event(run_id, str(status.value), message, log)
    return _STATUS_EXIT.get(str(status.value), EXIT_FAILED)


def _close(view: object) -> None:
    if isinstance(view, LiveView):
        view.close()
    sys.stdout.flush()


def _no_end_event(run_id: str, status: str, message: str | None, log: str) -> None:
    """The job ended without the run's end event (the entrypoint broke, or was killed): say
    how, with the end of its log."""
    tail = log.rstrip().splitlines()[-LOG_TAIL_LINES:]
    sys.stderr.write(f"run {run_id}: job {status} without the run's end event ({message or 'no message'})\n")
    for line in tail:
        sys.stderr.write(f"  | {line}\n")


def stop_command(address: str, run_id: str, timeout_s: float, json_output: bool) -> int:
    """SIGTERM the run through Ray, wait for its rollback and end, and report its end event."""
    try:
        jobs = _cluster(address)
        status, _ = jobs.status(run_id)
        already = status.is_terminal()
        if not already:
            jobs.stop(run_id)
        deadline = time.monotonic() + timeout_s
        while not status.is_terminal():
            if time.monotonic() > deadline:
                sys.stderr.write(
                    f"run {run_id} has not ended {timeout_s:g} s after SIGTERM (still rolling back?); "
                    f"see synapse-steps attach {run_id} --address {jobs.url}\n"
                )
                return EXIT_FAILED
            time.sleep(POLL_S)
            status, _ = jobs.status(run_id)
        lines = EventLines(run_id)
        events = [event for _, event in lines.new_events(jobs.logs(run_id), final=True)]
    except StepsError as exc:
        return _fail(str(exc))
    verb = "had already ended" if already else "stopped"
    if lines.end is None:  # killed (past submit --stop-grace) or never started: nothing says what was undone
        sys.stderr.write(
            f"run {run_id} {verb}: job {status.value} without the run's end event; it never started, "
            "or was killed before its rollback finished (submit --stop-grace)\n"
        )
        return EXIT_FAILED
    if json_output:
        print(json.dumps(lines.end), flush=True)
    else:
        _print_outcome(f"run {run_id} {verb} on {jobs.url}", events, lines.end)
    return int(lines.end["exit_code"])


def _print_outcome(headline: str, events: list[dict[str, Any]], end: dict[str, Any]) -> None:
    """The headline, then the run's summary as ``run`` prints it at its end."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    console.print(headline, highlight=False, markup=False)
    if end["summary"] is None:  # the run never started
        console.print(f"error: {end['error']}", highlight=False, markup=False)
        return
    start = next((e for e in events if e["event"] == "start"), None)
    title = f"{start['action']} on {start['executor']}" if start else end["run_id"]
    print_summary(console, Console(stderr=True, soft_wrap=True), title, end["exit_code"], end["summary"], end["error"])


def _utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def jobs_command(address: str, json_output: bool) -> int:
    """``synapse-steps jobs``: list the runs submitted to a cluster; returns the exit status."""
    try:
        rows = _cluster(address).runs()
    except StepsError as exc:
        return _fail(str(exc))
    if json_output:
        for row in rows:
            record: dict[str, Any] = {**row.__dict__, "start_time": _utc(row.start_time), "end_time": _utc(row.end_time)}
            print(json.dumps(record), flush=True)
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("run id", "status", "target", "started (UTC)", "ended (UTC)", title_justify="left")
    for row in rows:
        table.add_row(row.run_id, row.status, row.target, _utc(row.start_time) or "-", _utc(row.end_time) or "-")
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 200  # a pipe or a log: whole ids and times, not an 80-column cut
    console.print(table)
    return EXIT_OK
