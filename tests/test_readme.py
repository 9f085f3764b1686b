"""The README stays true: the quick start's two commands (CI runs the second verbatim; the
first names files and extras that exist) and the "Write your own action" code, run as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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


# --- "Write your own action": the code runs as written ------------------------------------


def _section(title: str) -> str:
    return (ROOT / "README.md").read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.fixture
def word_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The section's first block saved as ``word_count.py`` in a fresh working directory."""
    action_code, run_code = _blocks(_section("Write your own action"), "python")
    (tmp_path / "word_count.py").write_text(action_code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield run_code
    sys.modules.pop("word_count", None)


@pytest.mark.timeout(120)
def test_write_your_own_action_runs_from_python_on_both_executors(word_count, tmp_path, ray_session, capsys):
    code = compile(word_count, "README.md (Write your own action)", "exec")
    exec(code, {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ step 3 of 3: write succeeded", out, re.M), out
    assert "write " in out.splitlines()[-1] and "No such file or directory" in out.splitlines()[-1]
    assert json.loads((tmp_path / "counts.json").read_text()) == {"the": 3}  # the Ray run's top=1


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(240)
def test_write_your_own_action_runs_from_the_command_line(word_count, tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    environment.pop("RAY_ADDRESS", None)
    [commands] = _blocks(_section("Write your own action"), "bash")
    outputs = []
    for line in commands.splitlines():
        command, _, comment = line.partition("#")
        args = shlex.split(command)
        assert args[0] == "synapse-steps"
        expected = int(comment.split("exit ", 1)[1].split(":")[0]) if "exit " in comment else 0
        proc = subprocess.run(
            [sys.executable, "-m", "synapse_steps.cli", *args[1:]],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode == expected, f"{line}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc)
    help_text = " ".join(outputs[0].stdout.split())
    for option in ("--text TEXT Text whose words are counted.", "--output TEXT", "--top INTEGER How many"):
        assert option in help_text
    assert "result [write] path=" in outputs[1].stdout
    assert json.loads((tmp_path / "counts.json").read_text()) == {"the": 3}  # the Ray run's --param top=1
    assert "params.top: Input should be greater than or equal to 1 (got '0')" in outputs[3].stdout
