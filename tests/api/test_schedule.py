"""Scheduled send, cancel and resend through the API, against a real SMTP sink: a scheduled email
is stored `scheduled` and no provider sees it before its time; the sweep sends it once its time
has come; a canceled one is never sent; a failed one is resent as a new email linked to it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from harness.factories import loopback_smtp
from harness.smtp import ScriptedHandler
from mailer.models import Email, EmailStatus
from mailer.services import emails_sweep

SEND = {"from": "shop@example.com", "to": ["ann@example.org"], "subject": "Hi", "text": "Hello"}


def _at(delta: timedelta) -> str:
    return (timezone.now() + delta).isoformat()


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


def _come_due(email_id: int) -> None:
    """Move a scheduled email's time into the past, as the clock would."""
    past = timezone.now() - timedelta(seconds=1)
    Email.objects.filter(pk=email_id).update(send_at=past, next_attempt_at=past)


@pytest.mark.parametrize("mode", ["sync", "queue"])
def test_a_scheduled_email_waits_for_its_time_then_the_sweep_sends_it(
    api, sink_provider, smtp_sink, settings, mode, monkeypatch
):
    settings.DELIVERY_MODE = mode
    published = []
    monkeypatch.setattr("mailer.services.enqueue._publish_chunk", lambda c, p: published.append(c))
    answer = api.post("/api/v1/emails", SEND | {"send_at": _at(timedelta(hours=2))})
    assert answer.status_code == 202, answer.json()
    body = answer.json()
    assert body["status"] == "scheduled" and body["send_at"] and not body["attempts"]

    emails_sweep(inline=mode == "sync")  # not due yet: nothing moves
    email = Email.objects.get(pk=body["id"])
    assert email.status == EmailStatus.SCHEDULED and not smtp_sink.received and not published
    listed = api.get("/api/v1/emails", {"status": "scheduled"}).json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]

    _come_due(body["id"])
    emails_sweep(inline=mode == "sync")
    if mode == "queue":  # the sweep put it on the broker; a worker's try is email_process
        assert published == [[body["id"]]]
        from mailer.services import email_process

        email_process(email_id=body["id"])
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT
    assert len(smtp_sink.received) == 1


def test_send_at_in_the_past_sends_now(api, sink_provider, smtp_sink):
    answer = api.post("/api/v1/emails", SEND | {"send_at": _at(-timedelta(minutes=5))})
    assert answer.status_code == 201, answer.json()
    assert answer.json()["send_at"] is None and len(smtp_sink.received) == 1


@pytest.mark.parametrize(
    ("send_at", "says"),
    [
        ("2026-12-24T09:00:00", "time zone"),
        (None, "at most 30 days ahead"),
        ("tomorrow", "datetime"),
    ],
)
def test_a_bad_send_at_is_a_422_naming_it_and_nothing_is_stored(api, sink_provider, send_at, says):
    value = send_at or _at(timedelta(days=30, minutes=1))
    answer = api.post("/api/v1/emails", SEND | {"send_at": value})
    assert answer.status_code == 422, answer.json()
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == ["send_at"]
    assert says in (problem["detail"] + str(problem["errors"]))
    assert not Email.objects.exists()


def test_the_longest_schedule_is_accepted(api, sink_provider):
    answer = api.post("/api/v1/emails", SEND | {"send_at": _at(timedelta(days=29, hours=23))})
    assert answer.status_code == 202 and answer.json()["status"] == "scheduled"


def test_a_canceled_email_is_never_sent(api, sink_provider, smtp_sink):
    body = api.post("/api/v1/emails", SEND | {"send_at": _at(timedelta(hours=1))}).json()
    answer = api.post(f"/api/v1/emails/{body['id']}/cancel", {})
    assert answer.status_code == 200, answer.json()
    assert answer.json()["status"] == "canceled" and answer.json()["next_attempt_at"] is None

    _come_due(body["id"])
    emails_sweep(inline=True)
    assert Email.objects.get(pk=body["id"]).status == EmailStatus.CANCELED
    assert not smtp_sink.received
    again = api.post(f"/api/v1/emails/{body['id']}/cancel", {})
    assert again.status_code == 409 and "canceled" in again.json()["detail"]


def test_a_queued_email_can_be_canceled_and_a_worker_then_turns_it_away(
    api, sink_provider, smtp_sink, settings, monkeypatch
):
    settings.DELIVERY_MODE = "queue"
    monkeypatch.setattr("mailer.services.enqueue._publish", lambda email_id: None)
    body = api.post("/api/v1/emails", SEND).json()
    assert body["status"] == "queued"
    assert api.post(f"/api/v1/emails/{body['id']}/cancel", {}).status_code == 200
    from mailer.services import email_process

    assert email_process(email_id=body["id"]) == "not claimed"
    assert not smtp_sink.received


@pytest.mark.parametrize("status", [EmailStatus.SENDING, EmailStatus.SENT, EmailStatus.FAILED])
def test_cancel_is_a_409_once_delivery_started_or_ended(api, sink_provider, status):
    body = api.post("/api/v1/emails", SEND | {"send_at": _at(timedelta(hours=1))}).json()
    Email.objects.filter(pk=body["id"]).update(status=status)
    answer = api.post(f"/api/v1/emails/{body['id']}/cancel", {})
    assert answer.status_code == 409
    assert status in answer.json()["detail"]
    assert Email.objects.get(pk=body["id"]).status == status


def test_cancel_and_resend_of_another_accounts_email_are_404(
    api, other_account, add_provider, smtp_sink
):
    from mailer.services import email_send
    from tests.conftest import outgoing

    add_provider("smtp", owner=other_account, name="theirs", settings=loopback_smtp(smtp_sink.port))
    theirs = email_send(account=other_account, outgoing=outgoing()).email
    for action in ("cancel", "resend"):
        assert api.post(f"/api/v1/emails/{theirs.pk}/{action}", {}).status_code == 404


def test_a_failed_email_is_resent_as_a_new_email_linked_to_it(
    api, add_provider, smtp_server, smtp_sink
):
    broken = smtp_server(ScriptedHandler(mail_reply="550 5.7.1 Relaying denied"))
    provider = add_provider("smtp", name="broken", settings=loopback_smtp(broken.port))
    attachment = {"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}
    first = api.post("/api/v1/emails", SEND | {"attachments": [attachment]})
    assert first.status_code == 502
    original = first.json()

    provider.settings = loopback_smtp(smtp_sink.port)  # mended
    provider.save()
    answer = api.post(f"/api/v1/emails/{original['id']}/resend", {})
    assert answer.status_code == 201, answer.json()
    resent = answer.json()
    assert resent["id"] != original["id"] and resent["resent_from"] == original["id"]
    assert resent["status"] == "sent" and resent["subject"] == original["subject"]
    assert resent["attachments"] == original["attachments"]
    [received] = smtp_sink.received
    assert received.message["Subject"] == "Hi"
    detail = api.get(f"/api/v1/emails/{original['id']}").json()
    assert detail["status"] == "failed" and detail["resends"] == [resent["id"]]


def test_resend_is_a_409_for_an_email_that_did_not_fail(api, sink_provider):
    sent = api.post("/api/v1/emails", SEND).json()
    answer = api.post(f"/api/v1/emails/{sent['id']}/resend", {})
    assert answer.status_code == 409 and "only a failed email" in answer.json()["detail"]
    assert Email.objects.count() == 1


def test_resend_with_an_idempotency_key_sends_once(api, add_provider, smtp_server, smtp_sink):
    broken = smtp_server(ScriptedHandler(mail_reply="550 5.7.1 Relaying denied"))
    provider = add_provider("smtp", name="broken", settings=loopback_smtp(broken.port))
    original = api.post("/api/v1/emails", SEND).json()
    provider.settings = loopback_smtp(smtp_sink.port)
    provider.save()
    headers = {"Idempotency-Key": "resend-1"}
    first = api.post(f"/api/v1/emails/{original['id']}/resend", {}, headers=headers)
    second = api.post(f"/api/v1/emails/{original['id']}/resend", {}, headers=headers)
    assert first.status_code == 201 and second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == second.json()["id"] and len(smtp_sink.received) == 1


@pytest.mark.parametrize(
    ("send_at", "status"),
    [
        ("9999-12-31T23:59:59Z", 422),  # far ahead: refused, not overflowed
        ("0001-01-01T00:00:00+00:00", 201),  # long past: sends now
        ("2026-12-01T10:00:00+99:99", 422),  # no such offset
        ("2026-12-01T10:00:00\x00Z", 422),
        ("x" * 10_000, 422),
        (1e308, 422),
        ([], 422),
    ],
)
def test_hostile_send_at_values_are_bounded(api, sink_provider, send_at, status):
    answer = api.post("/api/v1/emails", SEND | {"send_at": send_at})
    assert answer.status_code == status, answer.json()
    if status == 422:
        assert [e["field"] for e in answer.json()["errors"]] == ["send_at"]
        assert not Email.objects.exists()
