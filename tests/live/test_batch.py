"""The batch send with real parts: gunicorn in queue mode, two Celery workers, a Redis broker of
the test's own, the run's database and a real SMTP sink counting Message-IDs. A batch of 500 is
stored in one request, goes to the workers in chunk messages, and each email reaches the sink
exactly once; bad items are named and the rest go out."""

from __future__ import annotations

import pytest

from harness.waiting import wait_until
from tests.queue_site import (
    account_with_sink,
    all_emails,
    count,
    queue_site,
    received_ids,
)
from tests.workers import start_worker

BAD = {17: {"to": "not an address"}, 250: {"from": ""}, 499: {"cc": ["a\r\nBcc: x@y.z"]}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with queue_site(tmp_path_factory.mktemp("batch")) as server:
        yield server


def _batch(count: int, subject: str, bad: dict[int, dict] | None = None) -> list[dict]:
    bad = bad or {}
    return [{"from": "shop@example.com", "to": f"c{i}@example.org", "subject": f"{subject} {i}",
             "text": "Thanks."} | bad.get(i, {}) for i in range(count)]  # fmt: skip


def _send_and_drain(site, sink, tmp_path, token: str, emails: list[dict]) -> dict:
    """POST the batch while two workers run; wait until the sink has every stored email and
    each is `sent` (the waits go on as long as emails keep arriving). The batch's answer."""
    workers = []
    try:
        workers = [start_worker(site, tmp_path, name) for name in ("one", "two")]
        answer = site.api(token).post("/api/v1/emails/batch", {"emails": emails})
        assert answer.status_code == 202, answer
        body = answer.json()
        wait_until(lambda: len(sink.received) >= body["stored"], timeout=120, every=0.5,
                   progress=lambda: len(sink.received), what="every email at the sink")  # fmt: skip
        sent = lambda: count(site, token, "sent")  # noqa: E731
        wait_until(lambda: sent() == body["stored"], timeout=60, every=0.5, progress=sent,
                   what="every email sent")  # fmt: skip
    finally:
        for worker in workers:
            worker.stop()
    assert any("mailer.tasks.deliver_emails[" in w.log_text() for w in workers), "chunks ran"
    return body


def test_a_batch_of_500_is_delivered_exactly_once_by_two_workers(site, sink, tmp_path):
    token = account_with_sink(site, "batch", sink)
    body = _send_and_drain(site, sink, tmp_path, token, _batch(500, "Batch"))
    assert (body["stored"], body["refused"]) == (500, 0)
    assert [r["index"] for r in body["results"]] == list(range(500))

    ids = received_ids(sink)
    assert len(sink.received) == 500 and max(ids.values()) == 1, "no message twice"
    subjects = {received.message["Subject"] for received in sink.received}
    assert subjects == {f"Batch {i}" for i in range(500)}
    emails = all_emails(site, token)
    assert len(emails) == 500 and {e["status"] for e in emails} == {"sent"}
    assert set(ids) == {e["message_id"] for e in emails}
    assert not any(e["possible_duplicate"] for e in emails)


def test_a_batch_with_3_bad_items_stores_497_and_names_the_3(site, sink, tmp_path):
    token = account_with_sink(site, "batch-bad", sink)
    body = _send_and_drain(site, sink, tmp_path, token, _batch(500, "Mixed", BAD))
    assert (body["stored"], body["refused"]) == (497, 3)
    named = {r["index"]: r["problem"] for r in body["results"] if "problem" in r}
    assert set(named) == set(BAD)
    assert all(p["status"] == 422 and p["errors"] for p in named.values())

    ids = received_ids(sink)
    assert len(sink.received) == 497 and max(ids.values()) == 1, "no message twice"
    subjects = {received.message["Subject"] for received in sink.received}
    assert subjects == {f"Mixed {i}" for i in range(500) if i not in BAD}
    assert {e["status"] for e in all_emails(site, token)} == {"sent"}
