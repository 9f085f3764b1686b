"""P8: what the run journal costs a run, on SQLite and on Postgres, in-process and on Ray.

"P8 SQLite" / "P8 Postgres": a whole 100-step no-op run in-process (Orchestrator +
LocalExecutor) journaled vs not journaled, the same run side by side; the cost per step
is (journaled − plain) / 100 — per step the journal writes STARTED before dispatch and
the outcome with the context after the step. "P8 Ray": the same 100-step run on a fresh
2-CPU local Ray, journaled (SQLite) vs not: the journal's share of a real Ray run.
"P8 layer": the journal's writes alone vs the same transactions with the bare driver
(sqlite3), i.e. what the SQLAlchemy layer adds over SQLite's own commit cost.
Postgres: ``--postgres URL``, else a throwaway server started here (tests/postgres_server.py;
needs initdb on PATH or under /usr/lib/postgresql/*/bin). Targets (issue 11): ≤ 1 ms per
step on SQLite and ≤ 10 % of a 100-step Ray run; Postgres is reported.
"""

from __future__ import annotations

import argparse
import pickle
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import as_installed, measure, row

from synapse_steps.journal import Journal, StepEntry, StepStatus

STEPS = 100
REGISTRY = [StepEntry(f"noop-{i}", "bench:NoOp", 1.0) for i in range(STEPS)]
CONTEXT = {"rows": 100, "name": "digits", "scores": [0.1, 0.2, 0.3]}
STARTED = "INSERT INTO a VALUES ('r', ?, 'STARTED', ?)"
COMMIT = "INSERT INTO c VALUES ('r', ?, ?)"
FINISHED = "UPDATE a SET status = 'SUCCEEDED' WHERE run = 'r' AND step = ?"


def journal_run(journal: Journal) -> None:
    run = journal.start_run(target="bench:NoOpAction", params={}, registry=REGISTRY, executor={"kind": "local"})
    for order, entry in enumerate(REGISTRY):
        attempt = run.step_started(entry.name, order)
        run.step_finished(entry.name, attempt, StepStatus.SUCCEEDED, result={}, context=CONTEXT)


def bare_transactions(i: int, data: bytes) -> list[list[tuple[str, tuple[object, ...]]]]:
    """The statements of step ``i`` in the journal's two transactions: STARTED, then the outcome with the context."""
    started = (STARTED, (f"s{i}", time.time()))
    return [[started], [(COMMIT, (i, data)), (FINISHED, (f"s{i}",))]]


def bare_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS a (run TEXT, step TEXT, status TEXT, t REAL)")
    conn.execute("CREATE TABLE IF NOT EXISTS c (run TEXT, seq INTEGER, data BLOB)")
    data = pickle.dumps(CONTEXT)
    for i in range(STEPS):
        for transaction in bare_transactions(i, data):
            conn.execute("BEGIN IMMEDIATE")
            for sql, args in transaction:
                conn.execute(sql, args)
            conn.execute("COMMIT")
    conn.close()


def compare(url: str, bare: Callable[[], None]) -> str:
    """The journal's writes for a 100-step run vs the same transactions with sqlite3."""
    with tempfile.TemporaryDirectory() as blobs, Journal.open(url, blobs=blobs) as journal:
        ours = measure(lambda: journal_run(journal), repeats=5)
    base = measure(bare, repeats=5)
    per_step_ms, base_ms = ours.median_s / STEPS * 1e3, base.median_s / STEPS * 1e3
    return row("P8 layer", f"{per_step_ms:.2f} ms/step", f"{base_ms:.2f} ms/step", per_step_ms / base_ms, "report", True,
               "journal writes alone (started + finished with the context) vs the same transactions with sqlite3")


def noop_run(journal: str | bool, executor: object | None = None) -> Callable[[], None]:
    """A fresh 100-step no-op run (in-process unless ``executor``), journaled to ``journal`` or not."""
    from p1_local_overhead import NoOp

    from synapse_steps import BaseStepContext, LocalExecutor, Orchestrator, RuntimeContext, StepRegistry

    registry: StepRegistry[BaseStepContext] = StepRegistry()
    for i in range(STEPS):
        registry.register(NoOp(i))

    def run() -> None:
        ctx = BaseStepContext(runtime_ctx=RuntimeContext())
        Orchestrator(registry, ctx, executor=executor or LocalExecutor(), journal=journal).execute()  # type: ignore[arg-type]

    return run


def wired(bench_id: str, url: str, target: str, limit_ms: float | None, note: str) -> str:
    """Journaled vs plain 100-step in-process runs, interleaved; the row reports the added ms per step."""
    plain, journaled = noop_run(False), noop_run(url)
    base, ours = measure(plain, repeats=5), measure(journaled, repeats=5)
    added_ms = (ours.median_s - base.median_s) / STEPS * 1e3
    met = limit_ms is None or added_ms <= limit_ms
    return row(bench_id, f"+{added_ms:.2f} ms/step", f"{base.median_s / STEPS * 1e3:.3f} ms/step",
               ours.median_s / base.median_s, target, met,
               f"whole {STEPS}-step no-op runs in-process, journaled {ours} vs plain {base}; {note}")


def on_ray(url: str) -> str:
    """Journaled vs plain 100-step runs on a fresh 2-CPU local Ray (3 each, alternating)."""
    import ray

    from ray_backend import RayExecutor
    from synapse_steps import ExecutorConfig

    as_installed()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        runs = {"plain": noop_run(False, RayExecutor(ExecutorConfig(executor="ray"))),
                "journaled": noop_run(url, RayExecutor(ExecutorConfig(executor="ray")))}
        runs["plain"]()  # warm-up: worker processes
        times: dict[str, list[float]] = {"plain": [], "journaled": []}
        for _ in range(3):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    finally:
        ray.shutdown()
    ours, base = statistics.median(times["journaled"]), statistics.median(times["plain"])
    return row("P8 Ray", f"{ours * 1e3:.0f} ms", f"{base * 1e3:.0f} ms", ours / base, "≤ 1.10×", ours / base <= 1.10,
               f"whole {STEPS}-step no-op run on Ray, journaled (SQLite) vs not; median of 3 each, alternating")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="journal URL of a Postgres to use (default: start a throwaway one)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray row")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(wired("P8 SQLite", f"sqlite:///{tmp}/runs.db", "≤ 1 ms/step added", 1.0, "WAL, synchronous=NORMAL"))
        rows.append(compare(f"sqlite:///{tmp}/layer.db", lambda: bare_sqlite(Path(tmp) / "b2.db")))
        if not args.no_ray:
            try:
                rows.append(on_ray(f"sqlite:///{tmp}/ray.db"))
            except Exception as exc:  # noqa: BLE001  (a bench reports, it does not fail)
                rows.append(f"| P8 Ray | – | – | – | ≤ 1.10× | not run | {type(exc).__name__}: {str(exc)[:120]} |")
    server = None
    url = args.postgres
    if url is None:
        from tests.postgres_server import PostgresServer, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            rows.append("| P8 Postgres | – | – | – | report | – | not run: no Postgres binaries and no --postgres URL |")
        else:
            server = PostgresServer(bin_dir).start()
            url = server.url()
    try:
        if url is not None:
            rows.append(wired("P8 Postgres", url, "report", None, "local server, default fsync"))
    finally:
        if server is not None:
            server.stop()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
