"""Queue mode's Celery workers for tests, each in its own process group, against an AppServer's
database and cache (the broker: tests/queue_site.py)."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.app import start_celery_worker
from harness.procs import stop_group
from tests.appserver import AppServer


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
    process = start_celery_worker(
        {**server.env, "LOG_LEVEL": "INFO", **env},
        name,
        log=log,
        concurrency=concurrency,
        pool=pool,
        beat=beat,
    )
    return Worker(name=name, process=process, log=log)
