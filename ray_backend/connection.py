"""Connecting to Ray: start a local one, or join a cluster — and own only what we started."""

from __future__ import annotations

import logging
import os
import socket

import ray

from synapse_steps.config import RaySettings
from synapse_steps.errors import ConfigError


def connect(settings: RaySettings) -> bool:
    """Make sure this process is connected to Ray. True when this call connected it.

    Already connected (the caller ran ``ray.init``): use that, and leave it alone.
    No address (and no ``RAY_ADDRESS``): start a fresh local Ray (``address='local'``
    never attaches to some other cluster by surprise); ``disconnect`` stops it. An
    address: check that it answers before ``ray.init``, which can otherwise hang for
    minutes; ``disconnect`` only detaches this driver, the cluster keeps running.
    """
    if ray.is_initialized():
        return False
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    common = {"namespace": settings.namespace, "logging_level": logging.ERROR, "configure_logging": True}
    if address is None:
        ray.init(address="local", num_cpus=settings.num_cpus, include_dashboard=False, **common)
        return True
    if address != "auto" and not address.startswith("ray://"):
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
    return True


def disconnect(connected: bool) -> None:
    """Undo ``connect``: stop the local Ray it started, or detach from the cluster it joined."""
    if connected and ray.is_initialized():
        ray.shutdown()


def _check_reachable(address: str, timeout_s: float) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray.address {address!r} must be 'auto', 'host:port' or 'ray://host:port'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"ray.address {address!r} did not answer within {timeout_s:g}s ({exc}); is the cluster running?"
        ) from None
