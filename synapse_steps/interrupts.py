"""Signals during a run: the first one interrupts, later ones never cut the unwinding short.

While the orchestrator runs (main thread only), SIGINT, SIGTERM and SIGHUP raise
``KeyboardInterrupt`` — SIGTERM is how a pod or a job is stopped, SIGHUP how a lost
terminal or SSH session ends a process, and by default either would kill the driver
with no rollback. Only the *first* signal interrupts. From then on the run is
unwinding (stopping the running step, then rolling back), and further signals are
counted, not raised: a second Ctrl-C must not skip the force-kill of a step that
ignores cancellation, nor abandon a rollback half-way. A third signal means the
user insists: it sets ``abandon``, which rollback waits poll (``check_abandon``
raises ``RollbackAbandoned`` at the next point where unwinding can stop safely,
never while a step is being stopped), and the run ends with
``RollbackIncompleteError`` listing what was not undone.

Handlers are installed only over Python's defaults or Ray's own (``ray.init``
installs one for SIGTERM), never over one the application installed, and the
previous handlers come back when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

# The count of signals (the first included) at which unwinding is abandoned.
ABANDON_AFTER = 3

_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP")


class RollbackAbandoned(BaseException):
    """The user sent a third signal: stop unwinding now. A BaseException, like
    ``KeyboardInterrupt``, so that ``except Exception`` in step code does not eat it."""


class InterruptGuard:
    """Per-run signal state: whether the run was interrupted, and whether to abandon unwinding.

    Executors read the guard of the run in their thread through ``current()``.
    """

    def __init__(self) -> None:
        self.signals: list[str] = []
        self.interrupted = False
        self.abandon = False
        self._unwinding = False
        self._critical = 0
        self._previous: dict[int, Any] = {}

    @property
    def reason(self) -> str:
        """Why the run stopped, for its result and messages: the first signal received."""
        return f"received signal {self.signals[0]}" if self.signals else "interrupted"

    def unwinding(self) -> None:
        """The run is rolling back: from now on signals are counted, never raised as interrupts."""
        self._unwinding = True

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section that must finish (stopping a step): signals inside it are only recorded.

        A first signal marks the run ``interrupted`` (checked right after), a third
        sets ``abandon``; neither is raised in the middle of the section.
        """
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.signals.append(name)
        first = not (self.interrupted or self._unwinding)
        self.interrupted = True
        if first:
            if self._critical == 0:
                raise KeyboardInterrupt(f"received signal {name}")
            return
        if len(self.signals) >= ABANDON_AFTER:
            # Only a flag: raising anything but KeyboardInterrupt inside Ray's C++ waits
            # turns into a SystemError. The waits poll it (``check_abandon``).
            self.abandon = True
            _say(f"synapse-steps: received {name} {len(self.signals)} times: abandoning the rollback\n")
            return
        _say(
            f"synapse-steps: received {name} again; the run is stopping its step and rolling back "
            f"(send it {ABANDON_AFTER - len(self.signals)} more time(s) to abandon the rollback)\n"
        )

    def check_abandon(self) -> None:
        """Raise ``RollbackAbandoned`` if the user insisted; called by rollback waits as they poll."""
        if self.abandon and self._critical == 0:
            raise RollbackAbandoned(f"received {len(self.signals)} signals: rollback abandoned")

    def install(self) -> None:
        """Take over the signals whose handler is a default or Ray's; again after ``ray.init``.

        ``ray.init`` installs its own handlers, so the orchestrator calls this once
        before and once after the executor starts; ``restore`` puts back the
        handlers found the first time.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for name in _SIGNAL_NAMES:
            signum = getattr(signal, name, None)
            if signum is None:
                continue  # SIGHUP does not exist on Windows
            current = signal.getsignal(signum)
            if current != self._handle and _replaceable(current):
                self._previous.setdefault(signum, current)
                signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the signal handlers that were installed before this run."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


_local = threading.local()


def current() -> InterruptGuard:
    """The guard of the run in this thread (a fresh, uninstalled one outside a run)."""
    guard = getattr(_local, "guard", None)
    return guard if guard is not None else InterruptGuard()


@contextlib.contextmanager
def guarded_run() -> Iterator[InterruptGuard]:
    """Install a guard for one run in this thread; restore the previous handlers after."""
    guard = InterruptGuard()
    outer = getattr(_local, "guard", None)
    _local.guard = guard
    guard.install()
    try:
        yield guard
    finally:
        guard.restore()
        _local.guard = outer


def _replaceable(handler: object) -> bool:
    """Python's defaults, or Ray's own (installed by ``ray.init``): not the application's."""
    if handler in (signal.SIG_DFL, signal.default_int_handler):
        return True
    return str(getattr(handler, "__module__", "")).startswith("ray.")


def _say(text: str) -> None:
    """Write from a signal handler: unbuffered, and silent if stderr is gone (SIGHUP)."""
    try:
        os.write(2, text.encode())
    except OSError:
        pass
