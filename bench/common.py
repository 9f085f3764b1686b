"""Shared bench helpers: repeat a measurement, report median and spread, print a table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timing:
    median_s: float
    spread_s: float  # max - min over the repetitions

    def __str__(self) -> str:
        return f"{self.median_s * 1e3:.2f} ms (±{self.spread_s * 1e3 / 2:.2f})"


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), max(samples) - min(samples))


def row(bench_id: str, ours: str, baseline: str, ratio: float, target: str, met: bool, note: str = "") -> str:
    mark = "yes" if met else "NO"
    return f"| {bench_id} | {ours} | {baseline} | {ratio:.2f}× | {target} | {mark} | {note} |"


HEADER = (
    "| id | ours | baseline | ratio | target | met | note |\n"
    "|---|---|---|---|---|---|---|"
)


def spin(iterations: int) -> int:
    """CPU-bound work of a fixed size (not a clock wait: threads must not overlap for free)."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """Iterations of ``spin`` that take about ``seconds`` on one core of this machine."""
    probe = 200_000
    start = time.perf_counter()
    spin(probe)
    elapsed = time.perf_counter() - start
    return max(1, int(probe * seconds / elapsed))


def as_installed() -> None:
    """Measure what an installed synapse-steps costs: its own modules travel by reference.

    Run from a checkout (``PYTHONPATH=$PWD``), the library is no installed distribution,
    so ``code_shipping`` would send ``synapse_steps`` and ``ray_backend`` by value with
    every task (~10 ms per task on 2 cores); installed, workers import them. The workers
    of the local Ray started here inherit ``PYTHONPATH`` and import them as well.
    """
    from ray_backend import code_shipping

    shipped = code_shipping.is_user_module
    own = ("synapse_steps", "ray_backend")
    code_shipping.is_user_module = lambda module: (  # type: ignore[assignment]
        shipped(module) and getattr(module, "__name__", "").partition(".")[0] not in own
    )


def main_on_local_ray(run: Callable[[], list[str]]) -> None:
    """Run a benchmark on its own fresh 2-CPU local Ray (library as if installed) and print its table rows."""
    import ray

    as_installed()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        print("\n".join(run()))
    finally:
        ray.shutdown()
