"""A private redis-server on a free loopback port: no persistence, stoppable, restartable on the
same port, and hangable (SIGSTOP) to play a Redis that stops answering."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from harness import procs
from harness.ports import HOST, free_port
from harness.waiting import wait_until


class RedisServer:
    def __init__(
        self, directory: Path, *, port: int | None = None, options: tuple[str, ...] = ()
    ) -> None:
        """options: more redis-server arguments (e.g. "--rename-command", "CLIENT", "")."""
        self.directory = directory
        self.port = port or free_port()
        self.options = options
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, *, timeout: float = 30) -> RedisServer:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install -y redis-server)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = procs.start(
            [server, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly",
             "no", "--dir", str(self.directory), "--loglevel", "warning", *self.options],
            env=dict(os.environ),
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until(self.answers, timeout=timeout, every=0.05, process=self.process,
                       what=f"redis-server to answer on port {self.port}")  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def answers(self) -> bool:
        """PING answered with PONG."""
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @cached_property
    def client(self):
        """A redis-py client of this server (it reconnects after a restart)."""
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=10)

    @contextmanager
    def hung(self) -> Iterator[None]:
        """Redis stopped in its tracks (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None, "not started"
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            procs.stop_group(self.process, grace=10)
            self.process = None
