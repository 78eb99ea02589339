"""Loopback ports: a free one to bind, whether one is taken, and waiting until one listens."""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path

from harness.waiting import wait_until

HOST = "127.0.0.1"


LOWEST = 10_000


def _ephemeral_start() -> int:
    """Where the kernel's range of ports for outgoing connections begins (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nobody uses right now, for a server the caller starts soon after.

    Chosen at random below the kernel's ephemeral range, never from it: a port the OS hands out
    for `bind(0)` is also what any process's next outgoing connection may take as its local
    port, and a server that starts a few seconds later (make run migrates first) then finds
    it in use. Below the range only another caller's random pick can collide, and a bind
    check refuses a port that is taken now."""
    top = max(_ephemeral_start() - 1, LOWEST + 1000)
    for _ in range(200):
        port = random.randint(LOWEST, top)
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        if not listening(port):
            return port
    raise RuntimeError(f"no free port found between {LOWEST} and {top}")


def listening(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_port(port: int, *, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    """Until something listens on the port (or `process`, which should, exits)."""
    wait_until(lambda: listening(port), timeout=timeout, every=0.05, process=process,
               what=f"a server listening on port {port}")  # fmt: skip
