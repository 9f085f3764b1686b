"""Connecting to Ray: start a local one, or join a cluster — and own only what we started."""

from __future__ import annotations

import logging
import os
import socket
import threading

import ray

from synapse_steps.config import RaySettings
from synapse_steps.errors import ConfigError

# Runs in this process that use the connection a run of ours made (embedded Ray or a
# joined cluster). Concurrent runs share it; the last one to finish disconnects.
_lock = threading.Lock()
_users = 0


def connect(settings: RaySettings) -> bool:
    """Make sure this process is connected to Ray. True when the run shares a connection we own.

    Already connected by the caller (``ray.init`` in user code): use that, and leave
    it alone. Connected by another run of ours (runs in threads): share it. No
    address (and no ``RAY_ADDRESS``): start a fresh local Ray (``address='local'``
    never attaches to some other cluster by surprise); the last ``disconnect`` stops
    it. An address: check that it answers before ``ray.init``, which can otherwise
    hang for minutes; the last ``disconnect`` only detaches this driver.
    """
    global _users
    with _lock:
        if ray.is_initialized():
            if _users == 0:
                return False
            _users += 1
            return True
        try:
            _init(settings)
        except BaseException:  # e.g. Ctrl-C during start-up: leave no half-started Ray behind
            if ray.is_initialized():
                ray.shutdown()
            raise
        _users = 1
        return True


def _init(settings: RaySettings) -> None:
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    common = {"namespace": settings.namespace, "logging_level": logging.ERROR, "configure_logging": True}
    if address is None:
        ray.init(address="local", num_cpus=settings.num_cpus, include_dashboard=False, **common)
        return
    if address.startswith("ray://"):
        _require_ray_client(address)
        _check_reachable(address.removeprefix("ray://"), settings.connect_timeout_s, shown=address)
    elif address != "auto":
        _check_reachable(address, settings.connect_timeout_s)
    try:
        ray.init(address=address, **common)
    except ConnectionError as exc:
        raise ConfigError(
            f"ray.address {address!r}: could not join the cluster ({exc}). Ray clusters use token "
            "authentication by default: set RAY_AUTH_MODE=token and give this driver the cluster's token "
            "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token). Ray does not send a token to an "
            "explicit address unless RAY_AUTH_MODE=token is set."
        ) from exc


def disconnect(connected: bool) -> None:
    """Undo ``connect``: the last run sharing our connection stops the local Ray or detaches."""
    global _users
    if not connected:
        return
    with _lock:
        _users -= 1
        if _users == 0 and ray.is_initialized():
            ray.shutdown()


def _require_ray_client(address: str) -> None:
    """A ``ray://`` address needs Ray Client (grpcio), which the ``ray`` extra does not install.

    Without it ``ray.init`` raises a bare ValueError; say what to install or use instead.
    """
    try:
        import grpc  # noqa: F401 - the dependency Ray itself checks for Ray Client
    except ImportError:
        raise ConfigError(
            f"ray.address {address!r} needs Ray Client, which is not installed: "
            'pip install "ray[client]", or run on the cluster with Ray Jobs (synapse-steps submit / attach) instead'
        ) from None


def _check_reachable(address: str, timeout_s: float, shown: str | None = None) -> None:
    """Fail in ``timeout_s`` when nothing listens at ``host:port`` (``shown``: the address as configured)."""
    shown = shown or address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray.address {shown!r} must be 'auto', 'host:port' or 'ray://host:port'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"ray.address {shown!r} did not answer within {timeout_s:g}s ({exc}); is the cluster running?"
        ) from None
