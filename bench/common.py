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
