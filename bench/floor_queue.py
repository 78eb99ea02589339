"""Item 4's durable floor (bench/floor_celery.py), run as the peer is (bench/postoffice_peer.py):
with no worker running, the load generator stores the emails `queued` for the `floor` account
(one bulk INSERT) and publishes one `bench.floor_send` task per email from 8 threads; then 2
workers start and the drain is timed as ours: from the first task taken until the sink has
every email. Afterwards (untimed) every row must be `sent`, the tasks all done, and the sink
must have counted exactly the emails queued.
"""

from __future__ import annotations

import threading
import time

from bench import drain

QUEUE = "bench-floor"  # bench/floor_celery.py's task_default_queue
APP = "bench.floor_celery"
WARM_UP_EMAILS = 40


def queue_job(job: dict, payload) -> dict:
    """Load generator side (job "floor_queue"): store `count` emails (`payload(n)`, the load
    generator's JSON body) `queued` in one bulk INSERT, then publish their tasks from
    `concurrency` threads."""
    import django

    django.setup()  # before the models are imported (DJANGO_SETTINGS_MODULE: bench.settings)
    from django.db import connections
    from django.utils import timezone

    from bench.floor import new_row
    from bench.floor_celery import app, floor_send
    from mailer.models import Email
    from mailer.vocabulary import EmailStatus

    count, threads = job["count"], job["concurrency"]
    app.connection_for_write().ensure_connection()
    started = time.monotonic()
    now = timezone.now()
    state = {"status": EmailStatus.QUEUED, "next_attempt_at": now, "enqueued_at": now}
    rows = Email.objects.bulk_create([new_row(payload(n), **state)
                                      for n in range(1, count + 1)])  # fmt: skip
    ids = [row.pk for row in rows]
    chunks = [ids[k::threads] for k in range(threads)]

    def publish(chunk: list[int]) -> None:
        for pk in chunk:
            floor_send.delay(pk)

    workers = [threading.Thread(target=publish, args=(c,)) for c in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    connections.close_all()
    return {"ok": len(ids), "first_id": min(ids), "last_id": max(ids), "seconds": elapsed,
            "rate": len(ids) / elapsed}  # fmt: skip


def rows(account_id: int, first: int, last: int) -> dict[str, int]:
    """The floor's rows of one fill (ids first..last): how many are `sent`, how many not."""
    from django.db import connections

    from mailer.models import Email
    from mailer.vocabulary import EmailStatus

    fill = Email.objects.filter(account_id=account_id, pk__range=(first, last))
    sent = fill.filter(status=EmailStatus.SENT).count()
    total = fill.count()
    connections.close_all()
    return {"sent": sent, "not_sent": total - sent}


def _settled(redis, account_id: int, queued: dict, *, timeout: float = 60) -> dict[str, int]:
    """Wait (untimed) until the fill's rows are all marked sent and every task is done (the
    queue and the unacknowledged set empty): the sink has an email before its outcome is
    stored, and stopping the workers then would kill the task storing it."""
    deadline = time.monotonic() + timeout
    while True:
        found = rows(account_id, queued["first_id"], queued["last_id"])
        idle = redis.llen(QUEUE) == 0 and redis.hlen("unacked") == 0
        if (found["sent"] >= queued["ok"] and idle) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def repeat(bench, redis, env: dict[str, str], name: str, *, count: int) -> dict:
    """Queue `count` emails with no worker running, then time their drain by 2 workers."""
    redis.delete(QUEUE)
    account_id = bench.accounts["floor"]["user"].pk
    mark = drain.sink_mark(bench)
    queued = bench.load({"kind": "floor_queue", "count": count, "concurrency": 8}, env=env)
    published = redis.llen(QUEUE)
    if queued["ok"] != count or published != count:
        raise RuntimeError(f"durable floor: {queued['ok']} of {count} emails stored, "
                           f"{published} bench.floor_send tasks published")  # fmt: skip
    worker = drain.worker(bench, APP, name, env)
    done = drain.sink_has(bench, mark["distinct"] + count)
    timed = drain.timed(redis, QUEUE, count, done, timeout=300)
    rss = drain.rss_kib(worker)
    found = _settled(redis, account_id, queued)
    bench.procs.stop(worker)
    arrived, duplicates = drain.arrivals(bench, mark)
    return {"queue": queued, "drain": timed, "arrived_at_sink": arrived,
            "duplicates": duplicates, "rows_sent": found["sent"],
            "rows_not_sent": found["not_sent"], "worker_rss_kib": rss}  # fmt: skip


def check(run: dict, count: int) -> str | None:
    """What is wrong with a repeat's counts, or None."""
    problems = []
    if run["arrived_at_sink"] != count or run["duplicates"]:
        problems.append(f"the sink counted {run['arrived_at_sink']} of {count} emails, "
                        f"{run['duplicates']} sent twice")  # fmt: skip
    if run["rows_sent"] != count or run["rows_not_sent"]:
        problems.append(
            f"{run['rows_sent']} of {count} Email rows sent, {run['rows_not_sent']} not sent"
        )
    return "; ".join(problems) or None
