"""Item 4: queue mode. Enqueue rate (POSTs answering 202) and drain rate (emails reaching the
sink) with 2 Celery workers, against a raw Celery no-op task on the same broker and against
django-post_office, the peer a Django user would pick (bench/postoffice_peer.py); and, as a
reference without a target, the durable floor (bench/floor_queue.py: claim, send on a kept
connection, store the attempt and the outcome).

Each repeat fills each queue with no worker running, then starts the workers and times the drain
from the first message taken to the last one done, so worker start-up is not counted: for the
no-op, until the queue and the unacknowledged set are empty; for emails, ours, the floor's and
the peer's, until the sink has them. Uses only the documented interface: DELIVERY_MODE=queue and
`celery -A emailservice worker`.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import drain, floor_queue, postoffice_peer, profile
from bench.report import at_least, spread

ROOT = Path(__file__).resolve().parent.parent
WORKER_CONCURRENCY = drain.WORKER_CONCURRENCY


def missing() -> str | None:
    """Why queue mode can't be measured in this tree, or None when it can."""
    for path in ("emailservice/celery.py", "mailer/tasks.py"):
        if not (ROOT / path).exists():
            return f"skipped: {path} does not exist yet (queue mode, issue 5, is not merged)"
    return None


def _queue_env(bench) -> dict[str, str]:
    return {**bench.env, "DELIVERY_MODE": "queue"}


def _app_worker(bench, name: str):
    return drain.worker(bench, "emailservice", name, _queue_env(bench))


def _noop_repeat(bench, redis, repeat: int) -> dict:
    """Publish the no-op tasks from 8 threads, then time their drain by 2 workers."""
    count = bench.sizes.noop_tasks
    redis.delete("bench-noop")
    publish = bench.load({"kind": "noop", "count": count, "concurrency": 8})
    worker = drain.worker(bench, "bench.noop", f"noop{repeat}", _queue_env(bench))
    noop = drain.timed(
        redis, "bench-noop", count,
        lambda: redis.llen("bench-noop") == 0 and redis.hlen("unacked") == 0,
        timeout=120,
    )  # fmt: skip
    bench.procs.stop(worker)
    return {"noop_publish": publish, "noop_drain": noop}


def _app_repeat(bench, redis, queue: str, token: str, repeat: int) -> dict:
    """POST the emails (202) from 8 clients, then time their drain by 2 workers."""
    mark = drain.sink_mark(bench)
    enqueue = bench.load({"kind": "post", "token": token, "concurrency": 8,
                          "count": bench.sizes.queue_emails, "expect": 202})  # fmt: skip
    queued = enqueue["ok"]
    worker = _app_worker(bench, f"app{repeat}")
    done = drain.sink_has(bench, mark["distinct"] + queued)
    timed = drain.timed(redis, queue, queued, done, timeout=300)
    rss = drain.rss_kib(worker)
    bench.procs.stop(worker)
    arrived, duplicates = drain.arrivals(bench, mark)
    return {"enqueue": enqueue, "drain": timed, "arrived_at_sink": arrived,
            "duplicates": duplicates, "worker_rss": rss}  # fmt: skip


def _check(bench, runs: list[dict]) -> None:
    """Every email queued reached the sink once, ours, the floor's and the peer's; the floor's
    and the peer's rows are all `sent`. A mismatch is a check failure (the run fails; the
    figures are still written)."""
    problems = []
    for n, r in enumerate(runs, 1):
        if r["arrived_at_sink"] != r["enqueue"]["ok"] or r["duplicates"]:
            problems.append(f"repeat {n}: the sink counted {r['arrived_at_sink']} of our "
                            f"{r['enqueue']['ok']} emails, "
                            f"{r['duplicates']} sent twice")  # fmt: skip
        floor = floor_queue.check(r["floor"], bench.sizes.queue_emails)
        if floor:
            problems.append(f"repeat {n}, durable floor: {floor}")
        peer = postoffice_peer.check(r["peer"], bench.sizes.queue_emails)
        if peer:
            problems.append(f"repeat {n}, django-post_office: {peer}")
        extra = postoffice_peer.extra(r["peer"], bench.sizes.queue_emails)
        if extra:
            bench.results.setdefault("check_notes", {}).setdefault("4", []).append(
                f"repeat {n}, django-post_office: {extra} (its rate in that repeat counts "
                "copies, so our ratio to it is understated)"
            )
    if problems:
        bench.results.setdefault("check_failures", {})["4"] = "; ".join(problems)
        bench.log(f"   CHECK FAILED: {bench.results['check_failures']['4']}")


def _summary(bench, runs: list[dict]) -> dict:
    """The item's figures: min/median/max over the repeats of each rate and ratio."""
    drain_ratio = spread([r["drain_ratio"] for r in runs])
    peer_ratio = spread([r["peer_drain_ratio"] for r in runs])
    return {
        "runs": runs,
        "enqueue_rate": spread([r["enqueue"]["rate"] for r in runs]),
        "drain_rate": spread([r["drain"]["rate"] for r in runs]),
        "noop_publish_rate": spread([r["noop_publish"]["rate"] for r in runs]),
        "noop_drain_rate": spread([r["noop_drain"]["rate"] for r in runs]),
        "peer_queue_rate": spread([r["peer"]["queue"]["rate"] for r in runs]),
        "peer_drain_rate": spread([r["peer"]["drain"]["rate"] for r in runs]),
        "floor_queue_rate": spread([r["floor"]["queue"]["rate"] for r in runs]),
        "floor_drain_rate": spread([r["floor"]["drain"]["rate"] for r in runs]),
        "enqueue_ratio": spread([r["enqueue_ratio"] for r in runs]),
        "drain_ratio": drain_ratio,
        "peer_drain_ratio": peer_ratio,
        **{
            key: spread([r[key] for r in runs])
            for key in ("floor_drain_over_noop", "floor_drain_over_peer", "drain_over_floor")
        },
        "floor_worker_rss_kib": [r["floor"]["worker_rss_kib"] for r in runs],
        "worker_rss_kib": [r["worker_rss"] for r in runs],
        "peer_worker_rss_kib": [r["peer"]["worker_rss_kib"] for r in runs],
        "target": bench.targets["queue_drain"],
        "met": None,  # moved: the durable floor drain is below the no-op's 0.5
        "peer_target": bench.targets["queue_drain_peer"],
        "met_peer": None,  # moved: the durable floor drain is below post_office
        "floor_target": bench.targets["drain_over_floor"],
        "met_floor": at_least(runs, "drain_over_floor", bench.targets["drain_over_floor"]),
    }


def _ratios(r: dict) -> dict:
    """A repeat's ratios: ours over the no-op, the peer and the floor; the floor over both."""
    drain_rate, floor = r["drain"]["rate"], r["floor"]["drain"]["rate"]
    r["enqueue_ratio"] = r["enqueue"]["rate"] / r["noop_publish"]["rate"]
    r["drain_ratio"] = drain_rate / r["noop_drain"]["rate"]
    r["peer_drain_ratio"] = drain_rate / r["peer"]["drain"]["rate"]
    r["floor_drain_over_noop"] = floor / r["noop_drain"]["rate"]
    r["floor_drain_over_peer"] = floor / r["peer"]["drain"]["rate"]
    r["drain_over_floor"] = drain_rate / floor
    return r


def _log(bench, repeat: int, r: dict) -> None:
    bench.log(
        f"   repeat {repeat + 1}: enqueue {r['enqueue']['rate']:.0f}/s "
        f"({r['enqueue']['statuses']}), drain {r['drain']['rate']:.0f}/s; no-op publish "
        f"{r['noop_publish']['rate']:.0f}/s, no-op drain {r['noop_drain']['rate']:.0f}/s; "
        f"durable floor queue {r['floor']['queue']['rate']:.0f}/s, drain "
        f"{r['floor']['drain']['rate']:.0f}/s ({r['floor']['arrived_at_sink']} at the sink); "
        f"django-post_office queue {r['peer']['queue']['rate']:.0f}/s, drain "
        f"{r['peer']['drain']['rate']:.0f}/s ({r['peer']['arrived_at_sink']} at the sink"
        f"{_twice(r['peer'])})"
    )


def _twice(peer: dict) -> str:
    return f", {peer['duplicates']} of them sent twice" if peer.get("duplicates") else ""


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
              "raw Celery no-op task and vs django-post_office")  # fmt: skip
    bench.start_gunicorn(DELIVERY_MODE="queue")
    token = bench.accounts["queue"]["token"]
    # Warm up: the first requests and a first drain, which also proves queue mode delivers.
    mark = drain.sink_mark(bench)
    warm = bench.load({"kind": "post", "token": token, "concurrency": 8, "count": 40,
                       "expect": 202})  # fmt: skip
    worker = _app_worker(bench, "warmup")
    drain.timed(redis, app_queue, warm["ok"],
                drain.sink_has(bench, mark["distinct"] + warm["ok"]), timeout=120)  # fmt: skip
    bench.procs.stop(worker)
    floor_queue.repeat(bench, redis, _queue_env(bench), "floor-warmup",
                       count=floor_queue.WARM_UP_EMAILS)  # fmt: skip
    peer_env = postoffice_peer.prepare(bench, redis)
    runs = []
    for repeat in range(s.repeats):
        r = {**_noop_repeat(bench, redis, repeat),
             "floor": floor_queue.repeat(bench, redis, _queue_env(bench), f"floor{repeat}",
                                         count=s.queue_emails),
             **_app_repeat(bench, redis, app_queue, token, repeat),
             "peer": postoffice_peer.repeat(bench, redis, peer_env, f"postoffice{repeat}",
                                            count=s.queue_emails)}  # fmt: skip
        runs.append(_ratios(r))
        _log(bench, repeat, r)
    item = bench.results["items"]["4_queue"] = _summary(bench, runs)
    _check(bench, runs)
    if not item["met_floor"] and bench.do_profile:
        bench.log("   below target: profiling the web workers while enqueueing, then the workers")
        _profiled_pass(bench, redis, app_queue, token)
    bench.stop_gunicorn()


def _profiled_pass(bench, redis, queue: str, token: str) -> None:
    """One more fill and drain, with py-spy on gunicorn's workers and then on Celery's."""
    results = bench.results["profiles"]
    out = bench.results_dir / "profile-enqueue.txt"
    recorder = profile.start(bench.gunicorn.pid, out, seconds=None)
    time.sleep(0.5)
    mark = drain.sink_mark(bench)
    enqueue = bench.load({"kind": "post", "token": token, "concurrency": 8,
                          "count": bench.sizes.queue_emails, "expect": 202})  # fmt: skip
    profile.stop(recorder)
    results["enqueue"] = profile.summarize(out)
    worker = _app_worker(bench, "profiled")
    time.sleep(3)  # the worker starts; the queue waits
    out = bench.results_dir / "profile-drain.txt"
    recorder = profile.start(worker.pid, out, seconds=None)
    drain.timed(redis, queue, enqueue["ok"],
                drain.sink_has(bench, mark["distinct"] + enqueue["ok"]), timeout=300)  # fmt: skip
    profile.stop(recorder)
    results["drain"] = profile.summarize(out)
    bench.procs.stop(worker)
