"""The runnable examples run as programs, so they cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.timeout(120)


def test_quickstart_runs_and_prints_its_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=tmp_path,  # not the repository root: the example must not depend on cwd
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        "{'success': True, 'steps_executed': 2, 'steps_total': 2} processed=10"
    )
    assert "Traceback" not in proc.stderr
