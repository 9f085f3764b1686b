"""Watching one step task: where it started, whether its node still lives, stopping it."""

from __future__ import annotations

import ray

from synapse_steps.resources import StepResources

# After a polite cancel, how long a step gets to stop before its worker is killed.
_CANCEL_GRACE_S = 2.0


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
        return self.waiting_since is not None and now - self.waiting_since > limit_s


def describe_request(resources: StepResources) -> str:
    asked = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, **resources.resources}
    if resources.memory:
        asked["memory"] = resources.memory
    if resources.accelerator_type:
        asked["accelerator_type"] = resources.accelerator_type
    return ", ".join(f"{k}={v}" for k, v in asked.items() if v)


def stop_task(ref: ray.ObjectRef) -> None:
    """Cancel politely; if the task is stuck (sleep, C code), kill its worker.

    Not recursive: a recursive cancel also drops the task's pending calls to the
    context actor (its last events). Shards a step fanned out are cancelled by
    the step itself as the interrupt unwinds it, or die with its worker.
    """
    ray.cancel(ref, recursive=False)
    if not ray.wait([ref], timeout=_CANCEL_GRACE_S)[0]:
        ray.cancel(ref, force=True, recursive=False)
        ray.wait([ref], timeout=_CANCEL_GRACE_S)
