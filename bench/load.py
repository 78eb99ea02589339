"""The load generator: a process of its own, so the app's figures are not measured from inside
the app. bench.run starts it with one JSON job as its argument; it prints one JSON result.

Jobs: "post" (POST emails from N threads, each over its own http.client connection, for a time
or a count; to the API, or with `path` to item 1's peer view), "alternate" (sequential POSTs
taking turns between accounts), "get" (sequential GETs of several variants, round robin, for
latency), "smtp" (the raw smtplib baseline: one connection, one message after another), "noop"
(publish the raw Celery no-op task from N threads), "webhook" (POST Postmark Delivery records,
Basic-authenticated, to a webhook URL from N threads for a time, about 1 in 10 a repeat of an
earlier record), "trivial" (GET /bench/trivial the same way: the webhook figure's baseline) and
"postoffice" (queue emails with django-post_office's mail.send from N threads: item 4's peer,
run with its settings module) and "floor_queue" (store emails `queued` and publish their
`bench.floor_send` tasks from N threads: item 4's durable floor, bench/floor_queue.py).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import random
import smtplib
import sys
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage

from harness.api import ApiClient
from mailer.vocabulary import Outcome

SENDER = "Bench <bench@example.com>"
RECIPIENT = "rcpt@example.org"
TEXT = "Hello from the benchmark. This is the plain text part of the message.\n"
HTML = "<p>Hello from the benchmark. This is the <b>HTML</b> part of the message.</p>"


def email_payload(n: int) -> dict:
    """The email every send figure uses, through the API and through the raw smtplib loop."""
    return {"from": SENDER, "to": RECIPIENT, "subject": f"Bench {n}", "text": TEXT, "html": HTML}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(latencies: list[float]) -> dict:
    return {
        "n": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": sum(latencies) / len(latencies) if latencies else None,
    }


def api_client(url: str, token: str | None) -> ApiClient:
    """The tests' API client over HTTP (a connection per request: gunicorn's sync workers close
    it after each answer anyway), keeping no bodies."""
    return ApiClient.http(url, token, timeout=60, keep_bodies=False)


def job_alternate(job: dict) -> dict:
    """Sequential POSTs alternating between accounts (`tokens`: name -> token), so that every
    account's latencies see the same moments of the shared machine; `count` sends each."""
    clients = {name: api_client(job["url"], token) for name, token in job["tokens"].items()}
    latencies: dict[str, list[float]] = {name: [] for name in clients}
    statuses: dict[str, dict[str, int]] = {name: {} for name in clients}
    for n in range(job["count"]):
        for name, client in clients.items():
            clock = time.perf_counter()
            status = client.post("/api/v1/emails", email_payload(n)).status_code
            elapsed = (time.perf_counter() - clock) * 1000
            statuses[name][str(status)] = statuses[name].get(str(status), 0) + 1
            if status == 201:
                latencies[name].append(elapsed)
    return {name: {"statuses": statuses[name], **summary(v)} for name, v in latencies.items()}


def job_post(job: dict) -> dict:
    """POST /api/v1/emails (or `path`, with no token: the peer view) from `concurrency` threads
    until `seconds` or `count` is reached; the answers with status `expect` (201) count.

    With stop_on_skipped, stop once a response shows the first provider skipped (circuit open).
    """
    path = job.get("path", "/api/v1/emails")
    deadline = time.monotonic() + job.get("seconds", 3600)
    limit = job.get("count") or 10**12
    lock = threading.Lock()
    issued = [0]
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    stop = threading.Event()

    def worker() -> None:
        client = api_client(job["url"], job.get("token"))
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                if issued[0] >= limit:
                    return
                issued[0] += 1
                n = issued[0]
            clock = time.perf_counter()
            try:
                response = client.post(path, email_payload(n))
                status, body = response.status_code, response.content
            except (http.client.HTTPException, OSError) as exc:
                status, body = type(exc).__name__, b""
            elapsed = (time.perf_counter() - clock) * 1000
            with lock:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == job.get("expect", 201):
                    latencies.append(elapsed)
            if job.get("stop_on_skipped") and status in (201, 502):
                attempts = json.loads(body).get("attempts", [])
                if attempts and attempts[0]["outcome"] == Outcome.SKIPPED:
                    stop.set()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(job.get("concurrency", 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ok = len(latencies)
    return {
        "ok": ok,
        "statuses": statuses,
        "seconds": elapsed,
        "rate": ok / elapsed if elapsed else 0.0,
        **summary(latencies),
    }


def job_get(job: dict) -> dict:
    """Sequential GETs, round robin over the variants. A variant with `bump` first sets that
    Redis key (the account's list cache version, as any write does), so its GET misses; a
    variant without it is fetched once, untimed, after any bump, so its timed GET hits."""
    import redis

    bumper = redis.Redis.from_url(job["redis_url"]) if job.get("redis_url") else None
    clients = {
        v["name"]: api_client(job["url"], job["token"] if v.get("auth") else None)
        for v in job["variants"]
    }
    latencies: dict[str, list[float]] = {v["name"]: [] for v in job["variants"]}
    failures: dict[str, int] = {}
    generation = 0  # bumps so far
    seen: dict[str, int] = {}  # the generation each variant was last fetched in
    for round_number in range(job["warmup"] + job["samples"]):
        for variant in job["variants"]:
            client = clients[variant["name"]]
            if variant.get("bump"):
                bumper.set(variant["bump"], time.time_ns())
                generation += 1
            elif seen.get(variant["name"]) != generation:
                client.get(variant["path"])  # fills the cache for this version
            seen[variant["name"]] = generation
            clock = time.perf_counter()
            status = client.get(variant["path"]).status_code
            elapsed = (time.perf_counter() - clock) * 1000
            if status != 200:
                failures[variant["name"]] = failures.get(variant["name"], 0) + 1
            elif round_number >= job["warmup"]:
                latencies[variant["name"]].append(elapsed)
    return {"variants": {name: summary(v) for name, v in latencies.items()}, "failures": failures}


def raw_message(n: int) -> EmailMessage:
    payload = email_payload(n)
    message = EmailMessage()
    message["From"] = payload["from"]
    message["To"] = payload["to"]
    message["Subject"] = payload["subject"]
    message.set_content(payload["text"])
    message.add_alternative(payload["html"], subtype="html")
    return message


def job_smtp(job: dict) -> dict:
    """The baseline: smtplib over one reused connection, one message after another."""
    deadline = time.monotonic() + job["seconds"]
    sent = 0
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", job["port"], timeout=30) as smtp:
        while time.monotonic() < deadline:
            sent += 1
            smtp.send_message(raw_message(sent))
    elapsed = time.monotonic() - started
    return {"ok": sent, "seconds": elapsed, "rate": sent / elapsed}


def job_noop(job: dict) -> dict:
    """Publish `count` raw Celery no-op tasks from `concurrency` threads."""
    from bench.noop import noop

    per_thread = [job["count"] // job["concurrency"]] * job["concurrency"]
    per_thread[0] += job["count"] - sum(per_thread)

    def worker(count: int) -> None:
        for _ in range(count):
            noop.delay()

    noop.app.connection_for_write().ensure_connection()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"ok": job["count"], "seconds": elapsed, "rate": job["count"] / elapsed}


def job_postoffice(job: dict) -> dict:
    """Queue `count` emails with django-post_office's `mail.send` (the message every send figure
    uses, priority "medium") from `concurrency` threads. With its Celery integration each call
    stores the email and, after the commit, publishes a `send_queued_mail` task. Runs with
    DJANGO_SETTINGS_MODULE=bench.postoffice_settings (postoffice_peer.environment)."""
    import django

    from bench.postoffice_celery import app  # the Celery app post_office's tasks publish with

    django.setup()
    from django.db import connections
    from post_office import mail

    per_thread = [job["count"] // job["concurrency"]] * job["concurrency"]
    per_thread[0] += job["count"] - sum(per_thread)
    first = [1 + sum(per_thread[:k]) for k in range(len(per_thread))]

    queued = [0] * len(per_thread)

    def worker(k: int, start: int, count: int) -> None:
        try:
            for n in range(start, start + count):
                payload = email_payload(n)
                mail.send([payload["to"]], payload["from"], subject=payload["subject"],
                          message=payload["text"], html_message=payload["html"],
                          priority="medium")  # fmt: skip
                queued[k] += 1
        finally:
            connections.close_all()

    app.connection_for_write().ensure_connection()
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k, first[k], per_thread[k]))
               for k in range(len(per_thread))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"ok": sum(queued), "seconds": elapsed, "rate": sum(queued) / elapsed}


def job_floor_queue(job: dict) -> dict:
    from bench.floor_queue import queue_job

    return queue_job(job, email_payload)


def _concurrently(job: dict, call) -> dict:
    """`call(n)` -> (status, body) from `concurrency` threads, n = 1, 2, ..., until `seconds`
    have passed; the rate and latencies of the answers with status `expect` (200)."""
    deadline = time.monotonic() + job["seconds"]
    lock = threading.Lock()
    issued = [0]
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    bodies: list[tuple[int, bytes]] = []

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                issued[0] += 1
                n = issued[0]
            clock = time.perf_counter()
            try:
                status, body = call(n)
            except (http.client.HTTPException, OSError) as exc:
                status, body = type(exc).__name__, b""
            elapsed = (time.perf_counter() - clock) * 1000
            with lock:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == job.get("expect", 200):
                    latencies.append(elapsed)
                    bodies.append((n, body))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(job.get("concurrency", 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ok = len(latencies)
    return {
        "ok": ok,
        "requests": issued[0],
        "statuses": statuses,
        "seconds": elapsed,
        "rate": ok / elapsed if elapsed else 0.0,
        "_bodies": bodies,
        **summary(latencies),
    }


def delivery_record(prefix: str, k: int) -> bytes:
    """Postmark's Delivery record (its documented shape), the k-th of this run: a MessageID
    and Recipient of its own, so its event id (a digest of them and the time) is new. No
    Metadata: it names no email of the account, so it is stored unmatched."""
    record = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": f"{prefix}-{k:08d}",
        "Recipient": f"{prefix}-{k}@example.org",
        "Tag": "bench",
        "DeliveredAt": datetime.now(UTC).isoformat(timespec="microseconds"),
        "Details": "smtp;250 2.0.0 OK 1480624905 l186si10190883ite.73 - gsmtp",
    }
    return json.dumps(record).encode("utf-8")


def job_webhook(job: dict) -> dict:
    """POST Delivery records to `path` with Basic credentials (`username`, `password`) from
    `concurrency` threads for `seconds`. Every `repeat_every`-th request re-posts, byte for byte
    (as Postmark's retry does), a record posted earlier, chosen at random; the others are new.
    The MessageIDs start with `prefix`, so the stored rows of this run can be counted."""
    pair = f"{job['username']}:{job['password']}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    client = api_client(job["url"], None)
    lock = threading.Lock()
    records: list[bytes] = []  # the distinct records, in the order they were first posted
    repeats = [0]
    chooser = random.Random(job.get("seed", 6))
    every = job.get("repeat_every", 10)

    def call(n: int) -> tuple[int, bytes]:
        with lock:
            if every and n % every == 0 and records:
                body = records[chooser.randrange(len(records))]
                repeats[0] += 1
            else:
                body = delivery_record(job["prefix"], len(records) + 1)
                records.append(body)
        response = client.post(job["path"], body, headers=headers)
        return response.status_code, response.content

    result = _concurrently(job, call)
    stored = duplicates = unmatched = 0
    for _, body in result.pop("_bodies"):
        answer = json.loads(body)
        stored += answer.get("stored", 0)
        duplicates += answer.get("duplicates", 0)
        unmatched += answer.get("unmatched", 0)
    result.update(
        distinct_posted=len(records),
        repeats_posted=repeats[0],
        answered_stored=stored,
        answered_duplicates=duplicates,
        answered_unmatched=unmatched,
    )
    return result


def job_trivial(job: dict) -> dict:
    """GET /bench/trivial from `concurrency` threads for `seconds`: the webhook baseline."""
    client = api_client(job["url"], None)

    def call(n: int) -> tuple[int, bytes]:
        response = client.get("/bench/trivial")
        return response.status_code, b""

    result = _concurrently(job, call)
    result.pop("_bodies")
    return result


JOBS = {
    "post": job_post,
    "alternate": job_alternate,
    "get": job_get,
    "smtp": job_smtp,
    "noop": job_noop,
    "webhook": job_webhook,
    "trivial": job_trivial,
    "postoffice": job_postoffice,
    "floor_queue": job_floor_queue,
}

if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(JOBS[job["kind"]](job)))
