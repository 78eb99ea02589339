"""A batch against a misbehaving far end, with real parts: gunicorn in queue mode whose broker
hangs (a TCP server that accepts and never answers) answers the batch within the broker's
socket timeout, with every email stored `queued` and marked as on no message, so the sweep
enqueues them once the broker answers; nothing is lost and no request hangs."""

from __future__ import annotations

import time

import pytest

from harness.smtp import Blackhole
from tests.appserver import start_app_server
from tests.queue_site import QUEUE_ENV, account_with_sink, all_emails


@pytest.fixture(scope="module")
def hung_broker_site(tmp_path_factory):
    hole = Blackhole().start()
    server = start_app_server(tmp_path_factory.mktemp("hung-broker"), workers=2, **QUEUE_ENV,
                              CELERY_BROKER_URL=f"redis://127.0.0.1:{hole.port}/0")  # fmt: skip
    try:
        yield server
    finally:
        server.stop()
        hole.stop()


def test_a_batch_while_the_broker_hangs_answers_in_bounded_time_and_loses_nothing(
    hung_broker_site, sink
):
    site = hung_broker_site
    token = account_with_sink(site, "hung", sink)
    emails = [{"from": "shop@example.com", "to": f"c{i}@example.org", "subject": f"Hung {i}",
               "text": "Thanks."} for i in range(50)]  # fmt: skip
    started = time.monotonic()
    answer = site.api(token).post("/api/v1/emails/batch", {"emails": emails})
    took = time.monotonic() - started
    assert answer.status_code == 202, answer
    assert answer.json()["stored"] == 50
    # The broker's socket timeouts (2 s connect, 5 s read) bound it, whatever the broker does;
    # with room for a loaded machine, well under the web timeout.
    assert took < 20, took

    stored = all_emails(site, token)
    assert len(stored) == 50 and {e["status"] for e in stored} == {"queued"}
    on_no_message = site.factory("rows", "mailer.Email", "--fields", "enqueued_at")
    assert all(row["enqueued_at"] is None for row in on_no_message), "left for the sweep"
    assert not sink.received
    # The site still answers other requests meanwhile.
    assert site.api(token).get("/api/v1/emails", {"page_size": 1}).status_code == 200
