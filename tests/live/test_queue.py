"""Queue mode with real parts: gunicorn, Celery worker processes, a Redis broker of the test's
own, the run's database (SQLite, or PostgreSQL when DATABASE_URL is set) and a real SMTP sink
counting Message-IDs. No email is lost, none is sent twice without being flagged."""

from __future__ import annotations

import time

import pytest

from harness.smtp import ScriptedHandler, SmtpServer
from harness.waiting import wait_until
from tests.queue_site import (
    account_with_sink,
    all_emails,
    count,
    post_many,
    queue_site,
    received_ids,
    settled,
)
from tests.workers import start_worker


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with queue_site(tmp_path_factory.mktemp("queue")) as server:
        yield server


def test_500_emails_are_delivered_exactly_once_by_two_workers(site, sink, tmp_path):
    token = account_with_sink(site, "bulk", sink)
    workers = []
    try:
        workers = [start_worker(site, tmp_path, name) for name in ("one", "two")]
        started = time.monotonic()
        posted = post_many(site, token, 500, "Bulk")
        posting = time.monotonic() - started
        # However slow the machine, the wait goes on while emails keep arriving at the sink.
        wait_until(lambda: count(site, token, "sent") == 500, timeout=120, every=0.5,
                   progress=lambda: len(sink.received), what="500 sent")  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()

    ids = received_ids(sink)
    assert len(sink.received) == 500
    assert set(ids) == {body["message_id"] for body in posted}
    assert max(ids.values()) == 1, "no message reached the sink twice"
    emails = all_emails(site, token)
    assert {e["status"] for e in emails} == {"sent"}
    assert not any(e["possible_duplicate"] for e in emails)
    done = [worker.tasks_done() for worker in workers]
    assert all(done), f"both worker processes delivered: {done}"
    print(f"500 emails: posted in {posting:.1f} s, all sent after {elapsed:.1f} s; tasks {done}")


def test_killing_a_worker_mid_run_loses_nothing_and_flags_what_may_be_doubled(site, tmp_path):
    # A slow sink (0.1 s per message) so that the kill lands while messages are being sent.
    sink = SmtpServer(ScriptedHandler(data_delay=0.1)).start()
    token = account_with_sink(site, "crash", sink)
    doomed = start_worker(site, tmp_path, "doomed")
    try:
        posted = post_many(site, token, 200, "Crash")
        wait_until(
            lambda: len(sink.received) >= 80 and count(site, token, "sending"),
            timeout=90,
            every=0.05,
            progress=lambda: len(sink.received),
            what="80 delivered and one being sent",
        )
    finally:
        doomed.kill()
    before = len(sink.received)
    # What the dead worker held: nobody can change these rows until the sweep takes them back.
    stuck = {e["id"] for e in all_emails(site, token) if e["status"] == "sending"}
    rescuer = start_worker(site, tmp_path, "rescuer", beat=True)
    try:
        wait_until(lambda: settled(site, token) == 200, timeout=120, every=0.5,
                   progress=lambda: len(sink.received), what="all 200 settled")  # fmt: skip
    finally:
        rescuer.stop()
        sink.stop()

    emails = all_emails(site, token)
    assert len(emails) == 200
    for e in emails:
        assert e["status"] == "sent" or (e["status"] == "failed" and e["failure_reason"]), e
    ids = received_ids(sink)
    assert set(ids) == {body["message_id"] for body in posted}, "none is missing at the sink"
    flagged = {e["message_id"] for e in emails if e["possible_duplicate"]}
    doubled = {message_id for message_id, times in ids.items() if times > 1}
    assert doubled <= flagged, "every email that reached the sink twice is flagged"
    # Only the tries the kill interrupted are flagged, not every email.
    assert {e["id"] for e in emails if e["possible_duplicate"]} <= stuck
    assert all(e["status"] == "sent" for e in emails if e["id"] in stuck)
    print(
        f"kill -9 after {before} of 200 at the sink: {len(stuck)} tries interrupted and taken "
        f"back, {len(flagged)} flagged possible_duplicate, {len(doubled)} received twice"
    )


def test_posts_while_the_broker_is_down_are_delivered_by_the_sweep(site, sink, tmp_path):
    token = account_with_sink(site, "outage", sink)
    worker = start_worker(site, tmp_path, "steady")
    try:
        site.broker.stop()
        started = time.monotonic()
        posted = post_many(site, token, 20, "Outage")
        assert time.monotonic() - started < 20, "a POST does not hang on a missing broker"
        assert count(site, token, "queued") == 20
        assert sink.received == []

        site.broker.start()  # the same port, empty: whatever was queued there is gone
        out = site.manage("deliver_pending")
        assert "enqueued 20" in out, out
        wait_until(lambda: count(site, token, "sent") == 20, timeout=90,
                   progress=lambda: len(sink.received), what="20 sent")  # fmt: skip
    finally:
        worker.stop()
    ids = received_ids(sink)
    assert set(ids) == {body["message_id"] for body in posted}
    assert max(ids.values()) == 1
