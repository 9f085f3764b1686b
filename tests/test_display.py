"""How a run looks to a person: the live bar in a real terminal (a pty), and
``action.run(show_progress=True)`` from Python, in a terminal and in a pipe."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPLOAD = f"{ROOT / 'examples' / 'upload' / 'action.py'}:DirectoryUploadAction"

pytestmark = pytest.mark.timeout(120)


def run_in_terminal(args: list[str], cwd: Path, interrupt_at: str | None = None) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; return (exit status, everything shown).

    With ``interrupt_at``, send a real SIGINT once that text has been shown, and require
    the process to end within 2 s of it.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    environment.update(COLUMNS="120", TERM="xterm")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []
    sent = None
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
        if interrupt_at and sent is None and interrupt_at in plain(b"".join(chunks).decode("utf-8", "replace")):
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
    os.close(controller)
    code = proc.wait(timeout=60)
    if interrupt_at:
        assert sent is not None, "never saw " + interrupt_at
        assert time.monotonic() - sent < 2.0
    return code, b"".join(chunks).decode("utf-8", "replace")


def plain(screen: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)


def test_the_live_bar_shows_the_step_counter_in_step_progress_and_eta(tmp_path):
    code, screen = run_in_terminal(
        [sys.executable, "-m", "synapse_steps.cli", "run", UPLOAD, "--destination", str(tmp_path / "up"),
         "--delay-s", "0.3"],
        cwd=tmp_path,
    )  # fmt: skip
    text = plain(screen)
    assert code == 0, text
    assert "step 2 of 3: upload 2/4" in text  # the step counter and the step's own progress
    assert re.search(r"eta \d:\d\d:\d\d", text)  # rich's time remaining
    assert "✓ done" in text and "✓ succeeded: 3/3 steps" in text
    assert "\x1b[?25h" in screen  # the cursor is shown again at the end


def test_ctrl_c_in_a_step_rolls_back_exits_130_and_restores_the_terminal(tmp_path):
    code, screen = run_in_terminal(
        [sys.executable, "-m", "synapse_steps.cli", "run", UPLOAD, "--destination", str(tmp_path / "up"),
         "--delay-s", "0.5"],
        cwd=tmp_path,
        interrupt_at="step 2 of 3: upload 2/4",
    )  # fmt: skip
    text = plain(screen)
    assert code == 130, text
    assert "✗ run failed: interrupted (received signal SIGINT)" in text
    assert "rolled back (last first): upload, collect" in text
    assert "rolled back (last first): upload, collect" in text
    assert "Traceback" not in text
    assert screen.rfind("\x1b[?25h") > screen.rfind("\x1b[?25l")  # the cursor is back
    assert not any((tmp_path / "up").rglob("*.*"))  # the uploaded files were deleted


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {upload_dir!r})
    from action import DirectoryUploadAction

    summary = DirectoryUploadAction({{"destination": {dest!r}}}).run(show_progress=True)
    print("summary", summary)
    """
)


def test_run_with_show_progress_prints_timestamped_lines_outside_a_terminal(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(upload_dir=str(ROOT / "examples" / "upload"), dest=str(tmp_path / "up")))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    for line in ("step 1 of 3: collect started", "step 3 of 3: verify succeeded in", "run succeeded at 100%"):
        assert re.search(rf"^{stamp} {line}", proc.stdout, re.M), proc.stdout
    assert "✓ succeeded: 3/3 steps" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "summary {'success': True, 'steps_executed': 3, 'steps_total': 3}"


def test_run_with_show_progress_draws_the_live_bar_in_a_terminal(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(upload_dir=str(ROOT / "examples" / "upload"), dest=str(tmp_path / "up")))
    code, screen = run_in_terminal([sys.executable, str(script)], cwd=tmp_path)
    text = plain(screen)
    assert code == 0, text
    assert "✓ done" in text and "100%" in text and "✓ succeeded: 3/3 steps" in text
    assert "summary {'success': True" in text
    assert "\x1b[?25h" in screen  # the cursor is shown again
