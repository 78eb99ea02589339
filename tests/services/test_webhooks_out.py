"""Webhooks out (issue 12, item 4): every event reaches a receiver that verifies it with the
standardwebhooks library; a receiver that is down gets it later with the same webhook-id; the
private-address rule holds at save and at connect; an endpoint failing for 5 days is disabled
and its account told once. Time is driven by due dates set in the past and sweeps called here,
never by sleeping through the schedule."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from harness.factories import loopback_smtp
from harness.ports import free_port
from mailer import services
from mailer.delivery.breaker import breaker
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.providers.events import Event
from mailer.services.events import _store
from mailer.services.suppressions import AllRecipientsSuppressed, suppression_add
from mailer.services.webhooks_out import (
    DISABLE_AFTER,
    RETRY_SCHEDULE,
    WebhookSettingsError,
    webhook_endpoint_create,
    webhook_endpoint_update,
    webhook_message_claim,
    webhook_message_retry,
    webhooks_email_finished,
    webhooks_emit,
    webhooks_sweep,
)
from mailer.services.webhooks_out import delivery as webhook_delivery
from mailer.vocabulary import BounceType, EventType
from tests.conftest import outgoing
from tests.fakes.hostile import Internal, RebindingDns, Redirector, Trickler
from tests.fakes.webhook_receiver import receiver_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(account):
    account.email = "alice@example.com"
    account.save(update_fields=["email"])
    return account


def endpoint_for(account, hook, **options) -> WebhookEndpoint:
    """An endpoint at the receiver's URL, whose secret the receiver then verifies with."""
    endpoint, secret = webhook_endpoint_create(account=account, url=hook.url, **options)
    hook.secret = secret
    return endpoint


def sweep() -> int:
    return webhooks_sweep(inline=True)


def make_due(**filters) -> None:
    past = timezone.now() - timedelta(seconds=1)
    WebhookMessage.objects.filter(status="pending", **filters).update(next_attempt_at=past)


def send(account, **fields):
    return services.email_send(account=account, outgoing=outgoing(**fields)).email


# Every event, verified ------------------------------------------------------------------------


def test_every_email_event_reaches_a_verifying_receiver(
    member, add_provider, smtp_sink, closed_port, receiver
):
    hook = receiver()
    endpoint_for(member, hook)
    sink = add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    down = add_provider("smtp", name="down", settings=loopback_smtp(closed_port), priority=200)
    sent = send(member, subject="One", metadata={"order": 42})
    failed_over = services.email_send(
        account=member, outgoing=outgoing(subject="Two"), requested_provider=down
    ).email
    services.provider_config_update(config=sink, enabled=False)
    failed = send(member, subject="Three")
    assert (sent.status, failed_over.status, failed.status) == ("sent", "sent", "failed")
    assert sweep() == 4
    assert hook.refused == []
    assert sorted(hook.types()) == ["email.failed", "email.failed_over", "email.sent"]
    by_email = {(a.type, a.data["email_id"]): a for a in hook.arrivals}
    first = by_email["email.sent", sent.pk]
    assert first.payload["timestamp"].endswith("Z") and first.path == "/hooks/in"
    assert first.data == {
        "email_id": sent.pk, "status": "sent", "from": "Sender <sender@example.com>",
        "to": ["rcpt@example.org"], "cc": [], "bcc": [], "subject": "One",
        "provider": {"id": sink.pk, "name": "sink", "kind": "smtp"},
        "provider_message_id": sent.provider_message_id, "failure_reason": "",
        "possible_duplicate": False, "tries": 1, "metadata": {"order": 42},
    }  # fmt: skip
    assert ("email.sent", failed_over.pk) in by_email
    over = by_email["email.failed_over", failed_over.pk].data
    assert over["provider"]["name"] == "sink" and over["first_provider"]["name"] == "down"
    assert over["first_outcome"] == "provider_error" and over["first_error"]
    gone = by_email["email.failed", failed.pk].data
    assert gone["status"] == "failed" and "down" in gone["failure_reason"]
    assert gone["provider"] is None
    assert len({a.webhook_id for a in hook.arrivals}) == 4
    assert WebhookMessage.objects.filter(status="delivered").count() == 4


def test_provider_events_become_email_events(member, add_provider, smtp_sink, receiver):
    hook = receiver()
    endpoint_for(member, hook)
    sink = add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    email = send(member)
    at = datetime.now(UTC) - timedelta(minutes=1)

    def event(kind, n, **extra):
        return Event(kind, "rcpt@example.org", at, f"ev-{n}", email_id=str(email.pk), **extra)

    _store(sink, [
        event(EventType.DELIVERED, 1), event(EventType.DEFERRED, 2),
        event(EventType.BOUNCED, 3, bounce_type=BounceType.SOFT, detail={"diagnostic": "full"}),
        event(EventType.OPENED, 4), event(EventType.CLICKED, 5, detail={"url": "https://x.example"}),
        event(EventType.COMPLAINED, 6),
    ])  # fmt: skip
    _store(sink, [event(EventType.DELIVERED, 1)])  # a provider's repeat: stored once, sent once
    sweep()
    assert hook.refused == []
    assert sorted(a.type for a in hook.arrivals) == [
        "email.bounced", "email.clicked", "email.complained", "email.delivered",
        "email.opened", "email.sent",
    ]  # fmt: skip
    delivered = hook.of_type("email.delivered")[0].data
    assert delivered["email_id"] == email.pk and delivered["recipient"] == "rcpt@example.org"
    assert delivered["provider"] == {"id": sink.pk, "name": "sink", "kind": "smtp"}
    assert delivered["occurred_at"] == at.isoformat(timespec="milliseconds")[:-6] + "Z"
    bounced = hook.of_type("email.bounced")[0].data
    assert bounced["bounce_type"] == "soft" and bounced["detail"] == {"diagnostic": "full"}
    assert hook.of_type("email.clicked")[0].data["detail"]["url"] == "https://x.example"


def test_an_email_failed_before_any_provider_is_told_too(member, receiver):
    hook = receiver()
    endpoint_for(member, hook, event_types=["email.failed"])
    suppression_add(account=member, address="rcpt@example.org")
    with pytest.raises(AllRecipientsSuppressed) as refused:
        send(member)
    sweep()
    [arrival] = hook.arrivals
    assert arrival.data["email_id"] == refused.value.email.pk
    assert "suppression list" in arrival.data["failure_reason"]


def test_an_endpoint_gets_only_the_types_it_asked_for(member, add_provider, smtp_sink, receiver):
    hook = receiver()
    endpoint_for(member, hook, event_types=["email.failed"])
    add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    send(member)
    assert WebhookMessage.objects.count() == 0
    webhook_endpoint_update(endpoint=WebhookEndpoint.objects.get(), event_types=[])
    send(member)
    assert list(WebhookMessage.objects.values_list("event_type", flat=True)) == ["email.sent"]


def test_an_account_without_endpoints_pays_one_query(member, add_provider, smtp_sink):
    add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    email = send(member)
    with CaptureQueriesContext(connection) as queries:
        assert webhooks_email_finished(email=email) == []
    assert len(queries) == 1


def test_circuits_opening_and_closing_are_told_once_each(member, add_provider):
    config = add_provider("smtp", name="flaky", settings=loopback_smtp(2525))
    webhook_endpoint_create(account=member, url="http://127.0.0.1:9/x")
    circuit = breaker()
    circuit.record_failure(config.breaker_key, error="refused", trip_now=True)
    circuit.record_failure(config.breaker_key, error="refused again")  # a failed probe
    circuit.record_success(config.breaker_key)
    circuit.record_success(config.breaker_key)  # closed already
    circuit.record_failure("mailer:site", error="x", trip_now=True)  # the site's: no account
    circuit.record_failure(config.breaker_key, error="down", trip_now=True)
    services.provider_config_update(config=config, name="flaky2")  # closes it: a reset
    messages = list(WebhookMessage.objects.order_by("id"))
    assert [(m.event_type, m.payload["data"]["circuit"]["state"]) for m in messages] == [
        ("provider.circuit_opened", "open"), ("provider.circuit_closed", "closed"),
        ("provider.circuit_opened", "open"), ("provider.circuit_closed", "closed"),
    ]  # fmt: skip
    opened = messages[0].payload["data"]
    assert opened["provider"] == {"id": config.pk, "name": "flaky", "kind": "smtp"}
    assert opened["circuit"]["last_error"] == "refused" and opened["circuit"]["open_until"]
    assert [m.payload["data"]["circuit"].get("reason") for m in messages[1::2]] == [
        "success", "reset"
    ]  # fmt: skip


# Retries: the same webhook-id, until it is delivered ------------------------------------------


def test_a_receiver_that_is_down_gets_it_later_with_the_same_webhook_id(
    member, add_provider, smtp_sink, receiver
):
    port = free_port()  # nothing listens there yet: connection refused
    endpoint, secret = webhook_endpoint_create(account=member, url=f"http://127.0.0.1:{port}/in")
    add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    send(member)
    assert sweep() == 1
    message = WebhookMessage.objects.get()
    assert (message.status, message.tries, message.last_status_code) == ("pending", 1, None)
    assert "cannot connect" in message.last_error
    wait = (message.next_attempt_at - timezone.now()).total_seconds()
    assert RETRY_SCHEDULE[1] - 2 < wait <= RETRY_SCHEDULE[1]
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    assert sweep() == 0  # not due yet

    hook = receiver(port=port, status=500, secret=secret)  # back, but failing
    make_due()
    assert sweep() == 1
    message.refresh_from_db()
    assert (message.status, message.tries, message.last_status_code) == ("pending", 2, 500)
    wait = (message.next_attempt_at - timezone.now()).total_seconds()
    assert RETRY_SCHEDULE[2] - 2 < wait <= RETRY_SCHEDULE[2]

    hook.status = 200
    make_due()
    assert sweep() == 1
    message.refresh_from_db()
    endpoint.refresh_from_db()
    assert (message.status, message.tries, message.last_status_code) == ("delivered", 3, 200)
    assert message.delivered_at is not None and endpoint.failing_since is None
    assert hook.refused == [] and [a.answered for a in hook.arrivals] == [500, 200]
    assert {a.webhook_id for a in hook.arrivals} == {message.msg_id}
    assert hook.arrivals[0].payload == hook.arrivals[1].payload


def test_the_schedule_ends_in_failed_and_send_again_goes_on(member, receiver):
    hook = receiver(status=503)
    endpoint = endpoint_for(member, hook)
    services.webhooks_emit(member, "email.sent", {"email_id": 1})
    delays = []
    for _ in RETRY_SCHEDULE:
        make_due()
        assert sweep() == 1
        message = WebhookMessage.objects.get()
        if message.next_attempt_at is not None:
            delays.append(round((message.next_attempt_at - timezone.now()).total_seconds()))
    assert delays == list(RETRY_SCHEDULE[1:])
    assert (message.status, message.tries, message.next_attempt_at) == ("failed", 8, None)
    assert sweep() == 0
    hook.status = 204
    webhook_message_retry(message=message)
    assert sweep() == 1
    message.refresh_from_db()
    assert (message.status, message.tries) == ("delivered", 9)
    assert {a.webhook_id for a in hook.arrivals} == {message.msg_id} and len(hook.arrivals) == 9
    assert endpoint.messages.count() == 1


def test_a_claim_is_held_by_one_worker_until_its_lease_ends(member, receiver):
    endpoint_for(member, receiver())
    [message] = services.webhooks_emit(member, "email.sent", {"email_id": 1})
    held = webhook_message_claim(message_id=message.pk)
    assert held is not None and held.tries == 1
    assert webhook_message_claim(message_id=message.pk) is None  # another worker: refused
    assert sweep() == 0  # the sweep leaves it to the worker holding it
    # That worker died: once its lease ends, the sweep takes the message and sends it.
    WebhookMessage.objects.filter(pk=message.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert sweep() == 1
    message.refresh_from_db()
    assert (message.status, message.tries) == ("delivered", 2)


# The private-address rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://[::1]:8443/hook", "loopback"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://localhost/hook", "loopback"),
        ("http://93.184.215.14/hook", "https"),
        ("https://me:pw@93.184.215.14/hook", "credentials"),
        ("ftp://93.184.215.14/hook", "https"),
    ],
)
def test_an_endpoint_on_a_private_address_is_refused_at_save(member, settings, url, says):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    with pytest.raises(WebhookSettingsError) as refused:
        webhook_endpoint_create(account=member, url=url)
    assert list(refused.value.errors) == ["url"] and says in refused.value.errors["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_a_host_that_rebinds_to_loopback_is_not_connected_to(member, settings, receiver):
    dns = RebindingDns(["hook.rebind.test"])
    hook = receiver()
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    settings.DNS_NAMESERVERS = [dns.address]
    try:
        # Saved: the name answered a public address then. At connect time it answers 127.0.0.1.
        endpoint, _ = webhook_endpoint_create(
            account=member, url=f"https://hook.rebind.test:{hook.port}/in"
        )
        services.webhooks_emit(member, "email.sent", {"email_id": 1})
        assert sweep() == 1
    finally:
        dns.stop()
    message = WebhookMessage.objects.get(endpoint=endpoint)
    assert message.status == "pending" and message.last_status_code is None
    assert "loopback address" in message.last_error
    assert hook.connections == 0 and hook.arrivals == []
    assert [address for _, address in dns.answers] == ["93.184.215.14", "127.0.0.1"]


# Disabled after 5 days of failures -------------------------------------------------------------


def test_an_endpoint_failing_for_five_days_is_disabled_and_the_account_told_once(
    member, receiver, django_capture_on_commit_callbacks
):
    hook = receiver(status=500)
    endpoint = endpoint_for(member, hook)
    for n in range(3):
        services.webhooks_emit(member, "email.sent", {"email_id": n})
    sweep()  # one try: the endpoint failed, its other messages wait for the next pass
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is not None
    almost = timezone.now() - DISABLE_AFTER + timedelta(minutes=5)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=almost)
    make_due()
    sweep()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled, "not 5 days yet"

    since = timezone.now() - DISABLE_AFTER - timedelta(seconds=1)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=since)
    make_due()
    with django_capture_on_commit_callbacks(execute=True):
        sweep()
        make_due()
        sweep()  # nothing more goes to a disabled endpoint: nobody is told twice
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every delivery failed since" in endpoint.disabled_reason
    [told] = mail.outbox
    assert told.to == ["alice@example.com"] and endpoint.url in told.body
    assert endpoint.disabled_reason in told.body
    tries = len(hook.arrivals)
    assert services.webhooks_emit(member, "email.sent", {"email_id": 9}) == []
    assert WebhookMessage.objects.filter(status="pending", next_attempt_at=None).count() == 3

    hook.status = 200
    webhook_endpoint_update(endpoint=endpoint, enabled=True)
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "" and endpoint.failing_since is None
    assert sweep() == 3
    assert len(hook.arrivals) == tries + 3 and len(mail.outbox) == 1


def test_a_receiver_that_trickles_or_redirects_costs_one_bounded_try_and_nothing_is_stuck(
    member, monkeypatch
):
    """An endpoint that answers one header line every 0.2 s for ever is cut at the try's
    deadline; one that redirects (to an internal host) is not followed and its body not kept.
    Either way the message goes back to pending for its next try, its claim released."""
    monkeypatch.setattr(webhook_delivery, "DELIVERY_DEADLINE", 1.5)
    internal = Internal()
    trickler = Trickler(b"HTTP/1.1 200 OK\r\n", b"X-Slow: 1\r\n", interval=0.2, http=True)
    redirector = Redirector(internal.url + "/admin")
    try:
        for url in (f"http://127.0.0.1:{trickler.port}/hook", redirector.url + "/hook"):
            WebhookEndpoint.objects.all().delete()
            webhook_endpoint_create(account=member, url=url)
            webhooks_emit(member, "email.sent", {"email_id": 1})
            started = time.monotonic()
            assert sweep() == 1
            assert time.monotonic() - started < 10, url
            message = WebhookMessage.objects.get()
            assert (message.status, message.tries) == ("pending", 1), message.last_error
            assert message.next_attempt_at > timezone.now() and message.lease_expires_at is None
            assert Internal.SECRET not in message.last_error
            message.delete()
        assert internal.requests == [], "the redirect was not followed"
    finally:
        trickler.stop()
        redirector.stop()
        internal.stop()
