"""Where and how the journal stores: URLs and the default location, SQLite locking, migrations, blobs, VACUUM."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import MetaData, inspect, select, text

from synapse_steps.journal import Journal, JournalError, RunStatus, StepEntry, default_url, schema
from synapse_steps.journal.blobs import FsspecBlobStore, LocalBlobStore, digest_of
from synapse_steps.journal.engine import create as create_engine_for
from synapse_steps.journal.location import parse_url
from synapse_steps.journal.migrations import MIGRATIONS, Migration, migrate
from tests.journal_fixtures import journal_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)
STEPS = [StepEntry("load", "pkg.steps:Load", 1.0)]


def start(journal: Journal) -> str:
    return journal.start_run(target="t:T", params={}, registry=STEPS, executor={}).run_id


# -- location ------------------------------------------------------------------------------


def test_default_location_follows_xdg_state_home_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SYNAPSE_STEPS_JOURNAL", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_url() == f"sqlite:///{tmp_path}/state/synapse-steps/runs.db"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path}/home/.local/state/synapse-steps/runs.db"
    monkeypatch.setenv("SYNAPSE_STEPS_JOURNAL", "sqlite:////elsewhere/runs.db")
    assert default_url() == "sqlite:////elsewhere/runs.db"


def test_open_without_url_creates_the_default_file_and_blobs_beside_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SYNAPSE_STEPS_JOURNAL", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with Journal.open() as journal:
        run = journal.start_run(target="t:T", params={}, registry=STEPS, executor={})
        run.commit_context({"big": b"x" * (1 << 20)})
        assert journal.url == f"sqlite:///{tmp_path}/state/synapse-steps/runs.db"
        assert journal.blobs == f"{tmp_path}/state/synapse-steps/runs.db.blobs"
    assert (tmp_path / "state/synapse-steps/runs.db").is_file()
    assert len([p for p in Path(journal.blobs).rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "journal URL 'not a url' does not parse; use sqlite:///PATH or postgresql+psycopg://..."),
        ("mysql://u@h/db", "journal URL 'mysql://u@h/db': unsupported database 'mysql'; use sqlite:///PATH or postgresql+psycopg://..."),
        ("sqlite://", "journal URL 'sqlite://' names no file: an in-memory journal would not outlive the driver"),
        ("sqlite:////no/such/folder/runs.db", "journal URL 'sqlite:////no/such/folder/runs.db': folder '/no/such/folder' does not exist"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(JournalError) as info:
        Journal.open(url)
    assert str(info.value) == message


@pytest.mark.slow
def test_a_postgres_that_does_not_answer_fails_within_the_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts TCP connections (backlog) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(JournalError) as info:
            Journal.open(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db", connect_timeout_s=1)
        elapsed = time.monotonic() - began
    message = str(info.value)
    assert message.startswith(f"journal postgresql+psycopg://u:***@127.0.0.1:{port}/db does not answer: "), message
    assert "\n" not in message and "secret" not in message
    assert elapsed < 10


def test_a_refused_postgres_port_is_named(postgres_server) -> None:  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(JournalError, match=rf"^journal postgresql\+psycopg://postgres@127.0.0.1:{port}/x does not answer: "):
        Journal.open(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")


# -- SQLite settings and locking -----------------------------------------------------------


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    with Journal.open(f"sqlite:///{tmp_path}/runs.db", busy_timeout_s=7) as journal, journal._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_writer_waits_for_the_lock_up_to_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)  # another process's writer
    with Journal.open(f"sqlite:///{db}", busy_timeout_s=0.3) as journal:
        run = journal.start_run(target="t:T", params={}, registry=STEPS, executor={})
        holder.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        with pytest.raises(JournalError, match=r"^journal sqlite:///\S+: recording the start of step 'load' failed: database is locked$"):
            run.step_started("load", 0)
        assert 0.25 < time.monotonic() - began < 5
        holder.rollback()
    with Journal.open(f"sqlite:///{db}", busy_timeout_s=5) as journal:
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, holder.rollback).start()  # released within the timeout: the write waits, then goes through
        began = time.monotonic()
        run = journal.take_over(run.run_id, allowed={RunStatus.RUNNING})
        assert run.step_started("load", 0) == 1
        assert time.monotonic() - began > 0.25
    holder.close()


def test_prune_vacuums_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with Journal.open(f"sqlite:///{db}") as journal:
        for _ in range(3):
            run = journal.start_run(target="t:T", params={}, registry=STEPS, executor={})
            run.commit_context({"rows": list(range(20_000))})  # inline (< 1 MiB), fills pages
            run.finish(RunStatus.SUCCEEDED)
        assert len(journal.prune(older_than_s=0)) == 3
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM context_commits").fetchone() == (0,)
    conn.close()


# -- migrations ------------------------------------------------------------------------------


def _version(url: str) -> list[int]:
    engine = create_engine_for(parse_url(url))
    with engine.connect() as conn:
        versions = [r.version for r in conn.execute(select(schema.schema_version).order_by(schema.schema_version.c.version))]
    engine.dispose()
    return versions


def test_a_new_journal_is_at_the_latest_version(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    Journal.open(journal_url, blobs=str(tmp_path)).close()
    assert _version(journal_url) == [m.version for m in MIGRATIONS] == [1, 2]
    assert schema.VERSION == 2
    Journal.open(journal_url, blobs=str(tmp_path)).close()  # reopening changes nothing
    assert _version(journal_url) == [1, 2]


def test_a_version_1_journal_is_upgraded_on_open_and_keeps_its_runs(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    parsed = parse_url(journal_url)
    engine = create_engine_for(parsed)
    assert migrate(engine, parsed, MIGRATIONS[:1]) == 1  # what synapse-steps wrote before runs had metrics
    v1_runs = schema.define(MetaData(), 1).tables["runs"]
    with engine.connect() as conn:
        assert "metrics" not in {c["name"] for c in inspect(conn).get_columns("runs")}
    with engine.begin() as conn:
        row = {c.name: 0 for c in v1_runs.columns if not c.nullable}
        row.update(run_id="old", target="t:T", params={}, registry=[], fingerprint="f", executor={}, status="succeeded", owner_host="h")
        conn.execute(v1_runs.insert().values(**row))
    engine.dispose()
    with Journal.open(journal_url, blobs=str(tmp_path)) as journal:
        assert _version(journal_url) == [1, 2]
        assert [(r.run_id, r.metrics) for r in journal.list_runs()] == [("old", None)]
        run = journal.start_run(target="t:T", params={}, registry=STEPS, executor={})
        run.finish(RunStatus.SUCCEEDED, metrics={"train": {"accuracy": 0.97}, "odd": {1, 2}})
        assert journal.get_run(run.run_id).metrics == {"train": {"accuracy": 0.97}, "odd": "{1, 2}"}


def test_a_newer_schema_is_refused_untouched(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    with Journal.open(journal_url, blobs=str(tmp_path)) as journal:
        run_id = start(journal)
    engine = create_engine_for(parse_url(journal_url))
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=7, applied_at=0.0))
    engine.dispose()
    with pytest.raises(JournalError) as info:
        Journal.open(journal_url, blobs=str(tmp_path))
    shown = parse_url(journal_url).render_as_string(hide_password=True)
    assert str(info.value) == (
        f"journal {shown} has schema version 7, newer than this synapse-steps knows (2): upgrade synapse-steps to use it"
    )
    assert _version(journal_url) == [1, 2, 7]
    engine = create_engine_for(parse_url(journal_url))
    with engine.connect() as conn:
        assert [r.run_id for r in conn.execute(select(schema.runs.c.run_id))] == [run_id]
    engine.dispose()


def test_migrations_apply_in_order_and_a_failing_one_changes_nothing(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    Journal.open(journal_url, blobs=str(tmp_path)).close()
    parsed = parse_url(journal_url)
    engine = create_engine_for(parsed)

    def add_table(conn):  # type: ignore[no-untyped-def]
        conn.execute(text("CREATE TABLE run_tags (run_id VARCHAR(64) NOT NULL, tag TEXT NOT NULL)"))

    def broken(conn):  # type: ignore[no-untyped-def]
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("SELECT no_such_column FROM runs"))

    with pytest.raises(JournalError, match=r"migrating the schema to version 4 failed: "):
        migrate(engine, parsed, [*MIGRATIONS, Migration(3, "tags", add_table), Migration(4, "broken", broken)])
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert _version(journal_url) == [1, 2]
    assert "run_tags" not in tables and "half_done" not in tables  # one transaction: all or nothing

    assert migrate(engine, parsed, [*MIGRATIONS, Migration(3, "tags", add_table)]) == 3
    with engine.connect() as conn:
        assert "run_tags" in inspect(conn).get_table_names()
    assert _version(journal_url) == [1, 2, 3]
    engine.dispose()
    with pytest.raises(JournalError, match=r"has schema version 3, newer than this synapse-steps knows \(2\)"):
        Journal.open(journal_url, blobs=str(tmp_path))


# -- blobs -----------------------------------------------------------------------------------


def test_local_blobs_are_sha256_named_checked_and_written_atomically(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"weights" * 1000
    digest = store.put(data)
    assert digest == digest_of(data) and store.put(data) == digest
    path = tmp_path / "blobs" / digest[:2] / digest
    assert path.read_bytes() == data and store.get(digest) == data
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temporary file left behind
    path.write_bytes(b"tampered")
    with pytest.raises(JournalError, match=rf"^blob {digest} in {tmp_path}/blobs is corrupt \(its content does not match its sha256\)$"):
        store.get(digest)
    store.delete(digest)
    with pytest.raises(JournalError, match=rf"^blob {digest} is missing from {tmp_path}/blobs$"):
        store.get(digest)


def test_fsspec_blobs_round_trip(journal_url: str) -> None:  # noqa: F811
    url = f"memory://journal-blobs-{time.monotonic_ns()}"
    store = FsspecBlobStore(url)
    digest = store.put(b"abc")
    assert store.get(digest) == b"abc" and store.fs.ls(f"{store.root}/{digest[:2]}", detail=False) == [f"{store.root}/{digest[:2]}/{digest}"]
    with Journal.open(journal_url, blobs=url) as journal:
        run = journal.start_run(target="t:T", params={}, registry=STEPS, executor={})
        big = b"y" * (2 << 20)
        run.commit_context({"big": big})
        assert journal.blobs == url and journal.load_context(run.run_id) == {"big": big}


def test_fsspec_missing_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['fsspec'] = None\n"
        "from synapse_steps.journal.blobs import open_store\n"
        "from synapse_steps.journal import JournalError\n"
        "try:\n    open_store('s3://bucket/blobs')\nexcept JournalError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout == "blob store 's3://bucket/blobs' needs fsspec: pip install \"synapse-steps[blobs]\"\n", out.stderr


def test_concurrent_first_opens_create_the_schema_once(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            Journal.open(journal_url, blobs=str(tmp_path)).close()
        except BaseException as exc:  # noqa: BLE001  (collected, asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert _version(journal_url) == [1, 2]


def test_an_unwritable_blob_store_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = LocalBlobStore(tmp_path / "file" / "blobs")
    with pytest.raises(JournalError, match=rf"^blob store {tmp_path}/file/blobs: cannot write: "):
        store.put(b"x")


def test_list_limit_zero_and_long_run_ids(tmp_path: Path) -> None:
    with Journal.open(f"sqlite:///{tmp_path}/runs.db") as journal:
        start(journal)
        assert journal.list_runs(limit=0) == [] and len(journal.list_runs(limit=1)) == 1
        with pytest.raises(JournalError, match=r"^run id 'xxxxxxxxxxxxxxxxxxxx'... is longer than 64 characters$"):
            journal.start_run(run_id="x" * 65, target="t:T", params={}, registry=STEPS, executor={})
