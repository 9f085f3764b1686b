"""SIGTERM treated like Ctrl-C while steps run, so both end in a rollback.

Python's default SIGTERM ends the process without unwinding, and the handler
``ray.init`` installs raises ``SystemExit`` — either way no rollback, and on Ray the
running step keeps going. While the orchestrator runs steps (main thread only)
SIGTERM raises ``KeyboardInterrupt`` instead, unless the application installed a
handler of its own; the previous handler is restored afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def _replaceable(handler: object) -> bool:
    """Python's default, or Ray's own (installed by ``ray.init``): not the application's."""
    if handler is signal.SIG_DFL:
        return True
    return str(getattr(handler, "__module__", "")).startswith("ray.")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not _replaceable(previous):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
