"""Watching one step task: where it started, whether its node still lives, stopping it."""

from __future__ import annotations

import time

import ray

from ray_backend.task_report import TaskReport
from synapse_steps.interrupts import InterruptGuard
from synapse_steps.resources import StepResources

# After a polite cancel, how long a step gets to stop before its worker is killed.
_CANCEL_GRACE_S = 2.0
# After a kill, how long to wait for Ray to confirm the task ended.
_KILL_CONFIRM_S = 10.0


class StartWatch:
    """Where a step task's current attempt started, and how long it has been waiting to."""

    _LIVENESS_EVERY_S = 1.0

    def __init__(self, now: float) -> None:
        self.submitted = now
        self.waiting_since: float | None = now
        self.node: str | None = None
        self.ever_started = False
        self.lost_node: str | None = None
        self._next_check = now + self._LIVENESS_EVERY_S

    def update(self, marker: str | None, now: float) -> str | None:
        """Take the latest start marker (node id, or "" if lost with a dead actor); return news."""
        if marker is None or marker == self.lost_node:
            return None  # no marker yet, or the lost attempt's own
        if marker == "":
            # The context actor was replaced and the marker went with it: assume the task
            # runs (a wrong schedule timeout would kill a healthy step), node unknown.
            if self.ever_started:
                return None
            self.waiting_since, self.ever_started = None, True
            return ""
        if self.waiting_since is None and marker == self.node:
            return None
        self.node, self.waiting_since, self.ever_started = marker, None, True
        return marker

    def node_lost(self, now: float) -> bool:
        """Every second while running: has the node under the attempt died? Then wait for a retry."""
        if self.waiting_since is not None or not self.node or now < self._next_check:
            return False
        self._next_check = now + self._LIVENESS_EVERY_S
        if any(n["NodeID"] == self.node and n["Alive"] for n in ray.nodes()):
            return False
        self.lost_node, self.node, self.waiting_since = self.node, None, now
        return True

    def waiting_too_long(self, now: float, limit_s: float) -> bool:
        """True once the task has waited for a node longer than ``limit_s`` (it is then reported unschedulable)."""
        return self.waiting_since is not None and now - self.waiting_since > limit_s


def describe_request(resources: StepResources) -> str:
    """The step's non-zero resource asks as ``name=value``, for the message of a step no node can run."""
    asked: dict[str, object] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, **(resources.resources or {})}
    if resources.memory:
        asked["memory"] = resources.memory
    if resources.accelerator_type:
        asked["accelerator_type"] = resources.accelerator_type
    return ", ".join(f"{k}={v}" for k, v in asked.items() if v)


def stop_task(ref: ray.ObjectRef, guard: InterruptGuard) -> TaskReport | None:
    """Stop a step task and confirm it stopped; return its report if it stopped cooperatively.

    First a polite cancel: ``KeyboardInterrupt`` in the step at its next bytecode,
    after which the task commits its state and returns its report. A task stuck in
    a ``time.sleep`` or C code, or one that swallows the interrupt, is killed after
    ``_CANCEL_GRACE_S`` (at once if the user insists with a third signal), together
    with the shard tasks it started. Only then may its rollback start.
    """
    ray.cancel(ref, recursive=False)  # non-recursive: the step's own shard map stops its shards
    deadline = time.monotonic() + _CANCEL_GRACE_S
    done = False
    while not done and time.monotonic() < deadline and not guard.abandon:
        done = bool(ray.wait([ref], timeout=0.05)[0])
    if not done:
        ray.cancel(ref, force=True, recursive=True)
        ray.wait([ref], timeout=_KILL_CONFIRM_S)
    try:
        value = ray.get(ref, timeout=0)
    except Exception:  # noqa: BLE001 - cancelled or killed: no report
        return None
    return value if isinstance(value, TaskReport) else None
