"""Item 4: queue mode. Enqueue rate (POSTs answering 202) and drain rate (emails reaching the
sink) with 2 Celery workers, against a raw Celery no-op task on the same broker.

Each repeat fills the queue with no worker running, then starts the workers and times the drain
from the first message taken to the last one done, so worker start-up is not counted: for the
no-op, until the queue and the unacknowledged set are empty; for emails, until the sink has them.
Uses only the documented interface: DELIVERY_MODE=queue and `celery -A emailservice worker`.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import profile
from bench.report import spread
from harness.app import start_celery_worker
from harness.procs import children, memory_kib

ROOT = Path(__file__).resolve().parent.parent
WORKER_CONCURRENCY = 2


def missing() -> str | None:
    """Why queue mode can't be measured in this tree, or None when it can."""
    for path in ("emailservice/celery.py", "mailer/tasks.py"):
        if not (ROOT / path).exists():
            return f"skipped: {path} does not exist yet (queue mode, issue 5, is not merged)"
    return None


def _worker(bench, app: str, name: str):
    """A Celery worker as the tests start one (harness.app); not waited for: the drain's clock
    starts when the queue first shrinks."""
    return bench.procs.add(
        start_celery_worker(
            {**bench.env, "DELIVERY_MODE": "queue"}, name, log=bench.workdir / f"celery-{name}.log",
            ready=False, app=app, concurrency=WORKER_CONCURRENCY, loglevel="WARNING",
        )
    )  # fmt: skip


def _rss_kib(process) -> dict[str, int]:
    pids = [process.pid, *children(process.pid)]
    return {str(pid): memory_kib(pid).get("VmRSS", 0) for pid in pids}


def _arrived(bench, count: int):
    return lambda: bench.sink()["count"] >= count


def _drain(redis, queue: str, total: int, done, *, timeout: float) -> dict:
    """Poll until done(); the clock starts when the queue first shrinks."""
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


def run(bench) -> None:
    reason = missing()
    if reason:
        bench.log(f"4. queue mode {reason}")
        bench.results["items"]["4_queue"] = {"skipped": reason}
        return
    import redis as redis_client
    from django.conf import settings

    s = bench.sizes
    redis = redis_client.Redis.from_url(bench.redis_url)
    app_queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    bench.log(f"4. queue mode: enqueue and drain with {WORKER_CONCURRENCY} Celery workers vs a "
              "raw Celery no-op task")  # fmt: skip
    bench.start_gunicorn(DELIVERY_MODE="queue")
    token = bench.accounts["queue"]["token"]
    # Warm up: the first requests and a first drain, which also proves queue mode delivers.
    before = bench.sink()["count"]
    warm = bench.load({"kind": "post", "token": token, "concurrency": 8, "count": 40,
                       "expect": 202})  # fmt: skip
    worker = _worker(bench, "emailservice", "warmup")
    _drain(redis, app_queue, warm["ok"], _arrived(bench, before + warm["ok"]), timeout=120)
    bench.procs.stop(worker)
    runs, worker_rss = [], []
    for repeat in range(s.repeats):
        redis.delete("bench-noop")
        publish = bench.load({"kind": "noop", "count": s.noop_tasks, "concurrency": 8})
        worker = _worker(bench, "bench.noop", f"noop{repeat}")
        noop = _drain(
            redis, "bench-noop", s.noop_tasks,
            lambda: redis.llen("bench-noop") == 0 and redis.hlen("unacked") == 0,
            timeout=120,
        )  # fmt: skip
        bench.procs.stop(worker)

        before = bench.sink()["count"]
        enqueue = bench.load({"kind": "post", "token": token, "concurrency": 8,
                              "count": s.queue_emails, "expect": 202})  # fmt: skip
        queued = enqueue["ok"]
        worker = _worker(bench, "emailservice", f"app{repeat}")
        drain = _drain(redis, app_queue, queued, _arrived(bench, before + queued), timeout=300)
        worker_rss.append(_rss_kib(worker))
        bench.procs.stop(worker)
        runs.append({
            "noop_publish": publish, "noop_drain": noop, "enqueue": enqueue, "drain": drain,
            "enqueue_ratio": enqueue["rate"] / publish["rate"],
            "drain_ratio": drain["rate"] / noop["rate"],
        })  # fmt: skip
        bench.log(
            f"   repeat {repeat + 1}: enqueue {enqueue['rate']:.0f}/s ({enqueue['statuses']}), "
            f"drain {drain['rate']:.0f}/s; no-op publish {publish['rate']:.0f}/s, "
            f"no-op drain {noop['rate']:.0f}/s"
        )
    drain_ratio = spread([r["drain_ratio"] for r in runs])
    bench.results["items"]["4_queue"] = {
        "runs": runs,
        "enqueue_rate": spread([r["enqueue"]["rate"] for r in runs]),
        "drain_rate": spread([r["drain"]["rate"] for r in runs]),
        "noop_publish_rate": spread([r["noop_publish"]["rate"] for r in runs]),
        "noop_drain_rate": spread([r["noop_drain"]["rate"] for r in runs]),
        "enqueue_ratio": spread([r["enqueue_ratio"] for r in runs]),
        "drain_ratio": drain_ratio,
        "worker_rss_kib": worker_rss,
        "target": ">= 0.5 (drain)",
        "met": drain_ratio["median"] >= 0.5,
    }
    if not bench.results["items"]["4_queue"]["met"] and bench.do_profile:
        bench.log("   below target: profiling the web workers while enqueueing, then the workers")
        _profiled_pass(bench, redis, app_queue, token)
    bench.stop_gunicorn()


def _profiled_pass(bench, redis, queue: str, token: str) -> None:
    """One more fill and drain, with py-spy on gunicorn's workers and then on Celery's."""
    results = bench.results["profiles"]
    out = bench.results_dir / "profile-enqueue.txt"
    recorder = profile.start(bench.gunicorn.pid, out, seconds=None)
    time.sleep(0.5)
    before = bench.sink()["count"]
    enqueue = bench.load({"kind": "post", "token": token, "concurrency": 8,
                          "count": bench.sizes.queue_emails, "expect": 202})  # fmt: skip
    profile.stop(recorder)
    results["enqueue"] = profile.summarize(out)
    worker = _worker(bench, "emailservice", "profiled")
    time.sleep(3)  # the worker starts; the queue waits
    out = bench.results_dir / "profile-drain.txt"
    recorder = profile.start(worker.pid, out, seconds=None)
    _drain(redis, queue, enqueue["ok"], _arrived(bench, before + enqueue["ok"]), timeout=300)
    profile.stop(recorder)
    results["drain"] = profile.summarize(out)
    bench.procs.stop(worker)
