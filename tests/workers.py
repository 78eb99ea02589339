"""Queue mode's real processes for tests: a private redis-server as the broker (so a test can
stop it without taking the cache down) and Celery workers, each in its own process group."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.appserver import ROOT, AppServer
from tests.fakes.smtp import free_port
from tests.live import stop_group


def wait_until(check: Callable[[], object], *, timeout: float, what: str, every: float = 0.2):
    """Poll check() until it returns something truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class RedisServer:
    """A redis-server on a fixed free loopback port that can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_until(self._pong, timeout=10, what=f"redis-server on port {self.port}", every=0.05)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, sig=signal.SIGKILL, grace=5)
            self.process = None


@dataclass
class Worker:
    """A `celery worker` (optionally with beat) against an AppServer's database and cache."""

    name: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def tasks_done(self) -> int:
        """Delivery tasks this worker finished (Celery logs each at INFO)."""
        return self.log_text().count("mailer.tasks.deliver_email[") // 2

    def stop(self) -> None:
        """A warm shutdown (SIGTERM to the group); SIGKILL after 20 s."""
        stop_group(self.process)

    def kill(self) -> None:
        """kill -9 of the whole worker, parent and pool children: as a machine dying."""
        stop_group(self.process, sig=signal.SIGKILL, grace=5)


def start_worker(
    server: AppServer,
    tmp: Path,
    name: str,
    *,
    concurrency: int = 2,
    pool: str = "prefork",
    beat: bool = False,
    **env: str,
) -> Worker:
    """Start a worker and wait until it is ready to take tasks."""
    log = tmp / f"worker-{name}.log"
    command = [
        sys.executable, "-m", "celery", "-A", "emailservice", "worker", "-n", f"{name}@%h",
        "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if beat:
        command += ["--beat", "--schedule", str(tmp / f"beat-{name}")]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**server.env, "LOG_LEVEL": "INFO", **env},
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        start_new_session=True,
    )
    worker = Worker(name=name, process=process, log=log)
    try:
        wait_until(
            lambda: process.poll() is not None or " ready." in worker.log_text(),
            timeout=60,
            what=f"worker {name} to be ready",
        )
        assert process.poll() is None, f"worker {name} exited:\n{worker.log_text()}"
    except BaseException:
        worker.kill()
        raise
    return worker
