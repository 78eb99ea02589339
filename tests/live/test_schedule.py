"""Scheduled send with real parts: gunicorn in queue mode, a Celery worker running beat (the
sweep every second), the run's database and a real SMTP sink. A scheduled email reaches the sink
only after its time, and soon after (one sweep interval, plus a try); one canceled before its
time never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness.waiting import wait_until
from tests.queue_site import QUEUE_ENV, account_with_sink, email, email_body, queue_site
from tests.workers import start_worker

INTERVAL = float(QUEUE_ENV["SWEEP_INTERVAL_SECONDS"])
# What a try adds after the sweep queued it: the broker, a worker's claim, the SMTP exchange,
# on a shared machine that may be loaded.
TRY_SLACK = 10.0


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with queue_site(tmp_path_factory.mktemp("schedule")) as server:
        yield server


def test_a_scheduled_email_goes_after_its_time_and_a_canceled_one_never(site, sink, tmp_path):
    token = account_with_sink(site, "scheduler", sink)
    api = site.api(token)
    worker = start_worker(site, tmp_path, "beat", beat=True)
    try:
        send_at = datetime.now(UTC) + timedelta(seconds=6)
        body = {"send_at": send_at.isoformat()}
        kept = api.post("/api/v1/emails", email_body("Later") | body).json()
        dropped = api.post("/api/v1/emails", email_body("Never") | body).json()
        assert kept["status"] == dropped["status"] == "scheduled"
        assert api.post(f"/api/v1/emails/{dropped['id']}/cancel").status_code == 200

        wait_until(lambda: sink.received, timeout=60, every=0.1, what="the scheduled email")
        arrived = datetime.now(UTC)
        assert arrived >= send_at, "not before its time"
        sent = email(site, token, kept["id"])
        assert sent["status"] == "sent"
        late = (datetime.fromisoformat(sent["sent_at"]) - send_at).total_seconds()
        assert 0 <= late <= INTERVAL + TRY_SLACK, late
        # Several sweeps later the canceled one is still canceled and was never sent.
        sweeps = worker.log_text().count("mailer.tasks.sweep_outbox[")
        wait_until(lambda: worker.log_text().count("mailer.tasks.sweep_outbox[") >= sweeps + 6,
                   timeout=60, what="three more sweeps")  # fmt: skip
    finally:
        worker.stop()
    assert [r.message["Subject"] for r in sink.received] == ["Later"]
    assert email(site, token, dropped["id"])["status"] == "canceled"
