"""``synapse-steps``: run or check an action from the command line (``python -m synapse_steps.cli``)."""

from __future__ import annotations

from synapse_steps.cli.app import app, main

__all__ = ["app", "main"]
