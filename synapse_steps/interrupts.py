"""SIGTERM treated like Ctrl-C while a run is in progress, so both end in a rollback.

Python's default SIGTERM ends the process without unwinding: no rollback, and on
Ray the running step keeps going. During ``Orchestrator.execute`` (main thread
only, and only when nobody installed their own handler) SIGTERM raises
``KeyboardInterrupt`` instead; the previous handler is restored afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
