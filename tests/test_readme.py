"""The README's quick start stays true: two commands, CI runs the second verbatim, and the
first names files and extras that exist (the CLI tests run that same train action)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Quick start section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    install_and_run, install_and_test = _quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci, ".ci/run must run the README's test command verbatim"
    assert install_and_run.startswith('pip install ".[') and "synapse-steps run" in install_and_run


def test_the_main_job_names_real_files_and_extras() -> None:
    install_and_run, install_and_test = _quick_start_commands()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for command in (install_and_run, install_and_test):
        wanted = re.search(r'pip install "\.\[([a-z,]+)\]"', command)
        assert wanted and set(wanted.group(1).split(",")) <= extras
    target = re.search(r"run (\S+):(\w+)", install_and_run)
    config = re.search(r"--config (\S+)", install_and_run)
    assert target and config
    assert (ROOT / target.group(1)).is_file() and f"class {target.group(2)}(" in (ROOT / target.group(1)).read_text()
    assert (ROOT / config.group(1)).is_file()
