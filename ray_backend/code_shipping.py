"""Ship user code by value so workers need not import it.

Step and context classes defined in a ``__main__`` script, a notebook, a pytest test
module or any file outside an installed distribution cannot be imported on a
worker (Ray workers get only the driver's cwd on ``sys.path``). Registering those
modules with Ray's cloudpickle sends their classes and functions by value.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib import metadata
from types import ModuleType

from ray import cloudpickle


@lru_cache(maxsize=1)
def _installed_top_level() -> frozenset[str]:
    return frozenset(metadata.packages_distributions())


def is_user_module(module: ModuleType) -> bool:
    """True for modules loaded from files that belong to no installed distribution."""
    name = getattr(module, "__name__", "")
    top = name.partition(".")[0]
    if name == "__main__" or not getattr(module, "__file__", None):
        return False
    return top not in sys.stdlib_module_names and top not in _installed_top_level()


def ship_user_modules() -> list[str]:
    """Register every loaded user module for pickling by value; returns their names."""
    shipped = []
    for name, module in list(sys.modules.items()):
        if isinstance(module, ModuleType) and is_user_module(module):
            cloudpickle.register_pickle_by_value(module)
            shipped.append(name)
    return shipped
