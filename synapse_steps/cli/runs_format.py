"""How ``synapse-steps runs`` shows journal records: text lines and JSON-ready data.

Text is for people (local time, short durations); JSON keeps the records as the journal
holds them (``dataclasses.asdict``, UNIX seconds, statuses as their values) plus each
record's ``duration_s``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from synapse_steps.journal import ErrorInfo, Progress, RunDetail, RunSummary, StepAttempt, StepEntry


def record(item: Any) -> dict[str, Any]:
    """A journal record as JSON-ready data: ``asdict`` with enums as their values, plus ``duration_s``."""

    def values(items: list[tuple[str, Any]]) -> dict[str, Any]:
        return {k: v.value if isinstance(v, Enum) else v for k, v in items}

    data = asdict(item, dict_factory=values)
    if hasattr(item, "duration_s"):
        data["duration_s"] = item.duration_s
    return data


def local_time(t: float | None) -> str:
    """A journal time (UNIX seconds) as this machine's local time; ``-`` for none."""
    return "-" if t is None else datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(s: float | None) -> str:
    """Seconds as ``0.80 s`` under a minute, else ``H:MM:SS``; ``-`` for none (not finished)."""
    if s is None:
        return "-"
    return f"{s:.2f} s" if s < 60 else str(timedelta(seconds=round(s)))


def owner(run: RunSummary) -> str:
    """Who owns the run: ``HOST pid PID``."""
    return f"{run.owner.host} pid {run.owner.pid}"


def _progress(progress: Progress | None) -> str:
    return "-" if progress is None else f"{progress.overall:.0%} (step {progress.step or '-'})"


def _json_text(value: Mapping[str, Any] | None) -> str:
    return "-" if value is None else json.dumps(value)


def _steps(detail: RunDetail) -> list[tuple[StepEntry | None, str, list[StepAttempt]]]:
    """Each step with its attempts: the run's registry in order, then any step attempted that is
    not in it (a run resumed with ``--force`` on a changed registry), so no attempt goes unshown."""
    names = [e.name for e in detail.registry]
    names += list(dict.fromkeys(a.step for a in detail.attempts if a.step not in names))
    entries = {e.name: e for e in detail.registry}
    return [(entries.get(name), name, [a for a in detail.attempts if a.step == name]) for name in names]


def detail_json(detail: RunDetail) -> dict[str, Any]:
    """``runs show --json``: the run, its steps (registry order) with their attempts, rollbacks, commits."""
    steps = [
        {
            "name": name,
            "cls": None if entry is None else entry.cls,
            "weight": None if entry is None else entry.weight,
            "attempts": [record(a) for a in attempts],
        }
        for entry, name, attempts in _steps(detail)
    ]
    return {
        **record(detail.summary),
        "params": detail.params,
        "executor": detail.executor,
        "fingerprint": detail.fingerprint,
        "heartbeat_interval_s": detail.heartbeat_interval_s,
        "progress": None if detail.progress is None else record(detail.progress),
        "steps": steps,
        "rollbacks": [record(r) for r in detail.rollbacks],
        "commits": [record(c) for c in detail.commits],
    }


def _error_lines(error: ErrorInfo | None, indent: str) -> list[str]:
    if error is None:
        return []
    lines = [f"{indent}error      {error.type}: {error.message}"]
    if error.traceback:
        lines.append(f"{indent}traceback")
        lines += [f"{indent}  {line}" for line in error.traceback.rstrip("\n").splitlines()]
    return lines


def detail_lines(detail: RunDetail) -> list[str]:
    """``runs show``: the run, then each step with every attempt, the rollbacks, the context commits."""
    run, progress = detail.summary, detail.progress
    lines = [
        f"run        {run.run_id}",
        f"status     {run.status.value}",
        f"target     {run.target}",
        f"params     {json.dumps(detail.params)}",
        f"executor   {json.dumps(detail.executor)}",
        f"owner      {owner(run)} (epoch {run.owner_epoch}), last heartbeat {local_time(run.heartbeat_at)}",
        f"started    {local_time(run.created_at)}",
        f"finished   {local_time(run.finished_at)}",
        f"duration   {duration(run.duration_s)}",
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
            lines.append(f"     attempt {a.attempt}: {a.status.value}, node {a.node or '-'}, {duration(a.duration_s)}{context}")
            if a.result:
                lines.append(f"       result     {json.dumps(a.result)}")
            lines += _error_lines(a.error, "       ")
    lines += ["", "rollbacks (in the order they ran)"]
    if not detail.rollbacks:
        lines.append("  none")
    for r in detail.rollbacks:
        lines.append(f"  {r.step}: {r.status.value}, node {r.node or '-'}, {duration(r.duration_s)}")
        lines += _error_lines(r.error, "    ")
    lines += ["", "context commits"]
    if not detail.commits:
        lines.append("  none")
    for c in detail.commits:
        lines.append(f"  #{c.seq} after {c.step or '-'} at {local_time(c.committed_at)}: {', '.join(c.fields) or '-'}")
        lines += [f"    blob {digest}" for digest in c.blobs]
    return lines
