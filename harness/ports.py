"""Loopback ports: a free one to bind, whether one is taken, and waiting until one listens."""

from __future__ import annotations

import socket
import subprocess

from harness.waiting import wait_until

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def listening(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_port(port: int, *, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    """Until something listens on the port (or `process`, which should, exits)."""
    wait_until(lambda: listening(port), timeout=timeout, every=0.05, process=process,
               what=f"a server listening on port {port}")  # fmt: skip
