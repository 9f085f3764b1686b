"""P8: run-journal overhead per no-op step, on SQLite and on Postgres.

Per step the driver makes the journal calls a step costs: ``step_started`` (before
dispatch), ``commit_context`` (a small context), ``step_finished``: three committed
transactions. Baseline: the same three transactions written with the bare driver
(sqlite3 / psycopg 3), so the ratio is what the journal layer adds over the database's own
commit cost. Postgres: ``--postgres URL``, else a throwaway server started here
(tests/postgres_server.py; needs initdb on PATH or under /usr/lib/postgresql/*/bin).
Target (issue 11): ≤ 1 ms per step on SQLite; Postgres is reported.
"""

from __future__ import annotations

import argparse
import pickle
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import measure, row

from synapse_steps.journal import Journal, StepEntry, StepStatus

STEPS = 100
REGISTRY = [StepEntry(f"noop-{i}", "bench:NoOp", 1.0) for i in range(STEPS)]
CONTEXT = {"rows": 100, "name": "digits", "scores": [0.1, 0.2, 0.3]}


def journal_run(journal: Journal) -> None:
    run = journal.start_run(target="bench:NoOpAction", params={}, registry=REGISTRY, executor={"kind": "local"})
    for order, entry in enumerate(REGISTRY):
        attempt = run.step_started(entry.name, order)
        run.commit_context(CONTEXT, step=entry.name)
        run.step_finished(entry.name, attempt, StepStatus.SUCCEEDED, result={})


def bare_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS a (run TEXT, step TEXT, status TEXT, t REAL)")
    conn.execute("CREATE TABLE IF NOT EXISTS c (run TEXT, seq INTEGER, data BLOB)")
    data = pickle.dumps(CONTEXT)
    for i in range(STEPS):
        for sql, args in (
            ("INSERT INTO a VALUES ('r', ?, 'STARTED', ?)", (f"s{i}", time.time())),
            ("INSERT INTO c VALUES ('r', ?, ?)", (i, data)),
            ("UPDATE a SET status = 'SUCCEEDED' WHERE run = 'r' AND step = ?", (f"s{i}",)),
        ):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, args)
            conn.execute("COMMIT")
    conn.close()


def bare_postgres(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS a (run TEXT, step TEXT, status TEXT, t DOUBLE PRECISION)")
        conn.execute("CREATE TABLE IF NOT EXISTS c (run TEXT, seq INTEGER, data BYTEA)")
        conn.commit()
        data = pickle.dumps(CONTEXT)
        for i in range(STEPS):
            for sql, args in (
                ("INSERT INTO a VALUES ('r', %s, 'STARTED', %s)", (f"s{i}", time.time())),
                ("INSERT INTO c VALUES ('r', %s, %s)", (i, data)),
                ("UPDATE a SET status = 'SUCCEEDED' WHERE run = 'r' AND step = %s", (f"s{i}",)),
            ):
                conn.execute(sql, args)
                conn.commit()


def compare(bench_id: str, url: str, bare: object, target: str, limit_ms: float | None, note: str) -> str:
    with tempfile.TemporaryDirectory() as blobs, Journal.open(url, blobs=blobs) as journal:
        ours = measure(lambda: journal_run(journal), repeats=5)
    base = measure(bare, repeats=5)  # type: ignore[arg-type]
    per_step_ms, base_ms = ours.median_s / STEPS * 1e3, base.median_s / STEPS * 1e3
    met = limit_ms is None or per_step_ms <= limit_ms
    return row(bench_id, f"{per_step_ms:.2f} ms/step", f"{base_ms:.2f} ms/step", per_step_ms / base_ms, target, met,
               f"{STEPS} no-op steps: started + context commit + finished; {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="journal URL of a Postgres to use (default: start a throwaway one)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(compare("P8 SQLite", f"sqlite:///{tmp}/runs.db", lambda: bare_sqlite(Path(tmp) / "bare.db"),
                            "≤ 1 ms/step", 1.0, "baseline: the same 3 transactions with sqlite3 (WAL, synchronous=NORMAL)"))
    server = None
    url = args.postgres
    if url is None:
        from tests.postgres_server import PostgresServer, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            rows.append("| P8 Postgres | – | – | – | report | – | skipped: no Postgres binaries and no --postgres URL |")
        else:
            server = PostgresServer(bin_dir).start()
            url = server.url()
    try:
        if url is not None:
            rows.append(compare("P8 Postgres", url, lambda: bare_postgres(url), "report", None,
                                "baseline: the same 3 transactions with psycopg 3; local server, default fsync"))
    finally:
        if server is not None:
            server.stop()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
