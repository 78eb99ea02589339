"""Queue mode's services in process, against real SMTP servers: the claim, retries and their
backoff, taking back an interrupted try, and the sweep (inline, as `deliver_pending` runs it)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from harness.factories import loopback_smtp
from mailer.models import DeliveryAttempt, Email, EmailStatus
from mailer.services import (
    email_claim,
    email_create,
    email_process,
    email_release,
    email_send,
    emails_sweep,
    retry_delay,
)
from tests.conftest import outgoing

pytestmark = pytest.mark.django_db

EMAIL = {"from": "shop@example.com", "to": "ann@example.org", "subject": "Hi", "text": "Hello."}


@pytest.fixture
def queue_mode(settings):
    settings.DELIVERY_MODE = "queue"
    settings.RETRY_BASE_SECONDS = 60
    settings.RETRY_MAX_SECONDS = 3600
    settings.MAX_DELIVERY_AGE = 24 * 3600
    return settings


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


def _queued(account) -> Email:
    email, _ = email_create(account=account, outgoing=outgoing(), queued=True)
    return email


def test_queue_mode_stores_queued_and_answers_202(
    api, queue_mode, sink_provider, smtp_sink, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:  # what would be published
        response = api.post("/api/v1/emails", EMAIL)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["tries"] == 0 and body["next_attempt_at"]
    assert len(callbacks) == 2  # the list cache bump and the enqueue, after commit
    assert smtp_sink.received == []
    assert email_process(email_id=body["id"]) == "sent"
    assert api.get(f"/api/v1/emails/{body['id']}").json()["status"] == "sent"


def test_queue_mode_replays_a_queued_idempotent_request_as_202(
    api, queue_mode, sink_provider, django_capture_on_commit_callbacks
):
    headers = {"Idempotency-Key": "order-7"}
    with django_capture_on_commit_callbacks():
        first = api.post("/api/v1/emails", EMAIL, headers=headers)
        again = api.post("/api/v1/emails", EMAIL, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"


def test_only_one_claim_wins_and_a_repeated_message_sends_nothing(
    account, sink_provider, smtp_sink
):
    email = _queued(account)
    claimed = email_claim(email_id=email.pk)
    assert claimed is not None and claimed.status == EmailStatus.SENDING and claimed.tries == 1
    assert email_claim(email_id=email.pk) is None
    assert email_process(email_id=email.pk) == "not claimed"
    assert smtp_sink.received == []


def test_a_retry_is_not_claimed_before_it_is_due(account):
    email = _queued(account)
    Email.objects.filter(pk=email.pk).update(
        tries=1, next_attempt_at=timezone.now() + timedelta(minutes=1)
    )
    assert email_claim(email_id=email.pk) is None


def test_retry_delay_doubles_with_jitter_up_to_the_maximum(queue_mode):
    for tries, base in ((1, 60), (2, 120), (3, 240), (6, 1920)):
        delays = [retry_delay(tries) for _ in range(50)]
        assert all(0.8 * base <= d <= 1.2 * base for d in delays), (tries, delays)
        assert len(set(delays)) > 1, "jittered"
    assert retry_delay(20) == 3600


def test_all_providers_down_queues_again_with_backoff(
    account, add_provider, closed_port, queue_mode
):
    add_provider("smtp", name="down", settings=loopback_smtp(closed_port))
    email = _queued(account)
    before = timezone.now()
    assert email_process(email_id=email.pk) == "queued"
    email.refresh_from_db()
    assert email.tries == 1 and email.enqueued_at is None
    assert before + timedelta(seconds=47) <= email.next_attempt_at
    assert email.next_attempt_at <= timezone.now() + timedelta(seconds=73)
    assert email.failure_reason.startswith("Try 1 failed: No provider accepted the message")


def test_rejected_fails_at_once_in_queue_mode(account, add_provider, smtp_server, queue_mode):
    from harness.smtp import ScriptedHandler

    bad = smtp_server(ScriptedHandler(rcpt_replies={"rcpt@example.org": "550 5.1.1 no such user"}))
    add_provider("smtp", name="strict", settings=loopback_smtp(bad.port))
    email = _queued(account)
    assert email_process(email_id=email.pk) == "failed"
    email.refresh_from_db()
    assert email.tries == 1 and "rejected" in email.failure_reason


def test_past_max_age_the_try_fails_with_the_reason(account, add_provider, closed_port, queue_mode):
    add_provider("smtp", name="down", settings=loopback_smtp(closed_port))
    email = _queued(account)
    Email.objects.filter(pk=email.pk).update(
        created_at=timezone.now() - timedelta(hours=25), tries=6, next_attempt_at=timezone.now()
    )
    assert email_process(email_id=email.pk) == "failed"
    email.refresh_from_db()
    assert email.failure_reason.startswith("Gave up after 7 tries over 1 d 1 h: No provider")


def test_sync_mode_keeps_one_try_and_fails_at_once(account, add_provider, closed_port):
    add_provider("smtp", name="down", settings=loopback_smtp(closed_port))
    email = email_send(account=account, outgoing=outgoing()).email
    assert email.status == EmailStatus.FAILED and email.tries == 1
    assert email.failure_reason.startswith("No provider accepted the message")


def _interrupted(account, *, attempt: str | None) -> Email:
    """An email whose worker died during try 1, after recording `attempt` (if any)."""
    email = email_claim(email_id=_queued(account).pk)
    config = account.provider_configs.first()
    if attempt is not None:
        DeliveryAttempt.objects.create(
            email=email, provider=config, provider_kind="smtp", provider_name=config.name,
            outcome=attempt, provider_message_id="<id@sink>", started_at=timezone.now(),
            error_message="550 no such user" if attempt == "rejected" else "",
        )  # fmt: skip
    return email


def test_a_try_that_recorded_sent_is_taken_back_as_sent_without_sending_again(
    account, sink_provider, smtp_sink
):
    email = _interrupted(account, attempt="sent")
    assert email_release(email=email, why="test") == "sent"
    email.refresh_from_db()
    assert email.sent_via == sink_provider and email.provider_message_id == "<id@sink>"
    assert not email.possible_duplicate
    assert smtp_sink.received == []


def test_a_try_that_recorded_rejected_is_taken_back_as_failed(account, sink_provider):
    email = _interrupted(account, attempt="rejected")
    assert email_release(email=email, why="test") == "failed"
    assert Email.objects.get(pk=email.pk).failure_reason.endswith("550 no such user")


def test_an_interrupted_try_is_queued_again_and_flagged(account, sink_provider, smtp_sink):
    email = _interrupted(account, attempt=None)
    assert email_release(email=email, why="its worker stopped") == "queued"
    email.refresh_from_db()
    assert email.possible_duplicate and email.next_attempt_at <= timezone.now()
    assert email.failure_reason == "Try 1: its worker stopped."


def test_sweep_takes_back_expired_leases_and_delivers_due_emails_inline(
    account, sink_provider, smtp_sink, settings
):
    settings.SENDING_LEASE_SECONDS = 600
    settings.REQUEUE_AFTER_SECONDS = 300
    stuck = _interrupted(account, attempt=None)
    Email.objects.filter(pk=stuck.pk).update(claimed_at=timezone.now() - timedelta(minutes=11))
    lost = _queued(account)
    Email.objects.filter(pk=lost.pk).update(enqueued_at=None)
    fresh = _queued(account)  # on a live message: left alone
    report = emails_sweep(inline=True)
    assert (report.released, report.delivered, report.waiting) == (1, 2, 0)
    statuses = dict(Email.objects.values_list("pk", "status"))
    assert statuses == {stuck.pk: "sent", lost.pk: "sent", fresh.pk: "queued"}
    assert Email.objects.get(pk=stuck.pk).possible_duplicate
    assert len(smtp_sink.received) == 2


def test_deliver_pending_in_sync_mode_delivers_inline(account, sink_provider, smtp_sink, capsys):
    lost = _queued(account)
    Email.objects.filter(pk=lost.pk).update(enqueued_at=None)
    call_command("deliver_pending")
    assert "delivered 1" in capsys.readouterr().out
    assert Email.objects.get(pk=lost.pk).status == EmailStatus.SENT
