"""Item 7: the batch endpoint in queue mode. Emails/s from the first `POST /api/v1/emails/batch`
(batches of 500) until the sink has them all, drained by 2 Celery workers already running,
against the raw Celery no-op drain of the same run (item 4's figure when item 4 ran, else
measured here the same way). No target is set: the ratio is shown.

The batches are POSTed one after another by one client: a batch is one request, so the client's
cost is negligible next to the server's (the per-email load generator is not needed).
"""

from __future__ import annotations

import time

from bench import drain, queue_mode
from bench.report import spread
from harness.api import ApiClient
from harness.app import start_celery_worker

BATCH_SIZE = 500


def _workers(bench, repeat: int) -> list:
    """WORKER_CONCURRENCY-process workers of the app, started and ready before the clock."""
    env = {**bench.env, "DELIVERY_MODE": "queue", "LOG_LEVEL": "INFO"}
    return [
        bench.procs.add(
            start_celery_worker(env, f"batch{repeat}", log=bench.workdir / f"batch{repeat}.log",
                                concurrency=drain.WORKER_CONCURRENCY)
        )
    ]  # fmt: skip


def _batches(count: int, repeat: int) -> list[dict]:
    bodies = [{"from": "shop@example.com", "to": "ann@example.org",
               "subject": f"Batch {repeat}.{i}", "text": "Thanks.", "html": "<p>Thanks.</p>"}
              for i in range(count)]  # fmt: skip
    return [{"emails": bodies[i : i + BATCH_SIZE]} for i in range(0, count, BATCH_SIZE)]


def _repeat(bench, api: ApiClient, count: int, repeat: int) -> dict:
    """POST the batches with the workers running; time until the sink has every email."""
    workers = _workers(bench, repeat)
    batches = _batches(count, repeat)
    mark = drain.sink_mark(bench)
    started = time.monotonic()
    statuses: dict[int, int] = {}
    stored = 0
    for body in batches:
        answer = api.post("/api/v1/emails/batch", body)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        if answer.status_code == 202:
            stored += answer.json()["stored"]
    posted = time.monotonic() - started
    done = drain.sink_has(bench, mark["distinct"] + stored)
    deadline = started + 300
    while not done() and time.monotonic() < deadline:
        time.sleep(0.002)
    elapsed = time.monotonic() - started
    for worker in workers:
        bench.procs.stop(worker)
    arrived, duplicates = drain.arrivals(bench, mark)
    return {"emails": count, "stored": stored, "statuses": statuses, "post_seconds": posted,
            "seconds": elapsed, "rate": arrived / elapsed if elapsed else 0,
            "arrived_at_sink": arrived, "duplicates": duplicates}  # fmt: skip


def _noop_rate(bench, redis, repeat: int) -> tuple[float, str]:
    """The no-op drain rate: item 4's median when it ran, else one measured now as item 4 does."""
    item4 = bench.results["items"].get("4_queue", {})
    if item4.get("noop_drain_rate", {}).get("median"):
        return item4["noop_drain_rate"]["median"], "item 4"
    return queue_mode._noop_repeat(bench, redis, 100 + repeat)["noop_drain"]["rate"], "item 7"


def run(bench) -> None:
    reason = queue_mode.missing()
    if reason:
        bench.log(f"7. batch send {reason}")
        bench.results["items"]["7_batch"] = {"skipped": reason}
        return
    import redis as redis_client

    redis = redis_client.Redis.from_url(bench.redis_url)
    count = max(BATCH_SIZE, -(-bench.sizes.queue_emails // BATCH_SIZE) * BATCH_SIZE)
    bench.log(f"7. batch send: {count} emails in batches of {BATCH_SIZE}, drained by "
              f"{drain.WORKER_CONCURRENCY} worker processes, vs a raw Celery no-op")  # fmt: skip
    bench.start_gunicorn(DELIVERY_MODE="queue")
    api = ApiClient.http(bench.url, bench.accounts["queue"]["token"], timeout=120,
                         keep_bodies=False)  # fmt: skip
    runs = []
    try:
        for repeat in range(bench.sizes.repeats):
            r = _repeat(bench, api, count, repeat)
            r["noop_drain_rate"], r["noop_from"] = _noop_rate(bench, redis, repeat)
            r["ratio"] = r["rate"] / r["noop_drain_rate"]
            runs.append(r)
            bench.log(f"   repeat {repeat + 1}: {r['rate']:.0f} emails/s (POSTs took "
                      f"{r['post_seconds']:.2f} s, {r['statuses']}); no-op drain "
                      f"{r['noop_drain_rate']:.0f}/s ({r['noop_from']})")  # fmt: skip
    finally:
        bench.stop_gunicorn()
    bench.results["items"]["7_batch"] = {
        "runs": runs,
        "rate": spread([r["rate"] for r in runs]),
        "noop_drain_rate": spread([r["noop_drain_rate"] for r in runs]),
        "ratio": spread([r["ratio"] for r in runs]),
    }
    bad = [f"repeat {n}: the sink counted {r['arrived_at_sink']} of {r['emails']} emails, "
           f"{r['duplicates']} sent twice" for n, r in enumerate(runs, 1)
           if r["arrived_at_sink"] != r["emails"] or r["duplicates"]]  # fmt: skip
    if bad:
        bench.results.setdefault("check_failures", {})["7"] = "; ".join(bad)
        bench.log(f"   CHECK FAILED: {bench.results['check_failures']['7']}")
