"""P6: RayOrchestrator vs a Prefect 3 flow with prefect_ray.RayTaskRunner, 100 no-op steps/tasks,
on the same local Ray. Needs the bench extra: pip install ".[bench]"."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import main_on_local_ray, row  # noqa: E402
from p2_ray_step_overhead import STEPS, SmallContext, _registry  # noqa: E402

from ray_backend import RayExecutor  # noqa: E402
from synapse_steps import ExecutorConfig, Orchestrator, RuntimeContext  # noqa: E402


def run(repeats: int = 3) -> list[str]:
    try:
        from prefect import flow, task
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise SystemExit(f"P6 needs Prefect: pip install '.[bench]' ({exc})") from None

    @task
    def noop(values: dict) -> dict:
        return values

    @flow(task_runner=RayTaskRunner(), persist_result=False)
    def hundred_noops() -> None:
        values = {f"k{i}": i for i in range(20)}
        for _ in range(STEPS):
            values = noop.submit(values).result()

    def ours() -> None:
        ctx = SmallContext(runtime_ctx=RuntimeContext())
        Orchestrator(_registry(STEPS), ctx, executor=RayExecutor(ExecutorConfig(executor="ray"))).execute()

    hundred_noops()  # warm-up: starts Prefect's temporary API server
    ours()
    t_ours, t_prefect = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        hundred_noops()
        t_prefect.append(time.perf_counter() - start)
    per_ours, per_prefect = statistics.median(t_ours) / STEPS, statistics.median(t_prefect) / STEPS
    ratio = per_prefect / per_ours
    return [row(
        "P6", f"{per_ours * 1e3:.2f} ms/step", f"{per_prefect * 1e3:.2f} ms/task", ratio, "report; aim ≥ 5× lower",
        ratio >= 5, f"ratio = Prefect's per-task time / ours, whole {STEPS}-step runs incl. fixed costs",
    )]


if __name__ == "__main__":
    main_on_local_ray(run)
