"""P7: the first run in a fresh process (embedded local Ray) vs ``ray.init()`` alone + the run."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

INIT_ALONE = textwrap.dedent(
    """
    import ray
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    ray.shutdown()
    """
)

# The quickstart, run once on a Ray this process already started: "the run itself".
WARM_RUN = textwrap.dedent(
    f"""
    import sys, time
    sys.path.insert(0, {str(ROOT / "examples")!r})
    import ray
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    import quickstart
    start = time.perf_counter()
    quickstart.main()
    print("RUN_S", time.perf_counter() - start)
    ray.shutdown()
    """
)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=True)
    return time.perf_counter() - start, proc.stdout


def run(repeats: int = 5) -> list[str]:
    env = {**os.environ, "SYNAPSE_STEPS_EXECUTOR": "ray"}
    env.pop("RAY_ADDRESS", None)
    ours = [timed([sys.executable, str(ROOT / "examples" / "quickstart.py")], env)[0] for _ in range(repeats)]
    init = [timed([sys.executable, "-c", INIT_ALONE], env)[0] for _ in range(repeats)]
    runs = []
    for _ in range(repeats):
        out = timed([sys.executable, "-c", WARM_RUN], env)[1]
        runs.append(float(next(line for line in out.splitlines() if line.startswith("RUN_S")).split()[1]))
    t_ours, t_init, t_run = statistics.median(ours), statistics.median(init), statistics.median(runs)
    ratio = (t_ours - t_run) / t_init
    return [row(
        "P7", f"{t_ours:.2f} s", f"{t_init:.2f} s + run {t_run:.2f} s", ratio, "≤ 1.1× + the run", ratio <= 1.1,
        "fresh process: examples/quickstart.py on an embedded local Ray vs ray.init()+shutdown alone; "
        "ratio = (ours − run) / init",
    )]


if __name__ == "__main__":
    print("\n".join(run()))
