"""Failover through mailer.services against real SMTP servers: which outcome each failure gets,
what is stored, and when the next provider is (and is not) tried."""

from __future__ import annotations

import pytest

from harness.factories import loopback_smtp
from harness.smtp import ScriptedHandler
from mailer.models import DeliveryAttempt, EmailStatus
from mailer.services import email_send
from tests.conftest import outgoing
from tests.fakes.sendgrid import VALID_KEY

pytestmark = pytest.mark.django_db


def failing_first(request_fixture, smtp_server, mode):
    """Start the failing first provider for `mode`; return (settings, secrets)."""
    if mode == "refused":
        return loopback_smtp(request_fixture("closed_port")), {}
    if mode == "stall":
        return loopback_smtp(request_fixture("blackhole").port), {}
    if mode == "535":
        server = smtp_server(credentials=("user", "right"))
        return loopback_smtp(server.port), {"username": "user", "password": "wrong"}
    scripts = {
        "421": {"mail_reply": "421 4.7.0 Try again later"},
        "451": {"data_reply": "451 4.3.0 Local error in processing"},
        "554": {"rcpt_replies": {"rcpt@example.org": "554 5.7.1 Relay access denied"}},
        "drop-after-data": {"drop_after_data": True},
    }
    return loopback_smtp(smtp_server(ScriptedHandler(**scripts[mode])).port), {}


def failing_http_first(request_fixture, mode):
    """The failing first provider for an HTTP API mode: (kind, settings, secrets)."""
    if mode == "ses-throttling":
        server = request_fixture("ses_error_server")(
            429, "TooManyRequestsException", "Maximum sending rate exceeded."
        )
        return (
            "ses",
            {"region": "us-east-1", "endpoint_url": server.endpoint_url},
            {"access_key_id": "AKIDTEST", "secret_access_key": "secret"},
        )
    server = request_fixture("sendgrid_server")
    server.mode = mode.removeprefix("sendgrid-")
    return "sendgrid", {"host": server.url}, {"api_key": VALID_KEY}


@pytest.mark.parametrize(
    ("mode", "outcome", "code"),
    [
        ("sendgrid-401", "provider_error", "401"),
        ("sendgrid-429", "provider_error", "throttled"),
        ("sendgrid-500", "provider_error", "500"),
        ("sendgrid-stall", "ambiguous", "timeout"),
        ("ses-throttling", "provider_error", "throttled"),
    ],
)
def test_http_provider_failures_fail_over(request, add_provider, smtp_sink, mode, outcome, code):
    kind, settings, secrets = failing_http_first(request.getfixturevalue, mode)
    first = add_provider(kind, name="first", settings=settings, secrets=secrets)
    second = add_provider("smtp", name="second", settings=loopback_smtp(smtp_sink.port))

    email = email_send(account=first.account, outgoing=outgoing()).email

    email.refresh_from_db()
    assert email.status == EmailStatus.SENT
    assert email.sent_via == second
    assert email.possible_duplicate is (outcome == "ambiguous")
    attempts = list(email.attempts.all())
    assert [(a.provider, a.outcome) for a in attempts] == [(first, outcome), (second, "sent")]
    assert attempts[0].error_code == code
    assert len(smtp_sink.received) == 1


@pytest.mark.parametrize(
    ("mode", "outcome", "code"),
    [
        ("refused", "provider_error", "connect"),
        ("stall", "provider_error", "timeout"),
        ("421", "provider_error", "421"),
        ("451", "provider_error", "451"),
        ("535", "provider_error", "535"),
        ("554", "provider_error", "554"),
        ("drop-after-data", "ambiguous", "disconnected"),
    ],
)
def test_failover_to_the_next_provider(
    request, add_provider, smtp_server, smtp_sink, mode, outcome, code
):
    settings, secrets = failing_first(request.getfixturevalue, smtp_server, mode)
    first = add_provider("smtp", name="first", settings=settings, secrets=secrets)
    second = add_provider("smtp", name="second", settings=loopback_smtp(smtp_sink.port))

    result = email_send(account=first.account, outgoing=outgoing())

    email = result.email
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT
    assert email.sent_via == second
    assert email.sent_via_kind == "smtp"
    assert email.provider_message_id == email.message_id
    assert email.failure_reason == ""
    assert email.possible_duplicate is (outcome == "ambiguous")
    attempts = list(email.attempts.all())
    assert [(a.provider, a.outcome) for a in attempts] == [(first, outcome), (second, "sent")]
    assert attempts[0].error_code == code
    assert attempts[0].error_message
    assert len(smtp_sink.received) == 1
    assert smtp_sink.received[0].message["Message-ID"] == email.message_id


def test_refused_recipient_fails_without_failover(add_provider, smtp_server, smtp_sink):
    bad = smtp_server(
        ScriptedHandler(
            rcpt_replies={"nobody@example.org": "550 5.1.1 <nobody@example.org>: no such user"}
        )
    )
    first = add_provider("smtp", name="first", settings=loopback_smtp(bad.port))
    add_provider("smtp", name="second", settings=loopback_smtp(smtp_sink.port))

    result = email_send(
        account=first.account, outgoing=outgoing(to=["ok@example.org", "nobody@example.org"])
    )

    email = result.email
    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED
    assert "550" in email.failure_reason
    assert "nobody@example.org" in email.failure_reason
    assert "rejected" in email.failure_reason
    assert [a.outcome for a in email.attempts.all()] == ["rejected"]
    assert smtp_sink.received == []
    assert bad.received == []


def test_all_providers_failing_stores_the_last_reason(add_provider, closed_port, smtp_server):
    busy = smtp_server(ScriptedHandler(mail_reply="421 4.3.2 Service shutting down"))
    account = add_provider("smtp", name="a", settings=loopback_smtp(closed_port)).account
    add_provider("smtp", name="b", settings=loopback_smtp(busy.port))

    email = email_send(account=account, outgoing=outgoing()).email

    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED
    assert "2 tried" in email.failure_reason
    assert "smtp 'b'" in email.failure_reason
    assert "421" in email.failure_reason
    assert [a.outcome for a in email.attempts.all()] == ["provider_error", "provider_error"]


def test_no_provider_configured(account):
    email = email_send(account=account, outgoing=outgoing()).email
    assert email.status == EmailStatus.FAILED
    assert "No provider is configured" in email.failure_reason
    assert not DeliveryAttempt.objects.exists()


def test_requested_provider_goes_first_and_disabled_ones_are_never_used(add_provider, smtp_server):
    default, requested, disabled = smtp_server(), smtp_server(), smtp_server()
    add_provider("smtp", name="default", settings=loopback_smtp(default.port), priority=1)
    chosen = add_provider("smtp", name="chosen", settings=loopback_smtp(requested.port), priority=5)
    add_provider(
        "smtp", name="off", settings=loopback_smtp(disabled.port), priority=0, enabled=False
    )

    email = email_send(account=chosen.account, outgoing=outgoing(), requested_provider=chosen).email
    assert email.sent_via == chosen
    assert email.requested_provider == chosen
    assert len(requested.received) == 1

    email = email_send(account=chosen.account, outgoing=outgoing()).email
    assert email.sent_via.name == "default"
    assert disabled.received == []


def test_other_accounts_providers_are_never_used(add_provider, other_account, smtp_server):
    mine, theirs = smtp_server(), smtp_server()
    add_provider("smtp", name="theirs", settings=loopback_smtp(theirs.port), owner=other_account)
    first = add_provider("smtp", name="mine", settings=loopback_smtp(mine.port))
    email_send(account=first.account, outgoing=outgoing())
    assert len(mine.received) == 1
    assert theirs.received == []
