"""Run every benchmark and print one Markdown table of ratios (never fails on speed).

    python bench/run_all.py            # about 15 minutes on 2 cores
    python bench/run_all.py --quick    # the cost curves at smaller sizes (see bench/curves.py)

Each benchmark runs in its own process (its own local Ray), one after another, so
they do not disturb each other. P6 needs Prefect (pip install ".[bench]").
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import HEADER  # noqa: E402

SCRIPTS = [
    "p1_local_overhead.py",
    "p2_ray_step_overhead.py",
    "p3_progress_hot_loop.py",
    "p4_large_context.py",
    "p5_fanout_throughput.py",
    "p6_prefect_comparison.py",
    "p7_first_run.py",
    "p8_journal.py",
    "curves.py",  # also writes bench/curves.png
]


def machine() -> str:
    import ray

    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, Python {platform.python_version()}, "
        f"Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def main() -> int:
    rows = []
    for script in SCRIPTS:
        start = time.perf_counter()
        flags = [flag for flag in sys.argv[1:] if flag == "--quick"]
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *flags], capture_output=True, text=True, timeout=1800
        )
        found = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
        if proc.returncode != 0 or not found:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            found = [f"| {script} | — | — | — | — | not run | {tail[:160]} |"]
        rows.extend(found)
        print(f"{script}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"Machine: {machine()}\n")
    print(HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
