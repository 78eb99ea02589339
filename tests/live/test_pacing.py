"""Pacing with real parts: one provider limited to 5 a second, shared by two gunicorn workers
sending in sync mode and two Celery workers draining a batch (queue mode), all against the same
database and the run's Redis. At no time does that provider get more than 5 sends in a second;
the rest go to the next provider or wait for a slot, and every email reaches a sink exactly once.

The "at most 5 in any second" is checked on the attempts' start times, which are the pacer's
grant times on Redis' clock (mailer.delivery.failover: a paced send starts when its slot is
granted), so it holds exactly; the sinks' arrival times add the machine's scheduling jitter."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime

import pytest

from harness.app import start_gunicorn
from harness.ports import free_port
from harness.procs import stop_group
from harness.redis import RedisServer
from harness.smtp import SmtpServer
from harness.waiting import wait_until
from tests.appserver import AppServer, create_account, start_app_server
from tests.queue_site import QUEUE_ENV, all_emails, email, received_ids
from tests.workers import start_worker

LIMIT = 5
ENV = {**QUEUE_ENV, "DELIVERY_MODE": "sync", "PACING_WAIT_SECONDS": "10"}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Iterator[tuple[AppServer, AppServer]]:
    """(gunicorn in sync mode, 2 workers: its web workers send; gunicorn in queue mode on the
    same database, 1 worker: it only stores batches and publishes them to the broker)."""
    tmp = tmp_path_factory.mktemp("pacing")
    broker = RedisServer(tmp / "broker").start()
    sync = start_app_server(tmp, workers=2, **ENV, CELERY_BROKER_URL=broker.url)
    port = free_port()
    queue = AppServer(url=f"http://127.0.0.1:{port}",
                      env={**sync.env, "DELIVERY_MODE": "queue"})  # fmt: skip
    try:
        queue.process = start_gunicorn(queue.env, port=port, workers=1, log=tmp / "queue.log")
        yield sync, queue
    finally:
        if queue.process is not None:
            stop_group(queue.process, grace=30)
        sync.stop()
        broker.stop()


@contextmanager
def celery_workers(site: AppServer, tmp) -> Iterator[list]:
    """Two Celery workers in queue mode on the site's database (one runs beat: the sweep)."""
    workers = []
    try:
        for name, beat in (("one", True), ("two", False)):
            workers.append(start_worker(site, tmp, name, beat=beat, DELIVERY_MODE="queue"))
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def _limit(site: AppServer, token: str, name: str) -> int:
    api = site.api(token)
    [provider] = [p for p in api.get("/api/v1/providers").json()["results"] if p["name"] == name]
    answer = api.patch(f"/api/v1/providers/{provider['id']}", {"max_per_second": LIMIT})
    assert answer.status_code == 200, answer
    return provider["id"]


def _body(subject: str) -> dict:
    return {"from": "shop@example.com", "to": "ann@example.org", "subject": subject,
            "text": "Thanks."}  # fmt: skip


def _send_both_ways(sync: AppServer, queue: AppServer, token: str, each: int, tag: str) -> None:
    """`each` single sends to the sync site from 8 threads while the queue site takes a batch
    of `each` for the Celery workers."""

    def post(index: int):
        return sync.api(token).post("/api/v1/emails", _body(f"{tag} web {index}"))

    batch = [_body(f"{tag} batch {i}") for i in range(each)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        stored = pool.submit(queue.api(token).post, "/api/v1/emails/batch", {"emails": batch})
        answers = list(pool.map(post, range(each)))
        assert stored.result().status_code == 202, stored.result()
    assert {a.status_code for a in answers} <= {201, 202}, [a for a in answers][:3]


def _sends_via(sync: AppServer, token: str, provider_id: int) -> list[datetime]:
    """The start (grant) times of every accepted attempt through the provider."""
    times = []
    for summary in all_emails(sync, token):
        for attempt in email(sync, token, summary["id"])["attempts"]:
            if attempt["provider"]["id"] == provider_id and attempt["outcome"] == "sent":
                times.append(datetime.fromisoformat(attempt["started_at"]))
    return sorted(times)


def _most_in_a_second(times: list[datetime]) -> int:
    most, start = 0, 0
    for end, at in enumerate(times):
        while (at - times[start]).total_seconds() >= 1:
            start += 1
        most = max(most, end - start + 1)
    return most


def _wait_all_sent(sync: AppServer, token: str, total: int, sinks: list[SmtpServer]) -> None:
    def arrived() -> int:
        return sum(len(sink.received) for sink in sinks)

    wait_until(lambda: arrived() >= total, timeout=120, every=0.5, progress=arrived,
               what=f"{total} emails at the sinks")  # fmt: skip
    sent = lambda: sync.api(token).get("/api/v1/emails", {"status": "sent"}).json()["count"]  # noqa: E731
    wait_until(lambda: sent() == total, timeout=60, every=0.5, progress=sent,
               what="every email sent")  # fmt: skip


def test_a_paced_provider_gets_at_most_5_a_second_the_rest_fail_over(sites, sink, tmp_path):
    sync, queue = sites
    spare_sink = SmtpServer().start()
    try:
        token = create_account(sync, "paced-failover", smtp_port=sink.port)
        sync.factory("provider", "paced-failover", "smtp", "--name", "spare",
                     "--priority", "50", "--smtp-port", str(spare_sink.port))  # fmt: skip
        paced = _limit(sync, token, "sink")
        with celery_workers(sync, tmp_path) as workers:
            _send_both_ways(sync, queue, token, 100, "Failover")
            _wait_all_sent(sync, token, 200, [sink, spare_sink])
        assert any("deliver_emails[" in w.log_text() for w in workers), "the batch ran in Celery"

        ids = received_ids(sink) + received_ids(spare_sink)
        assert len(ids) == 200 and max(ids.values()) == 1, "every email once"
        times = _sends_via(sync, token, paced)
        assert len(times) == len(sink.received) >= LIMIT, "the paced provider carried mail"
        assert _most_in_a_second(times) <= LIMIT, times
        provider = sync.api(token).get(f"/api/v1/providers/{paced}").json()
        assert provider["circuit"]["state"] == "closed"
        assert provider["circuit"]["consecutive_failures"] == 0
    finally:
        spare_sink.stop()


def test_with_no_other_provider_the_rest_wait_for_a_slot(sites, sink, tmp_path):
    sync, queue = sites
    token = create_account(sync, "paced-wait", smtp_port=sink.port)
    paced = _limit(sync, token, "sink")
    with celery_workers(sync, tmp_path):
        _send_both_ways(sync, queue, token, 30, "Wait")
        _wait_all_sent(sync, token, 60, [sink])

    ids = received_ids(sink)
    assert len(ids) == 60 and max(ids.values()) == 1, "every email once, none failed"
    times = _sends_via(sync, token, paced)
    assert len(times) == 60 and _most_in_a_second(times) <= LIMIT, times
    # 60 at 5 a second: they waited for their slots, over at least 11 seconds.
    assert (times[-1] - times[0]).total_seconds() >= 60 / LIMIT - 1
    waited = [e for e in all_emails(sync, token) if e["tries"] > 1 or e["status"] != "sent"]
    assert not [e for e in waited if e["status"] == "failed"]
