"""Shared plumbing of the local servers: the loopback host, port checks and errors."""

from __future__ import annotations

import errno
import numbers
import socket

HOST = "127.0.0.1"
"""Every server of the book binds this address only."""


class ServerStartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


class PortInUseError(ServerStartError, OSError):
    """A port that was asked for explicitly is already taken on 127.0.0.1."""


def port_is_free(port: int) -> bool:
    """True when ``port`` can be bound on 127.0.0.1 right now."""
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def check_port(port: object, *, low: int = 1, high: int = 65535, what: str = "port") -> int:
    """``port`` as an int in ``low..high``, or a :class:`TypeError`/:class:`ValueError`
    that says which ports work (never "already in use" for a port that cannot exist)."""
    if isinstance(port, bool) or not isinstance(port, numbers.Integral):
        raise TypeError(
            f"{what} must be an integer between {low} and {high}, or omitted to pick a "
            f"free one; got {port!r} ({type(port).__name__})."
        )
    port = int(port)
    if not low <= port <= high:
        raise ValueError(
            f"{what}={port} is not a TCP port this server can use: pass an integer "
            f"between {low} and {high}, or omit it to pick a free one."
        )
    return port


def require_free(port: int, note: str) -> None:
    """Raise :class:`PortInUseError` when ``port`` is taken on 127.0.0.1."""
    if not port_is_free(port):
        raise PortInUseError(
            errno.EADDRINUSE,
            f"Port {port} {note}is already in use on {HOST}. "
            "Omit `port=` to pick a free one, or stop whatever listens there.",
        )
