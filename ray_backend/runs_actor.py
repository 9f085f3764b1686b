"""The driver's context actor: started by a run, shared by the runs that follow it.

A Ray actor is a Python process of its own. One per run put that process's start
(~0.3–0.9 s of CPU on a 2-core machine) into every run, competing with its first
steps. So a driver process keeps one actor (``RunsHost``) per Ray connection and
namespace: each run keeps its state there under its own key and drops it when it ends.
Once no run uses it, the actor waits ``ray.actor_idle_s`` for the next one, then ends;
it is not detached, so Ray also ends it with the driver (or its ``ray.shutdown``).

When the actor dies or freezes, the first run to notice starts a new one
(``replace``); the other runs then get that one and give it their committed state.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_backend.context_actor import RunsHost

_runs_host_actor = ray.remote(RunsHost)  # made remote once: Ray exports its class once per job
# How long a new actor may take to start (a Python process; slow on a busy machine) before
# it counts as lost; ``ray.actor_timeout_s`` applies once it is up.
START_TIMEOUT_S = 60.0
NAME_PREFIX = "synapse-steps-context-"
_log = logging.getLogger("synapse_steps.ray")

_lock = threading.Lock()  # guards ``_actors`` and every actor's ``users`` and ``idle_timer``
_actors: dict[tuple[str, str, str], SharedActor] = {}  # (node id, job id, namespace) -> its actor


@dataclass(eq=False)
class SharedActor:
    """One started context actor: its handle and name, whether its process is up, who uses it."""

    handle: ray.actor.ActorHandle
    name: str
    key: tuple[str, str, str]  # (node id, job id, namespace) of the connection that started it
    ready: ray.ObjectRef  # resolves once its process is up
    started: float  # time.monotonic() when it was created
    users: int = 0  # runs holding it (``acquire`` .. ``release``)
    idle_timer: threading.Timer | None = field(default=None, repr=False)

    @property
    def process_up(self) -> bool:
        """Whether its process has come up (it may have died since)."""
        return bool(ray.wait([self.ready], timeout=0)[0])

    def up(self, now: float) -> bool:
        """Whether its process is up; one still starting after ``START_TIMEOUT_S`` counts as up (then as lost)."""
        return self.process_up or now - self.started > START_TIMEOUT_S


def acquire(namespace: str, timeout_s: float) -> SharedActor:
    """The context actor of this driver's Ray connection in ``namespace`` (started now if none); ``release`` it after.

    One that is up must answer within ``timeout_s``: it may have died since the last run
    (a run whose last calls did not wait for answers never noticed), and a run must not
    hand its first steps a dead actor.
    """
    key = _key(namespace)
    with _lock:
        for stale in [k for k in _actors if k[:2] != key[:2]]:
            del _actors[stale]  # a Ray this process has left: its actor ended with that connection
        actor = _actors.get(key)
        if actor is not None and not _answers(actor, timeout_s):
            ray.kill(actor.handle, no_restart=True)
            actor = None
        if actor is None:
            actor = _actors[key] = _start(key)
        actor.users += 1
        if actor.idle_timer is not None:
            actor.idle_timer.cancel()
            actor.idle_timer = None
        return actor


def release(actor: SharedActor, idle_s: float) -> None:
    """A run is done with ``actor``: the last one leaves it ``idle_s`` for the next run before it ends."""
    with _lock:
        actor.users -= 1
        if actor.users > 0 or _actors.get(actor.key) is not actor:
            return  # still in use, or already replaced (the replacement killed it)
        if idle_s <= 0:
            _end(actor)
            return
        actor.idle_timer = threading.Timer(idle_s, _end_if_idle, args=(actor,))
        actor.idle_timer.daemon = True  # never keeps the driver from exiting (Ray ends the actor then)
        actor.idle_timer.start()


def replace(lost: SharedActor) -> SharedActor:
    """``lost`` died or froze: kill it and start another, unless another run already did; return the current one.

    The caller's use moves from ``lost`` to the one returned (``release`` that one).
    """
    with _lock:
        current = _actors.get(lost.key)
        if current is None or current is lost:
            ray.kill(lost.handle, no_restart=True)  # a frozen actor must not come back half-way
            current = _actors[lost.key] = _start(lost.key)
        lost.users -= 1
        current.users += 1
        return current


def replaced(actor: SharedActor) -> bool:
    """Whether another run already replaced ``actor`` (it died or froze): the caller should move on too."""
    with _lock:
        current = _actors.get(actor.key)
        return current is not None and current is not actor


def _answers(actor: SharedActor, timeout_s: float) -> bool:
    """Whether ``actor`` is alive: one still starting counts as alive; one that is up must answer a ping."""
    if not actor.process_up:
        return True
    try:
        ray.get(actor.handle.__ray_ready__.remote(), timeout=timeout_s)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return False
    return True


def _key(namespace: str) -> tuple[str, str, str]:
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id(), namespace


def _start(key: tuple[str, str, str]) -> SharedActor:
    # On the driver's node: the runs' bookkeeping must not die with a worker node. Hard
    # affinity (it needs no resources, and that node lives as long as the driver): Ray
    # does not honour *soft* affinity to the head node for actors.
    node, job, namespace = key
    name = f"{NAME_PREFIX}{job}-{uuid.uuid4().hex[:8]}"
    handle = _runs_host_actor.options(
        name=name, namespace=namespace, num_cpus=0, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote()
    return SharedActor(handle, name, key, handle.__ray_ready__.remote(), time.monotonic())


def _end_if_idle(actor: SharedActor) -> None:
    with _lock:
        if actor.users == 0 and _actors.get(actor.key) is actor:
            _end(actor)


def _end(actor: SharedActor) -> None:
    """Forget ``actor`` and end it (under ``_lock``); nothing to do if its Ray is gone already."""
    del _actors[actor.key]
    try:
        if not ray.is_initialized() or _key(actor.key[2]) != actor.key:
            return  # that connection ended, and the actor with it
        if actor.process_up:
            ray.kill(actor.handle, no_restart=True)
        else:  # still starting: a kill now makes Ray log errors; it ends itself once up
            actor.handle.exit.remote()
    except Exception:  # noqa: BLE001 - the driver is disconnecting: the actor ends with it
        _log.debug("could not end the context actor %s", actor.name, exc_info=True)
