"""P8: run-journal overhead per no-op step, on SQLite and on Postgres, and its share of a Ray run.

Per step the driver makes the journal calls a step costs: ``step_started`` (before
dispatch), then ``step_finished`` with the context after the step (two committed
writes); the "3 writes" row makes the commit a separate ``commit_context`` (as a step
calling ``ctx.commit()`` would). Baseline: the same transactions written with the bare
driver (sqlite3 / psycopg 3), so the ratio is what the journal layer adds over the
database's own commit cost. "P8 share" divides 100 steps of SQLite journal writes by a
whole 100-step no-op run on a fresh 2-CPU local Ray (Orchestrator + RayExecutor, as P2).
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
from common import Timing, measure, row

from synapse_steps.journal import Journal, StepEntry, StepStatus

STEPS = 100
REGISTRY = [StepEntry(f"noop-{i}", "bench:NoOp", 1.0) for i in range(STEPS)]
CONTEXT = {"rows": 100, "name": "digits", "scores": [0.1, 0.2, 0.3]}
STARTED = "INSERT INTO a VALUES ('r', {p}, 'STARTED', {p})"
COMMIT = "INSERT INTO c VALUES ('r', {p}, {p})"
FINISHED = "UPDATE a SET status = 'SUCCEEDED' WHERE run = 'r' AND step = {p}"


def journal_run(journal: Journal, writes: int) -> None:
    run = journal.start_run(target="bench:NoOpAction", params={}, registry=REGISTRY, executor={"kind": "local"})
    for order, entry in enumerate(REGISTRY):
        attempt = run.step_started(entry.name, order)
        if writes == 3:
            run.commit_context(CONTEXT, step=entry.name)
            run.step_finished(entry.name, attempt, StepStatus.SUCCEEDED, result={})
        else:
            run.step_finished(entry.name, attempt, StepStatus.SUCCEEDED, result={}, context=CONTEXT)


def bare_transactions(i: int, writes: int, data: bytes, p: str) -> list[list[tuple[str, tuple[object, ...]]]]:
    """The statements of step ``i`` grouped into ``writes`` transactions (``p``: the driver's placeholder)."""
    started = (STARTED.format(p=p), (f"s{i}", time.time()))
    commit = (COMMIT.format(p=p), (i, data))
    finished = (FINISHED.format(p=p), (f"s{i}",))
    return [[started], [commit], [finished]] if writes == 3 else [[started], [commit, finished]]


def bare_sqlite(path: Path, writes: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS a (run TEXT, step TEXT, status TEXT, t REAL)")
    conn.execute("CREATE TABLE IF NOT EXISTS c (run TEXT, seq INTEGER, data BLOB)")
    data = pickle.dumps(CONTEXT)
    for i in range(STEPS):
        for transaction in bare_transactions(i, writes, data, "?"):
            conn.execute("BEGIN IMMEDIATE")
            for sql, args in transaction:
                conn.execute(sql, args)
            conn.execute("COMMIT")
    conn.close()


def bare_postgres(url: str, writes: int) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS a (run TEXT, step TEXT, status TEXT, t DOUBLE PRECISION)")
        conn.execute("CREATE TABLE IF NOT EXISTS c (run TEXT, seq INTEGER, data BYTEA)")
        conn.commit()
        data = pickle.dumps(CONTEXT)
        for i in range(STEPS):
            for transaction in bare_transactions(i, writes, data, "%s"):
                for sql, args in transaction:
                    conn.execute(sql, args)
                conn.commit()


def compare(bench_id: str, url: str, writes: int, bare: Callable[[], None], target: str, limit_ms: float | None,
            note: str) -> tuple[str, Timing]:
    with tempfile.TemporaryDirectory() as blobs, Journal.open(url, blobs=blobs) as journal:
        ours = measure(lambda: journal_run(journal, writes), repeats=5)
    base = measure(bare, repeats=5)
    per_step_ms, base_ms = ours.median_s / STEPS * 1e3, base.median_s / STEPS * 1e3
    met = limit_ms is None or per_step_ms <= limit_ms
    calls = "started + commit_context + finished" if writes == 3 else "started + finished(context=...)"
    return row(bench_id, f"{per_step_ms:.2f} ms/step", f"{base_ms:.2f} ms/step", per_step_ms / base_ms, target, met,
               f"{STEPS} no-op steps, {calls}; {note}"), ours


def ray_run_s() -> float:
    """Median wall time of a 100-step no-op run on Ray (fresh 2-CPU local Ray, 3 runs)."""
    import ray
    from p1_local_overhead import NoOp

    from ray_backend import RayExecutor
    from synapse_steps import BaseStepContext, ExecutorConfig, Orchestrator, RuntimeContext, StepRegistry

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        times = []
        for _ in range(3):
            registry: StepRegistry = StepRegistry()
            for i in range(STEPS):
                registry.register(NoOp(i))
            start = time.perf_counter()
            Orchestrator(registry, BaseStepContext(runtime_ctx=RuntimeContext()),
                         executor=RayExecutor(ExecutorConfig(executor="ray"))).execute()
            times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="journal URL of a Postgres to use (default: start a throwaway one)")
    parser.add_argument("--no-ray", action="store_true", help="skip the share-of-a-Ray-run row")
    args = parser.parse_args()
    rows = []
    sqlite_note = "baseline: the same transactions with sqlite3 (WAL, synchronous=NORMAL)"
    with tempfile.TemporaryDirectory() as tmp:
        line, sqlite_run = compare("P8 SQLite", f"sqlite:///{tmp}/runs.db", 2, lambda: bare_sqlite(Path(tmp) / "b2.db", 2),
                                   "≤ 1 ms/step", 1.0, sqlite_note)
        rows.append(line)
        rows.append(compare("P8 SQLite 3 writes", f"sqlite:///{tmp}/runs3.db", 3,
                            lambda: bare_sqlite(Path(tmp) / "b3.db", 3), "≤ 1 ms/step", 1.0, sqlite_note)[0])
    if not args.no_ray:
        try:
            whole = ray_run_s()
            share = sqlite_run.median_s / whole
            rows.append(row("P8 share", f"{sqlite_run.median_s * 1e3:.0f} ms", f"{whole * 1e3:.0f} ms", share, "≤ 0.10×",
                            share <= 0.10, f"SQLite journal writes of {STEPS} steps vs a whole {STEPS}-step no-op Ray run"))
        except Exception as exc:  # noqa: BLE001  (a bench reports, it does not fail)
            rows.append(f"| P8 share | – | – | – | ≤ 0.10× | not run | {type(exc).__name__}: {str(exc)[:120]} |")
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
            pg_url = url
            rows.append(compare("P8 Postgres", pg_url, 2, lambda: bare_postgres(pg_url, 2), "report", None,
                                "baseline: the same transactions with psycopg 3; local server, default fsync")[0])
    finally:
        if server is not None:
            server.stop()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
