"""Fixtures for the journal tests: a URL per database kind, and runs left by crashed drivers.

Import the fixtures into a test module (``from tests.journal_fixtures import ...``).
Postgres is a real server started once per session (``tests/postgres_server.py``); where
no Postgres binaries exist, the Postgres cases skip and say so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, find_bin_dir

NO_POSTGRES = (
    "POSTGRES JOURNAL TESTS SKIPPED: no initdb on PATH nor under /usr/lib/postgresql/*/bin "
    "(install Debian's postgresql package; .ci/run does)"
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(NO_POSTGRES)
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def journal_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """An empty journal: a SQLite file in ``tmp_path``, or a fresh database on the test Postgres."""
    return empty_journal(request.param, request, tmp_path)


# For tests that parametrize the database themselves (e.g. to mark the Postgres case slow).
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]


def empty_journal(kind: str, request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The URL of an empty journal of ``kind`` (``sqlite`` or ``postgres``)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/runs.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


REGISTRY = "[StepEntry('load', 'pkg.steps:Load', 0.2), StepEntry('train', 'pkg.steps:Train', 0.6), StepEntry('save', 'pkg.steps:Save', 0.2)]"

_CRASH = """
import os, signal, sys
from synapse_steps.journal import Journal, StepEntry, StepStatus
journal = Journal.open(sys.argv[1], blobs=sys.argv[2])
run = journal.start_run(target="pkg.actions:Train", params={"epochs": 3}, registry=REGISTRY,
                        executor={"kind": "local"}, heartbeat_interval_s=0.5)
a = run.step_started("load", 0, node="node-a")
run.commit_context({"rows": 100}, step="load")
run.step_finished("load", a, StepStatus.SUCCEEDED, result={"rows": 100})
run.step_started("train", 1, node="node-a")
print(run.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the driver dies in the middle of step 2 of 3
"""


def crashed_run(url: str, blobs: str) -> str:
    """Run a real driver that journals step 1, starts step 2 and is SIGKILLed; return the run id."""
    script = _CRASH.replace("REGISTRY", REGISTRY)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), url, blobs], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.strip()
