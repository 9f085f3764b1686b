"""Ctrl-C before the first step starts ends the command within about half a second.

Python runs a signal handler only between bytecodes, and ``ray.init`` can sit in C code
for seconds while it starts a local Ray, so ``KeyboardInterrupt`` may come late. The C
handler does write each signal number to the wakeup fd at once, so a thread watching that
fd sees the Ctrl-C at once; if the run has still not unwound ``grace_s`` later and no step
has started (nothing to roll back), the command restores the terminal and exits 130.
The processes the command started (a local Ray's raylet, GCS and agents) are killed
first, so none outlives it. Once a step has started, Ctrl-C keeps its meaning: stop,
roll back, exit 130; after that unwinding, ``exit_now`` likewise skips the seconds
``ray.shutdown`` would take at interpreter exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn

EXIT_INTERRUPTED = 130


class StartupInterrupt:
    """While entered, a Ctrl-C with ``steps_started() == 0`` hard-exits after ``grace_s``."""

    def __init__(self, steps_started: Callable[[], int], on_abort: Callable[[], None], grace_s: float = 0.5) -> None:
        self._steps_started = steps_started
        self._on_abort = on_abort
        self._grace_s = grace_s
        self._done = threading.Event()
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._previous_fd = -1

    def __enter__(self) -> StartupInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals are delivered to the main thread only
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._sockets = (reader, writer)
        self._previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(reader,), name="synapse-steps-interrupt", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        if self._sockets is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._sockets[1].close()  # the watching thread reads EOF, closes its end and ends
            self._sockets = None

    def _watch(self, reader: socket.socket) -> None:
        with reader:
            while data := reader.recv(64):
                if signal.SIGINT not in data or self._steps_started() > 0:
                    continue
                if not self._done.wait(self._grace_s) and self._steps_started() == 0:
                    self._on_abort()
                    exit_now(EXIT_INTERRUPTED)


def exit_now(code: int) -> NoReturn:
    """End the process at once, with the processes it started (a local Ray's raylet, GCS,
    agents): no ``atexit`` handlers, so no ``ray.shutdown`` that can take seconds."""
    sys.stdout.flush()
    sys.stderr.flush()
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os._exit(code)


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (children first), from ``/proc``; empty where there is none."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found
