"""``synapse-steps resume RUN_ID`` and ``rollback RUN_ID``: a journaled run whose driver died.

Both rebuild the action from what the journal holds (TARGET, params, executor config)
and refuse, with a one-line message and exit status 2 and without changing anything,
an unknown run id, a run that is still running or already finished, a run started from
Python (no TARGET to import), and — unless ``--force`` — a run whose steps changed since.
"""

from __future__ import annotations

from typing import Any

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli.request import Request
from synapse_steps.cli.run import run_command
from synapse_steps.cli.runs import open_journal
from synapse_steps.cli.target import CliError, load_action_class
from synapse_steps.config import load_config
from synapse_steps.journal import default_url
from synapse_steps.journal.journal import RESUMABLE, refusal
from synapse_steps.journal.opening import check_same_steps
from synapse_steps.orchestrator import Orchestrator
from synapse_steps.registry import StepRegistry
from synapse_steps.runtime import RuntimeContext


def journaled_command(
    what: str,
    run_id: str,
    *,
    journal_url: str | None,
    force: bool,
    json_output: bool,
    progress_every_s: float,
    executor: str | None = None,
    address: str | None = None,
) -> int:
    """Run ``resume`` or ``rollback`` (``what``) of ``run_id`` with the ``run`` command's views and exit statuses."""
    url = journal_url or default_url()
    request = Request(
        target="",
        action_class=None,
        load_error=None,
        config=None,
        executor=executor,
        address=address,
        params_file=None,
        params=(),
        param_options={},
        json=json_output,
        progress_every_s=progress_every_s,
        run_id=run_id,
        journal_url=url,
    )

    def build(_: Request) -> BaseAction[Any, Any]:
        action = rebuild_action(url, run_id, force=force, executor=executor, address=address)
        request.target = action.target
        return action

    def start(orchestrator: Orchestrator[Any]) -> dict[str, Any]:
        if what == "resume":
            return orchestrator.resume(run_id, force=force)
        return orchestrator.rollback_run(run_id, force=force)

    return run_command(request, build=build, start=start)


def rebuild_action(
    url: str, run_id: str, *, force: bool, executor: str | None = None, address: str | None = None
) -> BaseAction[Any, Any]:
    """The journaled run's action, checked: resumable, has a TARGET, same steps (unless ``force``)."""
    with open_journal(url) as journal:
        detail = journal.get_run(run_id)
    if detail.status not in RESUMABLE:
        raise CliError(refusal(detail.summary, RESUMABLE))
    target = detail.summary.target
    if not target:
        raise CliError(
            f"run {run_id!r} was started from Python, not from an action TARGET: "
            f"resume it there with Orchestrator.resume({run_id!r}) or rollback_run({run_id!r})"
        )
    action_class = load_action_class(target)
    overrides: dict[str, Any] = dict(detail.executor.get("config") or {})
    if executor is not None:
        overrides["executor"] = executor
    overrides["journal"] = url
    config = load_config(**overrides)
    if address is not None:
        config = config.model_copy(update={"ray": config.ray.model_copy(update={"address": address})})
    action = action_class(dict(detail.params), runtime_ctx=RuntimeContext(job_id=run_id), config=config)
    action.target = target
    if not force:
        registry: StepRegistry[Any] = StepRegistry()
        action.setup_steps(registry)
        check_same_steps(detail, registry.get_steps())
    return action

