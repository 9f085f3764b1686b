"""Per-process state that every copy of this package's modules shares.

When workers cannot import this package (a checkout, not an installed distribution),
its functions travel by value and each one brings its own copy of the module globals.
State that must be one per worker process — the runtime of the step running there, what
runtime factories built, the run constants already loaded — lives in a namespace found
by name in ``sys.modules`` instead.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_NAME = "ray_backend.process_slots.shared"


def shared() -> Any:
    """This process's namespace: ``active`` (a runtime or None), ``built`` and ``constants`` (dicts)."""
    slots = sys.modules.get(_NAME)
    if slots is None:
        fresh: Any = types.ModuleType(_NAME)
        fresh.active = None  # the runtime of the step running in this process (one at a time)
        fresh.built = {}  # (run key, attribute) -> what its factory returned
        fresh.constants = {}  # run constants' object id -> the constants, oldest first
        slots = sys.modules.setdefault(_NAME, fresh)
    return slots
