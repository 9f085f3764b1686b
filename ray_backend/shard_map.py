"""``ctx.map`` inside a Ray worker: one Ray task per shard, bounded in flight, in order."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray
from ray import cloudpickle

from ray_backend.task_options import shard_task_options
from synapse_steps.fanout import ProgressSink, ShardOptions, shard_failure


@functools.lru_cache(maxsize=8)
def _loaded(blob: bytes) -> Callable[[Any], Any]:
    return cloudpickle.loads(blob)  # type: ignore[no-any-return]


def _apply(fn: bytes | Callable[[Any], Any], item: Any) -> Any:
    """One shard. A small ``fn`` comes pickled (once per map, unpickled once per worker)."""
    return (_loaded(fn) if isinstance(fn, bytes) else fn)(item)


_shard_task = ray.remote(_apply)

_INLINE_FN_BYTES = 64 * 1024
# After a failure or a stop, how long shards in flight get to stop before they are killed.
_SETTLE_GRACE_S = 1.0
# The longest the loop sleeps: bounds how late a failure is seen and a progress update sent.
_WAKE_S = 0.1
# The default window holds about this many seconds of shards, at the rate they finish at ...
_WINDOW_HORIZON_S = 0.5
# ... and never more than this many shards, however fast they finish.
_MAX_DEFAULT_WINDOW = 4096


def map_on_ray(fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, progress: ProgressSink) -> list[Any]:
    """Run ``fn(item)`` for every item as Ray tasks with the shard resources.

    How ``fn`` reaches the shards: see ``_shard_function``. At most ``max_in_flight`` shards are submitted at a time (default: see ``_Window``),
    so a 100k-shard map neither floods the scheduler nor holds 100k ObjectRefs. The
    loop wakes once a batch of shards has finished (or every ``_WAKE_S``), not per
    shard: it costs the step's process little CPU, which tiny shards need. The first
    failure stops the shards still in flight (see ``_settle``) and raises
    ``ShardFailedError``.
    """
    shards = list(items)
    task, head = _shard_function(fn, options)
    at_once = _at_once(options)
    window = _Window(options.max_in_flight, at_once)
    results: dict[int, Any] = {}
    pending: dict[ray.ObjectRef, int] = {}
    feed: Iterator[tuple[int, Any]] = iter(enumerate(shards))

    def top_up() -> None:
        while len(pending) < window.size:
            step = next(feed, None)
            if step is None:
                return
            pending[task.remote(*head, step[1])] = step[0]

    try:
        top_up()
        while pending:
            refs = list(pending)
            # Wake when a quarter of the window has finished, or as soon as a slot could idle.
            batch = max(1, min(len(refs) // 4, len(refs) - at_once))
            done, _ = ray.wait(refs, num_returns=batch, timeout=_WAKE_S)
            if not done:
                continue
            try:
                values = ray.get(done)
            except ray.exceptions.RayError:
                values = None  # one failed: find it below, keeping the others
            for position, ref in enumerate(done):
                index = pending.pop(ref)
                try:
                    results[index] = values[position] if values is not None else ray.get(ref)
                except ray.exceptions.RayError as exc:
                    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause else exc
                    _settle(pending, results)
                    raise shard_failure(index, len(shards), cause, results) from None
            progress(len(results), len(shards))
            window.finished(len(results))
            top_up()
    except BaseException:
        _settle(pending, results)  # a cancelled step (KeyboardInterrupt) or a timeout: stop the shards in flight
        raise
    return [results[i] for i in range(len(shards))]


def _shard_function(fn: Callable[[Any], Any], options: ShardOptions) -> tuple[Any, tuple[Any, ...]]:
    """The remote function every shard runs, and the arguments that go before its item.

    A plain module-level function becomes a remote function of its own: Ray exports it
    once per job and each worker loads it once, so a shard carries nothing but its item
    (pickled with each shard, ``fn`` cost tiny shards ~10% of their throughput). Only
    module-level functions: every distinct lambda or closure would add an export that
    lives as long as the job. Any other small callable travels pickled with each shard
    (an ObjectRef argument costs a dependency wait per task); a large one (a closure
    over data) is stored once.
    """
    blob = cloudpickle.dumps(fn)
    task_options = shard_task_options(options)
    if len(blob) >= _INLINE_FN_BYTES:
        return _shard_task.options(**task_options), (ray.put(fn),)
    if _module_level_function(fn):
        return ray.remote(fn).options(**task_options), ()
    return _shard_task.options(**task_options), (blob,)


def _module_level_function(fn: Callable[[Any], Any]) -> bool:
    """A plain ``def`` at module level (not a lambda, closure, generator or coroutine function)."""
    return (
        inspect.isfunction(fn)
        and "<" not in fn.__qualname__  # <lambda>, <locals>
        and not (inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))
    )


class _Window:
    """How many shards may be in flight: the caller's ``max_in_flight``, or a default that follows the shards' pace.

    The default starts at four times what the cluster can run at once (at least 8).
    At each wake it grows to hold about ``_WINDOW_HORIZON_S`` of shards at the rate
    they just finished at, never over ``_MAX_DEFAULT_WINDOW`` and never shrinking (one
    slow interval on a busy machine must not drain the queue). Slow shards keep the
    small start (their arguments are not all queued at once); tiny ones get a queue
    deep enough that Ray keeps its worker leases between them (a queue that runs dry
    hands them back, and each new lease is a round trip to the raylet).
    """

    def __init__(self, asked: int | None, at_once: int) -> None:
        self._fixed = asked is not None
        self.size = asked if asked is not None else max(8, 4 * at_once)
        self._count, self._since = 0, time.monotonic()

    def finished(self, count: int) -> None:
        """``count`` shards have finished so far."""
        now = time.monotonic()
        rate = (count - self._count) / max(now - self._since, 1e-3)
        self._count, self._since = count, now
        if not self._fixed:
            self.size = min(_MAX_DEFAULT_WINDOW, max(self.size, int(rate * _WINDOW_HORIZON_S)))


def _settle(pending: dict[ray.ObjectRef, int], results: dict[int, Any]) -> None:
    """Stop the shards in flight — politely, then by force — and keep those that finished.

    Bounded by ``_SETTLE_GRACE_S``, inside the driver's own grace for the step, so the
    step's rollback data lists every shard that completed, also after the failure.
    """
    if not pending:
        return
    refs = list(pending)
    for ref in refs:
        ray.cancel(ref)
    ready, stuck = ray.wait(refs, num_returns=len(refs), timeout=_SETTLE_GRACE_S)
    for ref in stuck:
        ray.cancel(ref, force=True)
    for ref in ready:
        try:
            results[pending[ref]] = ray.get(ref, timeout=0)
        except Exception:  # noqa: BLE001 - failed or cancelled: not completed
            continue
    pending.clear()


def _at_once(options: ShardOptions) -> int:
    """How many of these shards the cluster can run at once (16 for shards that ask for no CPU or GPU)."""
    total, asked = ray.cluster_resources(), options.resources
    fits = [total.get("CPU", 1.0) / asked.num_cpus] if asked.num_cpus else []
    if asked.num_gpus:
        fits.append(total.get("GPU", 0.0) / asked.num_gpus)
    return max(1, int(min(fits))) if fits else 16
