"""A real, throwaway Postgres server for the journal tests and the P8 benchmark.

``initdb`` + ``pg_ctl start`` in a short folder under /tmp, on a free loopback port, with
its unix socket folder there too; stopped by the postmaster's pid. Postgres refuses to run
as root, so under root (CI) the server runs as ``nobody``, which owns the folder.
Binaries: ``initdb`` on PATH, else the newest ``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SERVER_USER = "nobody"  # used only when running as root
SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for a non-reaping pid 1 counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class PostgresServer:
    """One running Postgres; ``new_database()`` gives each test its own empty database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="sspg-", dir="/tmp"))  # unix socket paths must stay short
        self.port = _free_port()
        self.pid: int | None = None
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        # cwd: the server user may not be allowed into the caller's folder (initdb needs its cwd).
        done = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> PostgresServer:
        sock = self.root / "sock"
        sock.mkdir()
        if self._as_root:
            shutil.chown(self.root, SERVER_USER)
            shutil.chown(sock, SERVER_USER)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; return its journal URL."""
        import psycopg

        name = f"j_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), then remove the folder."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)
                deadline = time.monotonic() + 30
                while _running(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _running(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)
