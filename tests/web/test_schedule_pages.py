"""Scheduled sends, cancel and resend on the pages, through the Django test client with real
SMTP stand-ins and Redis: the send form's "Send at (UTC)", the sent list's and an email's
Cancel button, and a failed email's Resend button."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from harness.factories import loopback_smtp
from mailer import listcache
from mailer.models import Email, EmailStatus
from mailer.services.templates import template_create
from mailer.web.email_forms import UTCDateTimeField

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client, account):
    account.email = "alice@example.com"
    account.save()
    client.force_login(account)
    return account


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


def local_input(moment: datetime) -> str:
    """What a datetime-local input sends for this moment's UTC wall clock."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def send(client, provider, **overrides):
    data = {"from_email": "Alice <alice@example.com>", "to": "bob@example.org", "cc": "",
            "bcc": "", "reply_to": "", "subject": "Later", "text": "Hi.", "html": "",
            "submission": "s-1", "provider": str(provider.pk), "send_at": ""}  # fmt: skip
    return client.post("/send/", data | overrides)


def flash(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def stored(account, **values) -> Email:
    fields = {"from_email": "a@example.com", "to": ["b@example.org"], "subject": "Stored",
              "text": "Body", "status": "sent"}  # fmt: skip
    email = Email.objects.create(account=account, **(fields | values))
    listcache.bump(account.pk)
    return email


def scheduled(account, days: float = 2, **values) -> Email:
    at = (timezone.now() + timedelta(days=days)).replace(second=0, microsecond=0)
    return stored(account, status="scheduled", send_at=at, next_attempt_at=at, **values)


# Scheduling from the send form ---------------------------------------------------------------


def test_send_at_schedules_the_email_at_that_utc_time_and_contacts_no_provider(
    client, member, sink_provider, smtp_sink
):
    page = client.get("/send/").content.decode()
    assert re.search(r'<input type="datetime-local" name="send_at"[^>]*id="id_send_at"', page)
    assert "Send at (UTC)" in page and "30 days" in page
    when = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)
    response = send(client, sink_provider, send_at=local_input(when))
    email = Email.objects.get(account=member)
    assert response.status_code == 302 and response.url == f"/emails/{email.pk}/"
    assert email.status == EmailStatus.SCHEDULED and email.send_at == when
    assert email.send_at.utcoffset() == timedelta(0)
    assert smtp_sink.received == [] and not email.attempts.exists()
    detail = client.get(response.url)
    assert flash(detail) == [
        f"Scheduled for {when:%-d %b %Y, %H:%M} UTC: it is sent then, and can be canceled "
        "until then."
    ]
    html = detail.content.decode()
    assert "status-scheduled" in html and "<strong>Scheduled.</strong>" in html
    assert f'action="/emails/{email.pk}/cancel/"' in html
    assert "data-refresh-seconds" not in html  # it may wait for days: no reloading


def test_the_field_reads_the_time_as_utc_whatever_time_zone_is_active():
    with timezone.override("America/New_York"):
        value = UTCDateTimeField().clean("2030-01-02T09:30")
    assert value == datetime(2030, 1, 2, 9, 30, tzinfo=UTC)
    assert UTCDateTimeField(required=False).clean("") is None


def test_a_send_at_too_far_ahead_is_an_error_beside_it_and_nothing_is_stored(
    client, member, sink_provider, smtp_sink
):
    too_far = local_input(timezone.now() + timedelta(days=31))
    response = send(client, sink_provider, send_at=too_far)
    assert response.status_code == 200
    assert response.context["form"].errors["send_at"] == ["At most 30 days ahead"]
    html = response.content.decode()
    assert 'id="id_send_at_error"' in html and f'value="{too_far}"' in html
    assert not Email.objects.exists() and smtp_sink.received == []
    # With a template, the time's error still stands beside the time.
    template_create(account=member, name="hello", subject="Hi", text="Hi")
    response = send(client, sink_provider, subject="", text="", template="hello", send_at=too_far)
    assert list(response.context["form"].errors) == ["send_at"]
    assert not Email.objects.exists()


def test_a_send_at_that_is_not_a_time_is_a_field_error(client, member, sink_provider):
    response = send(client, sink_provider, send_at="next tuesday")
    assert "send_at" in response.context["form"].errors and not Email.objects.exists()


def test_a_send_at_already_past_sends_now(client, member, sink_provider, smtp_sink):
    send(client, sink_provider, send_at=local_input(timezone.now() - timedelta(hours=1)))
    email = Email.objects.get(account=member)
    assert email.status == EmailStatus.SENT and email.send_at is None
    assert len(smtp_sink.received) == 1


# The sent list: badges, "scheduled for", Cancel ------------------------------------------------


def test_the_list_shows_scheduled_and_canceled_and_cancel_buttons(client, member):
    later = scheduled(member, subject="Later")
    queued = stored(member, status="queued", subject="Queued")
    stored(member, status="canceled", subject="Called off")
    stored(member, status="sent", subject="Gone")
    html = client.get("/emails/", {"page": "1"}).content.decode()
    for status in ("scheduled", "canceled"):
        assert f'<span class="badge status-badge status-{status}">{status}</span>' in html
    assert f'scheduled for <time datetime="{later.send_at.isoformat()}">' in html
    assert f"{later.send_at:%-d %b %Y, %H:%M} UTC" in html
    forms = re.findall(r'<form method="post" action="/emails/(\d+)/cancel/"', html)
    assert sorted(int(pk) for pk in forms) == sorted([later.pk, queued.pk])
    assert html.count('name="csrfmiddlewaretoken"') >= 2
    assert '<input type="hidden" name="next" value="/emails/?page=1">' in html
    # Each status is one the filter offers.
    assert '<option value="scheduled">Scheduled</option>' in html
    assert '<option value="canceled">Canceled</option>' in html


def test_cancel_cancels_and_goes_back_to_the_list_as_it_was(client, member, sink_provider):
    email = scheduled(member, subject="Party")
    back = "/emails/?status=scheduled&page=1"
    response = client.post(f"/emails/{email.pk}/cancel/", {"next": back})
    assert response.status_code == 302 and response.url == back
    email.refresh_from_db()
    assert email.status == EmailStatus.CANCELED and email.next_attempt_at is None
    page = client.get(response.url)
    assert flash(page) == [f"Canceled email #{email.pk} (Party): it will not be sent."]
    after = client.get("/emails/").content.decode()
    assert "status-canceled" in after and f"/emails/{email.pk}/cancel/" not in after
    detail = client.get(f"/emails/{email.pk}/").content.decode()
    assert "<strong>Canceled.</strong>" in detail and "never sent" in detail


def test_a_queued_email_can_be_canceled_from_its_detail(client, member):
    email = stored(member, status="queued", next_attempt_at=timezone.now())
    detail = f"/emails/{email.pk}/"
    assert f'action="{detail}cancel/"' in client.get(detail).content.decode()
    response = client.post(f"{detail}cancel/", {"next": detail})
    assert response.url == detail
    email.refresh_from_db()
    assert email.status == EmailStatus.CANCELED


def test_too_late_to_cancel_is_a_message_not_an_error(client, member):
    email = stored(member, status="sent", subject="Done")
    response = client.post(f"/emails/{email.pk}/cancel/", {"next": "/emails/"}, follow=True)
    assert response.status_code == 200
    [message] = flash(response)
    assert message.startswith(f"Email {email.pk} is sent: only a scheduled or queued email")
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/emails/", "/\\evil.example", "emails/", ""]
)
def test_cancel_goes_back_only_to_a_path_of_this_site(client, member, target):
    email = scheduled(member)
    response = client.post(f"/emails/{email.pk}/cancel/", {"next": target})
    assert response.status_code == 302 and response.url == "/emails/"


def test_another_accounts_email_cannot_be_canceled_or_resent(client, member, other_account):
    theirs = scheduled(other_account)
    failed = stored(other_account, status="failed")
    assert client.post(f"/emails/{theirs.pk}/cancel/").status_code == 404
    assert client.post(f"/emails/{failed.pk}/resend/").status_code == 404
    assert client.post(f"/emails/{2**64}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == EmailStatus.SCHEDULED
    assert Email.objects.count() == 2


def test_cancel_and_resend_need_a_post_with_its_csrf_token_and_a_log_in(member, client):
    email = scheduled(member)
    failed = stored(member, status="failed")
    assert client.get(f"/emails/{email.pk}/cancel/").status_code == 405
    assert client.get(f"/emails/{failed.pk}/resend/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member)
    assert strict.post(f"/emails/{email.pk}/cancel/").status_code == 403
    assert strict.post(f"/emails/{failed.pk}/resend/").status_code == 403
    anonymous = Client()
    assert anonymous.post(f"/emails/{email.pk}/cancel/").url.startswith("/accounts/login/")
    email.refresh_from_db()
    assert email.status == EmailStatus.SCHEDULED and Email.objects.count() == 2


# Resend ----------------------------------------------------------------------------------------


def test_resend_sends_a_linked_email_and_shows_it(client, member, sink_provider, smtp_sink):
    original = stored(member, status="failed", subject="Retry me", failure_reason="down")
    page = client.get(f"/emails/{original.pk}/").content.decode()
    submission = re.search(r'name="submission" value="([^"]+)"', page)[1]
    assert f'action="/emails/{original.pk}/resend/"' in page
    response = client.post(f"/emails/{original.pk}/resend/", {"submission": submission})
    resent = Email.objects.get(resent_from=original)
    assert response.status_code == 302 and response.url == f"/emails/{resent.pk}/"
    assert resent.status == EmailStatus.SENT and resent.subject == "Retry me"
    assert len(smtp_sink.received) == 1
    detail = client.get(response.url)
    assert flash(detail) == ["Sent via sink."]
    html = detail.content.decode()
    assert f'<a class="resent-from" href="/emails/{original.pk}/">#{original.pk}</a>' in html
    assert "/resend/" not in html  # it was sent: nothing to resend
    html = client.get(f"/emails/{original.pk}/").content.decode()
    assert f'<a href="/emails/{resent.pk}/">#{resent.pk}</a>' in html and ">Resends<" in html
    # The same button again (a double click) is the same resend, not another email.
    again = client.post(f"/emails/{original.pk}/resend/", {"submission": submission})
    assert again.url == response.url and Email.objects.filter(resent_from=original).count() == 1
    assert flash(client.get(again.url)) == ["This email was already resent; here is the resend."]
    assert len(smtp_sink.received) == 1


def test_only_a_failed_email_can_be_resent(client, member, sink_provider):
    email = stored(member, status="sent")
    assert "/resend/" not in client.get(f"/emails/{email.pk}/").content.decode()
    response = client.post(f"/emails/{email.pk}/resend/", {"submission": "x"})
    assert response.url == f"/emails/{email.pk}/"
    [message] = flash(client.get(response.url))
    assert "only a failed email can be resent" in message
    assert Email.objects.count() == 1
