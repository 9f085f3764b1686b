"""Cost curves as the work grows, each a ratio against bare Ray measured side by side.

    python bench/curves.py [--quick] [--only NAME]   # table rows on stdout, bench/curves.png

``--only fanout`` (or steps, result, logs, concurrent) runs that one curve and draws no plot.

- steps per run (10 → 100 → 1,000): per-step cost in a run vs a bare ``ray.get(task.remote(ctx))``
  round trip; flat means the median step interval does not grow with the run;
- fan-out (1,000 → 10,000 → 100,000 tiny shards): ``ctx.map`` throughput vs bare tasks,
  driver memory, and how many progress updates the driver sees (bounded, not one per shard);
- concurrent runs on one Ray (1 → 8 → 32): Ray worker processes and their memory per run,
  vs the same number of concurrent bare tasks;
- one step logging 100,000 lines: time vs a bare task returning the same records, order
  kept, driver memory per line;
- a 64 MiB step result: what it costs each later step vs a run without it.

``--quick`` uses smaller sizes (the ones stated in each row) so it fits a busy 2-core machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import main_on_local_ray, row  # noqa: E402

from ray_backend import RayExecutor  # noqa: E402
from synapse_steps import (  # noqa: E402
    BaseStep,
    BaseStepContext,
    ExecutorConfig,
    Orchestrator,
    RuntimeContext,
    StepRegistry,
    StepResult,
)

QUICK = "--quick" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv[:-1] else None
STEP_COUNTS = (10, 100, 300) if QUICK else (10, 100, 1000)
SHARD_COUNTS = (1000, 3000, 10_000) if QUICK else (1000, 10_000, 100_000)
CONCURRENT_RUNS = (1, 4, 8) if QUICK else (1, 8, 32)
LOG_LINES = 20_000 if QUICK else 100_000
PLOT = HERE / "curves.png"
CONFIG = ExecutorConfig(executor="ray")
FANNING = ExecutorConfig(executor="ray", defaults={"num_cpus": 0})  # a step that only fans out holds no CPU


@dataclass
class CurveContext(BaseStepContext):
    values: dict = field(default_factory=lambda: {f"k{i}": i for i in range(20)})
    out: Any = None


class Do(BaseStep[CurveContext]):
    """A step running ``fn(ctx)`` (a module-level function, shipped by value with this file)."""

    progress_weight = 1.0

    def __init__(self, name: str, fn: Callable[[CurveContext], Any] | None = None) -> None:
        self._name, self._fn = name, fn

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: CurveContext) -> StepResult:
        out = self._fn(ctx) if self._fn is not None else None
        return out if isinstance(out, StepResult) else StepResult()


def run_steps(steps: list[BaseStep], config: ExecutorConfig = CONFIG, **kwargs: Any) -> CurveContext:
    registry: StepRegistry = StepRegistry()
    for step in steps:
        registry.register(step)
    ctx = CurveContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry, ctx, executor=RayExecutor(config), **kwargs).execute()
    return ctx


@ray.remote
def bare_step(ctx: Any) -> Any:
    return ctx


def bare_round_trips(count: int) -> float:
    ctx = CurveContext(runtime_ctx=None)  # type: ignore[arg-type]
    start = time.perf_counter()
    for _ in range(count):
        ctx = ray.get(bare_step.remote(ctx))
    return time.perf_counter() - start


# --- memory and processes ------------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def ray_workers() -> list[int]:
    """Live Ray worker processes started by this driver's own local Ray (Ray retitles them ``ray::…``)."""
    parent: dict[int, int] = {}
    workers: list[int] = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                line = cmd.read()
                if (b"default_worker.py" in line or line.startswith(b"ray::")) and fields[0] != "Z":
                    workers.append(int(entry))
            parent[int(entry)] = int(fields[1])
        except OSError:
            continue

    def mine(pid: int) -> bool:
        for _ in range(6):
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
            if pid <= 1:
                return False
        return False

    return [pid for pid in workers if mine(pid)]


class Peak:
    """Samples driver RSS, and Ray worker count and memory, every 50 ms while in use."""

    def __init__(self) -> None:
        self.driver_mb = self.workers = self.workers_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            pids = ray_workers()
            self.driver_mb = max(self.driver_mb, rss_mb())
            self.workers = max(self.workers, len(pids))
            self.workers_mb = max(self.workers_mb, sum(rss_mb(pid) for pid in pids))
            if self._stop.wait(0.05):
                return


# --- 1. steps per run -------------------------------------------------------------------------------


def steps_curve(points: dict[str, list[tuple[int, float]]]) -> list[str]:
    rows = []
    per_step: dict[int, float] = {}
    for count in STEP_COUNTS:
        repeats = 3 if count <= 100 else 1
        ours, bare, intervals = [], [], []
        for _ in range(repeats + 1):
            starts: list[float] = []
            start = time.perf_counter()
            run_steps([Do(f"s{i}") for i in range(count)], before_step=lambda n, c: starts.append(time.perf_counter()))  # noqa: B023 - called within this iteration
            ours.append(time.perf_counter() - start)
            bare.append(bare_round_trips(count))
            intervals.append(statistics.median(b - a for a, b in zip(starts, starts[1:])))
        ours, bare, intervals = ours[1:], bare[1:], intervals[1:]  # the first pair warms up
        per_step[count] = statistics.median(intervals)
        ratio = statistics.median(ours) / statistics.median(bare)
        points["steps: run / bare"].append((count, ratio))
        rows.append(row(
            f"C1 steps={count}", f"{per_step[count] * 1e3:.2f} ms/step", f"{statistics.median(bare) / count * 1e3:.2f}"
            " ms/step", ratio, "report", True,
            f"whole run {statistics.median(ours) * 1e3:.0f} ms vs {count} bare round trips "
            f"{statistics.median(bare) * 1e3:.0f} ms; per step = median step interval",
        ))
    low, high = STEP_COUNTS[0], STEP_COUNTS[-1]
    flat = per_step[high] / per_step[low]
    rows.append(row("C1 flat", f"{per_step[high] * 1e3:.2f} ms/step", f"{per_step[low] * 1e3:.2f} ms/step", flat,
                    "≤ 1.1×", flat <= 1.1, f"median step interval at {high} steps vs at {low}"))
    return rows


# --- 2. fan-out ---------------------------------------------------------------------------------------


def tiny(item: int) -> int:
    return item + 1


@ray.remote(num_cpus=1)
def tiny_task(item: int) -> int:
    return item + 1


# The run's first map starts Ray worker processes for its shards (the run's step and context
# actor took the idle ones); the bare baseline's workers are warm. A small map in a step
# before makes both warm: the row compares throughput, and its note shows what warming cost.
WARM_UP_SHARDS = 16


def warm_shard(item: int) -> int:
    time.sleep(0.02)  # long enough that every CPU gets a shard, so every shard worker is started
    return item


def warm_up(ctx: CurveContext) -> None:
    start = time.perf_counter()
    ctx.map(warm_shard, range(WARM_UP_SHARDS))
    ctx.values["warm_up_s"] = time.perf_counter() - start


def fan_out(count: int, in_flight: int | None) -> Callable[[CurveContext], None]:
    def step(ctx: CurveContext) -> None:
        start = time.perf_counter()
        result = ctx.map(tiny, range(count), max_in_flight=in_flight)
        ctx.out = (time.perf_counter() - start, result[-1])

    return step


def bare_map(count: int) -> float:
    """Seconds for ``count`` tiny tasks all submitted at once from the driver.

    Sampled by ``Peak`` like the run it is compared with (the sampler takes CPU from both
    alike); its figures are not used: the bare baseline holds all its refs in the driver.
    """
    with Peak():
        start = time.perf_counter()
        assert ray.get([tiny_task.remote(i) for i in range(count)])[-1] == count
        return time.perf_counter() - start


def fanout_curve(points: dict[str, list[tuple[int, float]]]) -> list[str]:
    rows = []
    sizes = [(count, None) for count in SHARD_COUNTS] + [(SHARD_COUNTS[1], 64)]
    for count, in_flight in sizes:
        repeats = 3 if count <= 10_000 else 1  # pairs side by side; one 100k pair takes minutes
        bare, ours, warm, updates = [], [], [], []
        driver_growth = workers_peak = 0.0
        for pair in range(repeats):
            if pair % 2 == 0:  # alternate which goes first: the second finds the shards' workers warm
                bare.append(bare_map(count))
            updates.clear()
            with Peak() as peak:
                before = rss_mb()
                ctx = run_steps([Do("warm-up", warm_up), Do("fan", fan_out(count, in_flight))], FANNING,
                                progress_callback=lambda done, total: updates.append(done))  # noqa: B023 - called within this map
            if pair % 2 == 1:
                bare.append(bare_map(count))
            driver_growth = max(driver_growth, peak.driver_mb - before)
            workers_peak = max(workers_peak, peak.workers_mb)
            map_s, last = ctx.out
            assert last == count
            ours.append(map_s)
            warm.append(ctx.values["warm_up_s"])
        ratio = statistics.median(bare) / statistics.median(ours)
        if in_flight is None:
            points["fan-out: throughput vs bare"].append((count, ratio))
        window = "default max_in_flight" if in_flight is None else f"max_in_flight={in_flight}"
        pairs = ", ".join(f"{b / o:.2f}" for b, o in zip(bare, ours))
        rows.append(row(
            f"C2 shards={count}", f"{count / statistics.median(ours):.0f} shards/s",
            f"{count / statistics.median(bare):.0f} shards/s", ratio, "≥ 0.9×", ratio >= 0.9,
            f"tiny shards, {window}, map inside the step vs all submitted at once from the driver; median of "
            f"{repeats} pair(s) (each: {pairs}); a {WARM_UP_SHARDS}-shard map in a step before warms the shards' "
            f"workers (median {statistics.median(warm) * 1e3:.0f} ms); during a run: driver RSS +{driver_growth:.0f} MB "
            f"at most (it was {before:.0f} MB), Ray workers' RSS peak {workers_peak:.0f} MB; {len(updates)} progress "
            "updates at the driver",
        ))
    return rows


# --- 3. concurrent runs ------------------------------------------------------------------------------


def hold(ctx: CurveContext) -> None:
    time.sleep(1.0)


@ray.remote(num_cpus=0)
def hold_task() -> None:
    time.sleep(1.0)


def concurrent_curve(points: dict[str, list[tuple[int, float]]]) -> list[str]:
    rows = []
    config = ExecutorConfig(executor="ray", defaults={"num_cpus": 0})  # all runs' steps at once
    time.sleep(2.0)
    idle_workers, idle_mb = len(ray_workers()), sum(rss_mb(pid) for pid in ray_workers())
    for runs in CONCURRENT_RUNS:
        with Peak() as bare:
            ray.get([hold_task.remote() for _ in range(runs)])
        time.sleep(2.0)  # let the bare workers go idle

        def one() -> None:
            registry: StepRegistry = StepRegistry()
            registry.register(Do("hold", hold))
            Orchestrator(registry, CurveContext(runtime_ctx=RuntimeContext()), executor=RayExecutor(config)).execute()

        threads = [threading.Thread(target=one) for _ in range(runs)]
        with Peak() as ours:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        time.sleep(2.0)
        ours_procs, bare_procs = (ours.workers - idle_workers) / runs, (bare.workers - idle_workers) / runs
        ours_mb, bare_mb = (ours.workers_mb - idle_mb) / runs, (bare.workers_mb - idle_mb) / runs
        ratio = ours_mb / bare_mb if bare_mb >= 1 else float("nan")  # one bare task may reuse an idle worker
        points["concurrent: Ray worker MB per run"].append((runs, ours_mb))
        rows.append(row(
            f"C3 runs={runs}", f"{ours_mb:.0f} MB/run", f"{bare_mb:.0f} MB/task", ratio, "report", True,
            f"Ray worker processes per run {max(ours_procs, 0):.1f} (bare: {max(bare_procs, 0):.1f} per task; "
            f"{idle_workers} idle before); worker RSS above idle",
        ))
    return rows


# --- 4. a step logging many lines ------------------------------------------------------------------


def chatty(ctx: CurveContext) -> None:
    for i in range(LOG_LINES):
        ctx.log("line", {"i": i})


@ray.remote
def bare_chatty(lines: int) -> list[dict[str, int]]:
    return [{"i": i} for i in range(lines)]


def logs_curve(points: dict[str, list[tuple[int, float]]]) -> list[str]:
    start = time.perf_counter()
    records = ray.get(bare_chatty.remote(LOG_LINES))
    bare = time.perf_counter() - start
    del records
    before = rss_mb()
    with Peak() as peak:
        start = time.perf_counter()
        ctx = run_steps([Do("chatty", chatty)])
        ours = time.perf_counter() - start
    lines = [e.data["i"] for e in ctx.runtime_ctx.events if e.name == "line"]
    in_order = lines == list(range(LOG_LINES))
    ratio = ours / bare
    points["logs: time vs bare"].append((LOG_LINES, ratio))
    per_line = (peak.driver_mb - before) * 2**20 / LOG_LINES
    return [row(
        f"C4 log lines={LOG_LINES}", f"{ours:.2f} s", f"{bare:.2f} s", ratio, "report; order kept", in_order,
        f"all {len(lines)} lines arrived in order: {in_order}; driver peak RSS +{peak.driver_mb - before:.0f} MB "
        f"(~{per_line:.0f} B/line, the events the caller's RuntimeContext keeps)",
    )]


# --- 5. a 64 MiB result ------------------------------------------------------------------------------


def big_result(ctx: CurveContext) -> StepResult:
    return StepResult(data={"weights": np.ones(8 * 2**20)})


def result_curve(points: dict[str, list[tuple[int, float]]]) -> list[str]:
    later = 20

    def per_later_step(first: Callable[[CurveContext], Any] | None) -> float:
        starts: list[float] = []
        run_steps([Do("first", first), *(Do(f"s{i}") for i in range(later))],
                  before_step=lambda n, c: starts.append(time.perf_counter()))
        return statistics.median(b - a for a, b in zip(starts[1:], starts[2:]))

    with_big, without = [], []
    for _ in range(4):
        with_big.append(per_later_step(big_result))
        without.append(per_later_step(None))
    ours, base = statistics.median(with_big[1:]), statistics.median(without[1:])
    ratio = ours / base
    return [row("C5 64 MiB result", f"{ours * 1e3:.2f} ms/step", f"{base * 1e3:.2f} ms/step", ratio, "≤ 1.1×",
                ratio <= 1.1, f"median later step ({later} no-op steps) after a step returning a 64 MiB array "
                "vs after one returning nothing")]


def plot(points: dict[str, list[tuple[int, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(name, values) for name, values in points.items() if values]
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6))
    for axis, (name, values) in zip(axes, curves):
        xs, ys = zip(*values)
        axis.plot(xs, ys, marker="o")
        axis.set_xscale("log")
        axis.set_title(name, fontsize=9)
        if "MB" not in name:
            axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
            axis.set_ylabel("ratio vs bare Ray")
    fig.suptitle(f"synapse-steps cost curves{' (--quick)' if QUICK else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def run() -> list[str]:
    points: dict[str, list[tuple[int, float]]] = {
        "steps: run / bare": [], "fan-out: throughput vs bare": [], "concurrent: Ray worker MB per run": [],
        "logs: time vs bare": [],
    }
    rows: list[str] = []
    for curve in (steps_curve, result_curve, fanout_curve, logs_curve, concurrent_curve):
        if ONLY is not None and curve.__name__ != f"{ONLY}_curve":
            continue
        start = time.perf_counter()
        rows.extend(curve(points))
        print(f"{curve.__name__}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if ONLY is None:  # a partial run leaves the full plot alone
        plot(points)
    return rows


if __name__ == "__main__":
    main_on_local_ray(run)
