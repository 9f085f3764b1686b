"""The working directory a submitted run takes to the cluster, sized before anything is uploaded.

Ray zips ``runtime_env["working_dir"]`` and uploads it through the dashboard; a zip over
its limit (``GCS_STORAGE_MAX_SIZE``: the gRPC message limit, 512 MiB in Ray 2.60,
``RAY_max_grpc_message_size`` overrides it) fails only after zipping, with a stack trace.
``check_working_dir`` refuses first, in one line that names the biggest entries.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ray._private.runtime_env import packaging

from synapse_steps.errors import StepsError

# Never uploaded: version control, virtualenvs, the run's own outputs, caches.
EXCLUDED_NAMES = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "artifacts",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    "node_modules",
    "*.egg-info",
    ".ipynb_checkpoints",
)


class WorkingDirError(StepsError):
    """The working directory cannot be submitted (missing, or over Ray's upload limit)."""


def upload_limit() -> int:
    """Ray's own limit on a package's size, read from Ray (so ``RAY_max_grpc_message_size`` counts)."""
    return int(packaging.GCS_STORAGE_MAX_SIZE)


def _fixed_exclude(name: str) -> bool:
    return name in EXCLUDED_NAMES or name.endswith(".egg-info")


def scan(directory: Path) -> tuple[list[str], dict[str, int]]:
    """Ray's ``excludes`` (gitwildmatch: the fixed names at any depth, and every virtualenv,
    i.e. a directory holding ``pyvenv.cfg``, whatever its name) and the bytes per top-level
    entry of what they leave."""
    patterns = [f"{name}/" if "*" not in name else name for name in EXCLUDED_NAMES]
    sizes: dict[str, int] = {}
    for root, dirs, files in os.walk(directory):
        rel_root = Path(root).relative_to(directory)
        if "pyvenv.cfg" in files and rel_root.parts:
            patterns.append(f"/{rel_root.as_posix()}/")
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not _fixed_exclude(d)]
        for name in files:
            top = (rel_root / name).parts[0]
            try:
                sizes[top] = sizes.get(top, 0) + (Path(root) / name).lstat().st_size
            except OSError:
                continue  # vanished meanwhile
    return patterns, sizes


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def check_working_dir(directory: str | os.PathLike[str]) -> tuple[Path, list[str], int]:
    """The directory (absolute), its excludes and its size in bytes; raises ``WorkingDirError``
    when it is missing or what remains after the excludes is over Ray's upload limit.

    The files are summed first; only when that sum is over the limit is the directory
    zipped as Ray would (its ``.gitignore`` rules and compression included) to decide.
    """
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise WorkingDirError(f"working dir {root} is not a directory")
    excludes, sizes = scan(root)
    total, limit = sum(sizes.values()), upload_limit()
    if total < limit:
        return root, excludes, total
    with tempfile.TemporaryDirectory(prefix="synapse-steps-") as tmp:
        zipped = Path(tmp) / "package.zip"
        packaging.create_package(
            str(root), zipped, include_gitignore=True, excludes=excludes, logger=None
        )
        size = zipped.stat().st_size
    if size < limit:
        return root, excludes, size
    biggest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
    raise WorkingDirError(
        f"working dir {root} is {_mib(size)} zipped after excludes, over Ray's upload limit of {_mib(limit)}; "
        f"largest: {', '.join(f'{name} {_mib(n)}' for name, n in biggest)} "
        "(list them in .gitignore or .rayignore, or pass a smaller --working-dir); nothing was submitted"
    )
