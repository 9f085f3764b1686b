"""Fan-out inside a step: ``ctx.map(fn, shards)`` over threads here, over Ray tasks on Ray.

The step keeps one band of overall progress; each finished shard moves the step's
own fraction (done / total), so shards aggregate into the band like a loop calling
``set_progress``. A failing shard fails the map: shards not yet started are
cancelled, shards already running are waited for (stopped on Ray, finished in
threads), and the raised ``ShardFailedError`` carries ``rollback_data`` naming every
shard that completed — also those that finished after the failure — which the
failed step's ``rollback`` receives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from synapse_steps.errors import StepsError
from synapse_steps.resources import StepResources

ProgressSink = Callable[[int, int], None]


@dataclass(frozen=True)
class ShardOptions:
    """One ``ctx.map`` call: each shard's resolved resources (used on Ray), and the bound on shards in flight."""

    resources: StepResources
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")


class ShardFailedError(StepsError, RuntimeError):
    """Shard ``index`` raised; ``rollback_data`` lists the shards that completed.

    The orchestrator copies ``rollback_data`` into the failed step's result, so the
    step's ``rollback(ctx, result)`` sees ``result.rollback_data["completed_shards"]``
    (indexes) and ``["shard_results"]`` (index → value).
    """

    def __init__(self, message: str, index: int, completed: dict[int, Any]) -> None:
        super().__init__(message, index, completed)
        self.index = index
        self.rollback_data = {"completed_shards": sorted(completed), "shard_results": dict(completed)}

    def __str__(self) -> str:
        return str(self.args[0])


def shard_failure(index: int, total: int, exc: BaseException, completed: dict[int, Any]) -> ShardFailedError:
    """The error a failed shard raises, naming it and counting the shards that completed before it."""
    return ShardFailedError(
        f"shard {index} of {total} failed: {type(exc).__name__}: {exc} ({len(completed)} shard(s) completed)",
        index,
        completed,
    )


def _settle(pending: dict[Future[Any], int], results: dict[int, Any]) -> None:
    """After a failure: cancel shards not started, wait for running ones, keep what they finished.

    A thread cannot be stopped, so a running shard finishes; its output exists and
    must be listed in ``completed_shards`` for the rollback to undo it.
    """
    for future in pending:
        future.cancel()
    wait(pending)
    for future, index in pending.items():
        if not future.cancelled() and future.exception() is None:
            results[index] = future.result()


def map_in_threads(
    fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, progress: ProgressSink
) -> list[Any]:
    """The in-process map: a thread pool, results in input order, bounded in flight."""
    shards = list(items)
    limit = options.max_in_flight or min(32, (os.cpu_count() or 1) + 4)
    results: dict[int, Any] = {}
    pending: dict[Future[Any], int] = {}
    feed: Iterator[tuple[int, Any]] = iter(enumerate(shards))
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="synapse-steps-shard") as pool:

        def top_up() -> None:
            for index, item in feed:
                pending[pool.submit(fn, item)] = index
                if len(pending) >= limit:
                    return

        try:
            top_up()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    exc = future.exception()
                    if exc is not None:
                        _settle(pending, results)
                        raise shard_failure(index, len(shards), exc, results) from exc
                    results[index] = future.result()
                    progress(len(results), len(shards))
                top_up()
        except BaseException:
            for future in pending:  # an interrupt: start nothing new (running shards finish on exit)
                future.cancel()
            raise
    return [results[i] for i in range(len(shards))]
