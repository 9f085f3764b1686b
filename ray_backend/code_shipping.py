"""Ship user code by value so workers need not import it.

Step and context classes defined in a ``__main__`` script, a notebook, a pytest test
module or any file outside an installed distribution cannot be imported on a
worker (Ray workers get only the driver's cwd on ``sys.path``). Registering those
modules with Ray's cloudpickle sends their classes and functions by value.
"""

from __future__ import annotations

import sys
import sysconfig
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

from ray import cloudpickle


@lru_cache(maxsize=1)
def _installed_top_level() -> frozenset[str]:
    return frozenset(metadata.packages_distributions())


@lru_cache(maxsize=1)
def _install_dirs() -> tuple[Path, ...]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple({Path(p).resolve() for p in (sysconfig.get_paths().get(n) for n in names) if p})


def is_user_module(module: ModuleType) -> bool:
    """True for Python source modules that no installed distribution provides.

    Installed code (site-packages, the standard library, editable installs) is
    importable on workers; compiled extension modules cannot travel by value.
    """
    name = getattr(module, "__name__", "")
    file = getattr(module, "__file__", None)
    if name == "__main__" or not file or not file.endswith(".py") or sys.modules.get(name) is not module:
        return False
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names or top in _installed_top_level():
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(d) for d in _install_dirs())


def ship_user_modules() -> list[str]:
    """Register every loaded user module for pickling by value; returns their names."""
    shipped = []
    for name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType) and is_user_module(module):
            cloudpickle.register_pickle_by_value(module)
            shipped.append(name)
    return shipped
