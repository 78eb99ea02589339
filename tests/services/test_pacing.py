"""Pacing in failover, against the real Redis and real SMTP/SES stand-ins: a provider at its
max_per_second is passed over (a skipped attempt saying why, nothing counted towards its
circuit); when no other provider can take the email it waits for the next slot within
PACING_WAIT_SECONDS, and past that it is queued for the slot, never failed; SES counts
recipients; limits are set, refused and shown through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from harness.factories import loopback_smtp
from mailer.delivery.breaker import breaker
from mailer.delivery.pacing import pacer
from mailer.models import Email, EmailStatus
from mailer.services import email_process, email_send
from mailer.vocabulary import CircuitState
from tests.conftest import outgoing
from tests.fakes.ses import DUMMY_KEYS, REGION


def _windows_ok(times: list, limit: int) -> bool:
    """No 1-second span holds more than `limit` of the (sorted) times."""
    times = sorted(times)
    return all(
        (times[i + limit] - times[i]).total_seconds() >= 1 for i in range(len(times) - limit)
    )


def _outcomes(email: Email) -> list[tuple[str, str, str]]:
    return [(a.provider_name, a.outcome, a.error_code) for a in email.attempts.all()]


@pytest.mark.django_db
def test_a_provider_at_its_limit_is_passed_over_and_its_circuit_stays_closed(
    add_provider, smtp_server, smtp_sink, settings
):
    settings.PACING_WAIT_SECONDS = 0
    paced = add_provider("smtp", name="paced", settings=loopback_smtp(smtp_sink.port),
                         priority=1, max_per_second=2)  # fmt: skip
    add_provider("smtp", name="spare", settings=loopback_smtp(smtp_sink.port), priority=2)
    emails = [email_send(account=paced.account, outgoing=outgoing()).email for _ in range(5)]

    via = [e.sent_via.name for e in emails]
    assert via.count("paced") == 2 and via.count("spare") == 3, via
    passed_over = next(e for e in emails if e.sent_via.name == "spare")
    [skip, then] = passed_over.attempts.all()
    assert (skip.outcome, skip.error_code, then.outcome) == ("skipped", "paced", "sent")
    assert "at its limit of 2 a second" in skip.error_message
    state = breaker().state(paced.breaker_key)
    assert state.state == CircuitState.CLOSED and state.failures == 0


@pytest.mark.django_db
def test_with_no_other_provider_a_send_waits_for_the_next_slot(add_provider, smtp_sink, settings):
    settings.PACING_WAIT_SECONDS = 10
    paced = add_provider("smtp", name="paced", settings=loopback_smtp(smtp_sink.port),
                         max_per_second=2)  # fmt: skip
    emails = [email_send(account=paced.account, outgoing=outgoing()).email for _ in range(6)]

    assert {e.status for e in emails} == {EmailStatus.SENT}
    assert len(smtp_sink.received) == 6
    sends = [a.started_at for e in emails for a in e.attempts.all() if a.outcome == "sent"]
    assert len(sends) == 6 and _windows_ok(sends, 2)
    waited = [e for e in emails if [o for _, o, _ in _outcomes(e)] == ["skipped", "sent"]]
    assert waited, "some sends were told to wait, then went through the same provider"


@pytest.mark.django_db
def test_sync_send_past_the_wait_is_accepted_queued_for_the_slot(
    add_provider, smtp_sink, settings, api
):
    settings.PACING_WAIT_SECONDS = 0
    add_provider("smtp", name="paced", settings=loopback_smtp(smtp_sink.port), max_per_day=1)
    body = {"from": "shop@example.com", "to": ["ann@example.org"], "subject": "Hi", "text": "x"}
    assert api.post("/api/v1/emails", body).status_code == 201
    answer = api.post("/api/v1/emails", body)
    assert answer.status_code == 202, answer.json()
    waiting = answer.json()
    assert waiting["status"] == "queued"
    assert waiting["failure_reason"].startswith("Waiting for a pacing slot:")
    assert "at its limit of 1 a day" in waiting["failure_reason"]
    due = Email.objects.get(pk=waiting["id"]).next_attempt_at
    assert timezone.now() + timedelta(minutes=1) < due <= timezone.now() + timedelta(hours=24)
    assert [(a["outcome"], a["error_code"]) for a in waiting["attempts"]] == [("skipped", "paced")]
    assert len(smtp_sink.received) == 1


@pytest.mark.django_db
def test_queue_mode_an_email_every_provider_paces_waits_instead_of_failing(
    add_provider, smtp_sink, settings
):
    settings.DELIVERY_MODE = "queue"
    settings.PACING_WAIT_SECONDS = 0
    paced = add_provider("smtp", name="paced", settings=loopback_smtp(smtp_sink.port),
                         max_per_second=1)  # fmt: skip
    from unittest import mock

    with mock.patch("mailer.services.enqueue._publish"):
        first = email_send(account=paced.account, outgoing=outgoing()).email
        second = email_send(account=paced.account, outgoing=outgoing()).email
    assert email_process(email_id=first.pk) == EmailStatus.SENT
    assert email_process(email_id=second.pk) == EmailStatus.QUEUED
    second.refresh_from_db()
    assert second.failure_reason.startswith("Waiting for a pacing slot")
    assert second.next_attempt_at <= timezone.now() + timedelta(seconds=1.1)
    assert second.enqueued_at is None  # the sweep enqueues it when the slot comes
    assert len(smtp_sink.received) == 1


@pytest.mark.django_db
def test_ses_is_paced_by_recipients(add_provider, ses, settings):
    settings.PACING_WAIT_SECONDS = 0
    ses.verify("example.com")
    aws = add_provider("ses", name="aws", settings={"region": REGION,
                       "endpoint_url": ses.endpoint_url}, secrets=DUMMY_KEYS,
                       max_per_second=4)  # fmt: skip
    three = outgoing(to=["a@example.org", "b@example.org", "c@example.org"])
    first = email_send(account=aws.account, outgoing=three).email
    assert first.status == EmailStatus.SENT
    assert pacer().usage([aws.breaker_key])[aws.breaker_key].last_second == 3
    second = email_send(account=aws.account, outgoing=three).email  # 3 + 3 > 4: waits
    assert second.status == EmailStatus.QUEUED
    assert _outcomes(second) == [("aws", "skipped", "paced")]


@pytest.mark.django_db
def test_limits_are_set_refused_and_shown_through_the_api(api, add_provider, smtp_sink):
    config = add_provider("smtp", name="paced", settings=loopback_smtp(smtp_sink.port))
    url = f"/api/v1/providers/{config.pk}"
    assert api.get(url).json()["pacing"] == {
        "max_per_second": None, "max_per_day": None, "counts": "messages", "usage": None
    }  # fmt: skip
    changed = api.patch(url, {"max_per_second": 5, "max_per_day": 200})
    assert changed.status_code == 200, changed.json()
    assert changed.json()["pacing"]["usage"] == {"last_second": 0, "last_day": 0}
    sent = {"from": "a@example.com", "to": "b@example.org", "subject": "Hi", "text": "x"}
    assert api.post("/api/v1/emails", sent).status_code == 201
    listed = api.get("/api/v1/providers").json()["results"][0]["pacing"]
    assert listed["max_per_second"] == 5 and listed["usage"]["last_day"] == 1

    for bad in ({"max_per_second": 0}, {"max_per_day": -3}, {"max_per_second": "5"},
                {"max_per_second": True}, {"max_per_day": 10**12}):  # fmt: skip
        answer = api.patch(url, bad)
        assert answer.status_code == 422, (bad, answer.json())
        assert answer.json()["errors"][0]["field"].startswith("max_per_")
    cleared = api.patch(url, {"max_per_second": None})
    assert cleared.json()["pacing"]["max_per_second"] is None
    assert cleared.json()["pacing"]["max_per_day"] == 200
