"""Webhooks out under real processes (issue 12, item 4): gunicorn in sync mode with the sweep
loop beside it (`manage.py deliver_pending --loop`, as `make run` starts it). An email sent
through the API reaches a receiver that verifies every request with the standardwebhooks
library, and "send again" goes out with the same webhook-id, without any test calling the
sweep. In queue mode a Celery worker makes the first try and beat's sweep enqueues the retry."""

from __future__ import annotations

import signal
import sys

import pytest

from harness import procs
from harness.smtp import SmtpServer
from harness.waiting import wait_until
from tests.appserver import create_account, start_app_server
from tests.fakes.webhook_receiver import receiver_fixture  # noqa: F401 (a fixture)
from tests.queue_site import account_with_sink, email_body, start_queue_site
from tests.workers import start_worker


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hooks-out")
    sink = SmtpServer().start()
    server = start_app_server(tmp, workers=2)
    log = tmp / "sweep.log"
    sweep = procs.start(
        [sys.executable, "manage.py", "deliver_pending", "--loop", "--interval", "0.2"],
        env={**server.env, "PYTHONUNBUFFERED": "1"},
        log=log,
    )
    try:
        wait_until(lambda: "Sweeping the outbox" in log.read_text(), timeout=120,
                   process=sweep, what="the sweep loop to start")  # fmt: skip
        server.sweep, server.sweep_log, server.sink = sweep, log, sink
        yield server
    finally:
        sweep.send_signal(signal.SIGTERM)
        procs.stop_group(sweep, sig=None, grace=30)
        server.stop()
        sink.stop()


def arrived(hook, sweep, event_type: str, count: int = 1) -> list:
    return wait_until(
        lambda: len(hook.of_type(event_type)) >= count and hook.of_type(event_type),
        timeout=60, process=sweep, what=f"{count} {event_type} at the receiver",
    )  # fmt: skip


def test_an_event_reaches_a_verifying_receiver_through_the_sweep_loop(live, receiver):
    api = live.api(create_account(live, "hooked", smtp_port=live.sink.port))
    hook = receiver(status=500)  # failing at first
    created = api.post("/api/v1/webhooks", {"url": hook.url, "event_types": ["email.sent"]})
    assert created.status_code == 201, created
    hook.secret = created.json()["secret"]
    endpoint = created.json()["id"]

    sent = api.post("/api/v1/emails", {"from": "shop@example.com", "to": "ann@example.org",
                                       "subject": "Order 1", "text": "Thanks."})  # fmt: skip
    assert sent.status_code == 201, sent
    [first] = arrived(hook, live.sweep, "email.sent")
    assert hook.refused == [] and first.answered == 500
    assert first.data["email_id"] == sent.json()["id"] and first.data["status"] == "sent"
    assert first.data["provider"]["name"] == "sink"

    hook.status = 200
    [delivery] = api.get(f"/api/v1/webhooks/{endpoint}/deliveries").json()["results"]
    assert delivery["webhook_id"] == first.webhook_id and delivery["last_status_code"] == 500
    again = api.post(f"/api/v1/webhooks/{endpoint}/deliveries/{delivery['id']}/retry")
    assert again.status_code == 202, again
    _, second = arrived(hook, live.sweep, "email.sent", count=2)
    assert second.webhook_id == first.webhook_id and second.answered == 200
    assert second.payload == first.payload and hook.refused == []
    done = wait_until(
        lambda: (d := api.get(f"/api/v1/webhooks/{endpoint}/deliveries").json()["results"][0])
        and d["status"] == "delivered" and d,
        timeout=60, process=live.sweep, what="the delivery stored as delivered",
    )  # fmt: skip
    # 2, or 3 when the schedule's own retry (5 s after the first) came first on a slow machine
    assert done["tries"] >= 2 and done["last_status_code"] == 200 and done["delivered_at"]
    assert "webhooks 1" in live.sweep_log.read_text()


def test_queue_mode_sends_through_a_worker_and_beat_sends_the_retry(tmp_path, receiver):
    server, broker = start_queue_site(tmp_path)
    sink, worker = SmtpServer().start(), None
    try:
        worker = start_worker(server, tmp_path, "hooks", beat=True)
        api = server.api(account_with_sink(server, "queued", sink))
        hook = receiver(status=500)
        created = api.post("/api/v1/webhooks", {"url": hook.url, "event_types": ["email.sent"]})
        hook.secret = created.json()["secret"]
        assert api.post("/api/v1/emails", email_body("Order 2")).status_code == 202
        # The email's worker stores email.sent; its message's task makes the first try.
        [first] = arrived(hook, worker.process, "email.sent")
        assert first.answered == 500 and hook.refused == []
        hook.status = 200
        # Its retry is due in 5 s: make it due now; beat's sweep puts it on the broker.
        server.manage("shell", "-c", DUE_NOW)
        _, second = arrived(hook, worker.process, "email.sent", count=2)
        assert second.webhook_id == first.webhook_id and second.answered == 200
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        broker.stop()
        sink.stop()


DUE_NOW = (
    "from django.utils import timezone; from mailer.models import WebhookMessage; "
    "WebhookMessage.objects.filter(status='pending').update(next_attempt_at=timezone.now())"
)
