"""The sweep's chunk messages with real parts: due emails go on the broker a chunk a message,
and however many messages name an email (chunks, repeated chunks, single messages) and however
the worker processes race for them, each email reaches the sink exactly once."""

from __future__ import annotations

import math

import pytest
import redis
from celery import Celery

from harness.waiting import wait_until
from mailer.services.enqueue import DELIVER_CHUNK_TASK, DELIVER_TASK, chunk_size
from tests.queue_site import (
    account_with_sink,
    all_emails,
    count,
    post_many,
    queue_site,
    received_ids,
)
from tests.workers import start_worker

QUEUE = "emailservice"  # CELERY_TASK_DEFAULT_QUEUE


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with queue_site(tmp_path_factory.mktemp("chunks")) as server:
        yield server


def _publish_again(broker_url: str, ids: list[int]) -> None:
    """What a broker redelivering, or a sweep racing another, could add: every email again in
    chunks of other bounds and order, and each on a single message as a POST would put it."""
    client = Celery("racing", broker=broker_url)
    try:
        backwards = ids[::-1]
        for start in range(0, len(backwards), 7):
            client.send_task(DELIVER_CHUNK_TASK, args=[backwards[start : start + 7]], queue=QUEUE)
        for pk in ids:
            client.send_task(DELIVER_TASK, args=[pk], queue=QUEUE)
    finally:
        client.close()


def test_the_sweep_enqueues_chunks_and_racing_messages_send_each_email_once(site, sink, tmp_path):
    token = account_with_sink(site, "chunks", sink)
    site.broker.stop()  # the POSTs can't enqueue: the emails wait for the sweep
    posted = post_many(site, token, 40, "Chunk")
    site.broker.start()
    assert count(site, token, "queued") == 40

    out = site.manage("deliver_pending")
    assert "enqueued 40" in out, out
    broker = redis.Redis.from_url(site.broker.url)
    assert broker.llen(QUEUE) == math.ceil(40 / chunk_size(40)), "one message a chunk"
    _publish_again(site.broker.url, [body["id"] for body in posted])

    workers = []
    try:
        workers = [start_worker(site, tmp_path, name) for name in ("left", "right")]
        wait_until(lambda: count(site, token, "sent") == 40, timeout=120, every=0.5,
                   progress=lambda: len(sink.received), what="40 sent")  # fmt: skip
        wait_until(lambda: broker.llen(QUEUE) == 0, timeout=60, what="every message taken")
    finally:
        for worker in workers:
            worker.stop()

    ids = received_ids(sink)
    assert set(ids) == {body["message_id"] for body in posted}
    assert max(ids.values()) == 1, "no message reached the sink twice"
    emails = all_emails(site, token)
    assert {e["status"] for e in emails} == {"sent"} and {e["tries"] for e in emails} == {1}
    assert not any(e["possible_duplicate"] for e in emails)
    logs = "".join(worker.log_text() for worker in workers)
    assert f"{DELIVER_CHUNK_TASK}[" in logs, "chunk messages were run"
