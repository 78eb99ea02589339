"""Item 4's peer: django-post_office (pinned in requirements-dev.txt), what a Django user would
pick to queue email and send it from Celery. Its own settings (bench/postoffice_settings.py),
SQLite file and Celery app (bench/postoffice_celery.py); the same Redis, sink, CELERY_* settings
and worker command (2 prefork processes) as our queue mode.

Each repeat queues the emails with `mail.send(..., priority="medium")` from the load generator
(8 threads, no worker running): each call stores an Email row and publishes one
`send_queued_mail` task. Then 2 workers start and the drain is timed as ours is: from the first
task taken until the sink has every email. Afterwards every queued Email row must be `sent`
and the sink must have counted exactly the emails queued.
"""

from __future__ import annotations

import sqlite3
import time

from bench import drain
from harness.app import manage

QUEUE = "bench-postoffice"  # bench/postoffice_celery.py's task_default_queue
APP = "bench.postoffice_celery"
STATUS_SENT = 0  # post_office.models.STATUS.sent
WARM_UP_EMAILS = 40


def environment(bench) -> dict[str, str]:
    """The app's environment with the peer's settings module, database and lock file."""
    return {
        **bench.env,
        "DELIVERY_MODE": "queue",
        "DJANGO_SETTINGS_MODULE": "bench.postoffice_settings",
        "BENCH_POSTOFFICE_DB": str(bench.workdir / "postoffice.sqlite3"),
        "BENCH_POSTOFFICE_LOCK": str(bench.workdir / "post_office"),
    }


def prepare(bench, redis) -> dict[str, str]:
    """Migrate the peer's database (every app's tables, post_office's included) and drain a
    first few emails untimed, which also proves the peer delivers; returns its environment."""
    env = environment(bench)
    started = time.monotonic()
    manage(env, "migrate", "--noinput")
    bench.log(f"   django-post_office: database migrated in {time.monotonic() - started:.1f} s")
    repeat(bench, redis, env, "postoffice-warmup", count=WARM_UP_EMAILS)
    return env


def sent_rows(env: dict[str, str]) -> dict[str, int]:
    """The peer's Email rows: how many are `sent`, how many are anything else."""
    db = sqlite3.connect(env["BENCH_POSTOFFICE_DB"])
    try:
        counts = dict(db.execute("SELECT status, COUNT(*) FROM post_office_email GROUP BY status"))
    finally:
        db.close()
    sent = counts.pop(STATUS_SENT, 0)
    return {"sent": sent, "not_sent": sum(counts.values())}


def _settled(redis, env: dict[str, str], sent: int, *, timeout: float = 60) -> dict[str, int]:
    """Wait (untimed) until `sent` rows are marked sent and every send_queued_mail task is done
    (the queue and the unacknowledged set empty), then return the rows. post_office marks a
    batch after sending all of it, and stopping the worker earlier would kill that task (the
    pool processes get the SIGTERM too), leaving rows queued for the next repeat to send again
    and messages unacknowledged for the next drain to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sent_rows(env)
        idle = redis.llen(QUEUE) == 0 and redis.hlen("unacked") == 0
        if rows["sent"] >= sent and idle:
            break
        time.sleep(0.05)
    return rows


def repeat(bench, redis, env: dict[str, str], name: str, *, count: int) -> dict:
    """Queue `count` emails with no worker running, then time their drain by 2 workers."""
    redis.delete(QUEUE)
    rows_before = sent_rows(env)["sent"]
    mark = drain.sink_mark(bench)
    queued = bench.load({"kind": "postoffice", "count": count, "concurrency": 8}, env=env)
    published = redis.llen(QUEUE)
    if queued["ok"] != count or published != count:
        raise RuntimeError(
            f"django-post_office: {queued['ok']} of {count} emails queued, "
            f"{published} send_queued_mail tasks published"
        )
    worker = drain.worker(bench, APP, name, env)
    done = drain.sink_has(bench, mark["distinct"] + count)
    timed = drain.timed(redis, QUEUE, count, done, timeout=300)
    rss = drain.rss_kib(worker)
    rows = _settled(redis, env, rows_before + count)
    bench.procs.stop(worker)
    arrived, duplicates = drain.arrivals(bench, mark)
    return {
        "queue": queued,
        "drain": timed,
        "arrived_at_sink": arrived,
        # Copies beyond the first: in some quick runs the peer sent a whole batch twice (each
        # queued email publishes a send_queued_mail task, and two ran on the same rows). The
        # drain is timed to the last distinct email; the copies are reported, not failed on.
        "duplicates": duplicates,
        "rows_sent": rows["sent"] - rows_before,
        "rows_not_sent": rows["not_sent"],
        "worker_rss_kib": rss,
    }


def check(run: dict, count: int) -> str | None:
    """What is wrong with a repeat's counts, or None: fewer messages than emails, or rows not
    sent. More messages than emails is the peer sending some twice (`extra`), reported, not a
    failure: it takes nothing from our figures."""
    problems = []
    if run["arrived_at_sink"] < count:
        problems.append(f"the sink counted {run['arrived_at_sink']} of {count} emails")
    if run["rows_sent"] != count or run["rows_not_sent"]:
        problems.append(
            f"{run['rows_sent']} of {count} Email rows sent, {run['rows_not_sent']} not sent"
        )
    return "; ".join(problems) or None


def extra(run: dict, count: int) -> str | None:
    """The peer's messages beyond its emails in a repeat (two of its send_queued_mail tasks
    sent the same rows, each with a Message-ID of its own), or None. That repeat's drain ends
    when `count` distinct messages arrived, some of them copies: its rate is overstated, which
    only makes our ratio to it smaller."""
    copies = run["arrived_at_sink"] + run["duplicates"] - count
    if copies <= 0:
        return None
    return f"the peer sent {count + copies} messages for its {count} emails"
