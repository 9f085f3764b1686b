"""How a run looks to a person: a live bar in a terminal, timestamped lines anywhere else.

Both are ``synapse_steps.watch.Reporter`` implementations; ``action.run(show_progress=True)``
picks one with ``view_for_stdout`` and the ``synapse-steps`` command does the same.
"""

from __future__ import annotations

import sys

from synapse_steps.display.live import LiveView
from synapse_steps.display.plain import PlainView

__all__ = ["LiveView", "PlainView", "view_for_stdout"]


def view_for_stdout(progress_every_s: float = 30.0) -> LiveView | PlainView:
    """The live bar when stdout is a terminal; otherwise (CI, a pipe, ``nohup``) plain lines."""
    return LiveView() if sys.stdout.isatty() else PlainView(sys.stdout, progress_every_s=progress_every_s)
