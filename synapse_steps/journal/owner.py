"""Who owns a run, and whether that owner is still alive.

On the owner's host the answer is exact: is the process there, and is it the same process
(a pid can be reused; on Linux the boot id and the process start time in
``/proc/PID/stat`` tell them apart, for the price of two small file reads). From another
host only the heartbeat can tell: a run is presumed dead after three missed intervals.
Heartbeats are stamped with the writer's clock, so hosts sharing a journal need clocks in
sync (NTP) to well within an interval.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from synapse_steps.journal.records import Owner

MISSED_HEARTBEATS = 3


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (which may contain spaces), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _start_mark(pid: int) -> str | None:
    boot, fields = _boot_id(), _stat_fields(pid)
    if boot is None or fields is None:
        return None
    return f"{boot}:{fields[19]}"  # field 22 of stat: start time in clock ticks since boot


def current() -> Owner:
    """This process as a run owner."""
    pid = os.getpid()
    return Owner(host=socket.gethostname(), pid=pid, started=_start_mark(pid))


def _process_alive(owner: Owner) -> bool:
    fields = _stat_fields(owner.pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
            return False
        return owner.started is None or _start_mark(owner.pid) == owner.started
    try:
        os.kill(owner.pid, 0)  # no /proc: existence only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_alive(owner: Owner, heartbeat_at: float, interval_s: float, now: float) -> bool:
    """Whether the owner of a running run is still there (see the module docstring)."""
    if owner.host == socket.gethostname():
        return _process_alive(owner)
    return now - heartbeat_at <= MISSED_HEARTBEATS * interval_s
