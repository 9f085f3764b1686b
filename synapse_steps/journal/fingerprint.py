"""The registry's fingerprint: what a resume checks before re-running a journaled run.

Two registries match when they list the same step names, classes and weights in the same
order; anything else (a step added, renamed, moved or reweighted) changes the digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from synapse_steps.journal.records import StepEntry
from synapse_steps.step import BaseStep


def entries_of(steps: Iterable[BaseStep[Any]]) -> tuple[StepEntry, ...]:
    """Entries for registered steps (``registry.get_steps()``): name, ``module:QualName``, weight."""
    return tuple(
        StepEntry(step.name, f"{type(step).__module__}:{type(step).__qualname__}", float(step.progress_weight))
        for step in steps
    )


def fingerprint(entries: Sequence[StepEntry]) -> str:
    """sha256 of the ordered (name, class, weight) list."""
    canonical = json.dumps([[e.name, e.cls, e.weight] for e in entries], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
