"""``ctx.map`` inside a Ray worker: one Ray task per shard, bounded in flight, in order."""

from __future__ import annotations

import functools
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


def map_on_ray(fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, progress: ProgressSink) -> list[Any]:
    """Run ``fn(item)`` for every item as Ray tasks with the shard resources.

    A small ``fn`` travels inline with each shard, pickled once (an ObjectRef argument
    costs a dependency wait per task); a large one (a closure over data) is stored once.
    At most ``max_in_flight`` shards are submitted at a time (default: four times what the cluster can run at once, at least 8), so a
    100k-shard map does not flood the scheduler. The first failure stops the
    shards still in flight (see ``_settle``) and raises ``ShardFailedError``.
    """
    shards = list(items)
    task = _shard_task.options(**shard_task_options(options))
    limit = options.max_in_flight or _default_in_flight(options)
    blob = cloudpickle.dumps(fn)
    fn_arg: bytes | ray.ObjectRef = blob if len(blob) < _INLINE_FN_BYTES else ray.put(fn)
    results: dict[int, Any] = {}
    pending: dict[ray.ObjectRef, int] = {}
    feed: Iterator[tuple[int, Any]] = iter(enumerate(shards))

    def top_up() -> None:
        for index, item in feed:
            pending[task.remote(fn_arg, item)] = index
            if len(pending) >= limit:
                return

    try:
        top_up()
        while pending:
            refs = list(pending)
            ray.wait(refs, num_returns=1)
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # every shard done by now, in one pass
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
            top_up()
    except BaseException:
        _settle(pending, results)  # a cancelled step (KeyboardInterrupt) or a timeout: stop the shards in flight
        raise
    return [results[i] for i in range(len(shards))]


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


def _default_in_flight(options: ShardOptions) -> int:
    total, asked = ray.cluster_resources(), options.resources
    fits = [total.get("CPU", 1.0) / asked.num_cpus] if asked.num_cpus else []
    if asked.num_gpus:
        fits.append(total.get("GPU", 0.0) / asked.num_gpus)
    at_once = int(min(fits)) if fits else 16
    return max(8, 4 * at_once)  # enough queued that no CPU idles between shards, never the whole list
