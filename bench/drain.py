"""Item 4's clock and workers, shared by our queue mode, the raw Celery no-op and the
django-post_office peer: each drain is timed the same way, by the same Celery worker command."""

from __future__ import annotations

import time

from harness.app import start_celery_worker
from harness.procs import children, memory_kib

WORKER_CONCURRENCY = 2


def worker(bench, app: str, name: str, env: dict[str, str]):
    """A Celery worker as the tests start one (harness.app), WORKER_CONCURRENCY prefork
    processes; not waited for: the drain's clock starts when the queue first shrinks."""
    return bench.procs.add(
        start_celery_worker(
            env, name, log=bench.workdir / f"celery-{name}.log", ready=False, app=app,
            concurrency=WORKER_CONCURRENCY, loglevel="WARNING",
        )
    )  # fmt: skip


def rss_kib(process) -> dict[str, int]:
    """RSS of a worker's main process and of its pool processes."""
    pids = [process.pid, *children(process.pid)]
    return {str(pid): memory_kib(pid).get("VmRSS", 0) for pid in pids}


def sink_mark(bench) -> dict:
    """The sink's counters now, to measure a repeat's arrivals against (arrivals())."""
    return bench.sink()


def arrivals(bench, mark: dict) -> tuple[int, int]:
    """Since `mark`: (distinct emails that arrived, copies of them beyond the first)."""
    now = bench.sink()
    distinct = now["distinct"] - mark["distinct"]
    return distinct, now["count"] - mark["count"] - distinct


def sink_has(bench, count: int):
    """A `done` for timed(): the sink has counted `count` distinct emails (by Message-ID: a
    drain that sends some twice is done when every email arrived, not when the sink's count
    reached the number, which duplicates would make it reach early)."""
    return lambda: bench.sink()["distinct"] >= count


def timed(redis, queue: str, total: int, done, *, timeout: float) -> dict:
    """Poll until done(); the clock starts when the queue (a Redis list of `total` messages)
    first shrinks, so worker start-up is not counted."""
    deadline = time.monotonic() + timeout
    started = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if started is None and redis.llen(queue) < total:
            started = now
        if started is not None and done():
            elapsed = now - started
            return {"ok": total, "seconds": elapsed, "rate": total / elapsed if elapsed else 0}
        time.sleep(0.002)
    raise TimeoutError(f"the {queue} queue did not drain within {timeout:.0f} s")
