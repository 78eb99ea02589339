"""What every HTTP API provider (SendGrid, Mailgun, Mandrill, Postmark, Resend) does the same
way, over real HTTP against its stand-in: each failure's outcome, its settings, the registry,
and failover through the service. The kinds' tables are in http_kinds.py; what is a kind's own
is in its test_<kind>.py."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest
from django.core.cache import cache

from harness.ports import free_port
from mailer import services
from mailer.delivery.breaker import CircuitBreaker
from mailer.delivery.failover import Candidate, deliver
from mailer.models import DeliveryAttempt
from mailer.providers import build_provider, provider_class
from mailer.providers.base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    ProviderAuthError,
    ProviderThrottled,
    ProviderUnavailable,
)
from mailer.vocabulary import CircuitState
from tests.conftest import outgoing
from tests.fakes.http_stub import StubServer
from tests.providers.http_kinds import KINDS, HttpKind, matches, simple_message

SECRET = "never-shown-7f3a9c"


@pytest.fixture(params=KINDS, ids=lambda kind: kind.kind)
def kind(request) -> HttpKind:
    return request.param


@pytest.fixture
def server(kind: HttpKind, request) -> StubServer:
    """The kind's stand-in, through its own fixture."""
    return request.getfixturevalue(kind.fixture)


# Failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mode"),
    [(kind, mode) for kind in KINDS for mode in kind.failures],
    ids=[f"{kind.kind}-{mode}" for kind in KINDS for mode in kind.failures],
)
def test_each_failure_mode_is_a_provider_error(kind, mode, server):
    """401 (and an account's other refusals) is an auth error that opens the circuit; 429 and
    500 are provider errors the next provider is tried after."""
    error, code, message = kind.failures[mode]
    server.mode = mode
    with pytest.raises(error) as caught:
        kind.provider(server).send(simple_message())
    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.outcome == "provider_error"
    assert caught.value.opens_circuit is (error is ProviderAuthError)
    assert matches(caught.value.message, message), caught.value.message
    assert server.accepted_ids() == []


def test_every_failure_mode_is_tested():
    for kind in KINDS:
        assert set(kind.failures) == set(kind.stub.failure_modes()), kind.kind


def test_wrong_key_is_an_auth_error_that_never_shows_the_key(kind, server):
    code, message = kind.wrong_key_answer()
    with pytest.raises(ProviderAuthError) as caught:
        kind.provider(server, **{kind.key_setting: SECRET}).send(simple_message())
    assert caught.value.opens_circuit and caught.value.outcome == "provider_error"
    assert caught.value.code == code
    assert caught.value.message == message
    assert SECRET not in str(caught.value)
    assert server.accepted_ids() == []


def test_stall_after_sending_is_ambiguous_within_the_timeout(kind, server):
    server.mode = "stall"
    started = time.monotonic()
    with pytest.raises(AmbiguousDelivery) as caught:
        kind.provider(server, timeout=0.5, connect_timeout=0.5).send(simple_message())
    assert time.monotonic() - started < 1.5  # the timeout, not the stand-in, ended it
    assert caught.value.code == "timeout" and caught.value.outcome == "ambiguous"
    assert len(server.requests) == 1  # it did arrive: a retry elsewhere may duplicate


def test_connection_dropped_after_sending_is_ambiguous(kind, server):
    server.mode = "drop"
    with pytest.raises(AmbiguousDelivery) as caught:
        kind.provider(server).send(simple_message())
    assert caught.value.code == "disconnected" and caught.value.outcome == "ambiguous"
    assert len(server.requests) == 1


def test_closed_port_is_a_connect_error_not_ambiguous(kind):
    sender = kind.provider(**{kind.url_setting: f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ProviderUnavailable) as caught:
        sender.send(simple_message())
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.code == "connect"
    assert caught.value.outcome == "provider_error" and not caught.value.opens_circuit


def test_redirect_is_a_configuration_error_never_followed(kind, server):
    server.mode = "redirect"
    with pytest.raises(ConfigurationError) as caught:
        kind.provider(server).send(simple_message())
    assert caught.value.setting == kind.url_setting
    assert f"answered HTTP {kind.stub.REDIRECT_STATUS} with a redirect" in caught.value.message
    assert "never followed" in caught.value.message
    assert len(server.requests) == 1


# The message ---------------------------------------------------------------------------------


def test_recipient_the_provider_refuses_is_rejected(kind, server):
    address = kind.refuse(server)
    code, message = kind.rejection
    with pytest.raises(MessageRejected) as caught:
        kind.provider(server).send(simple_message(to=[address]))
    assert type(caught.value) is MessageRejected
    assert caught.value.code == code and caught.value.outcome == "rejected"
    assert caught.value.message == message
    assert server.accepted_ids() == []


def test_unparseable_address_is_rejected_before_sending(kind, server):
    with pytest.raises(MessageRejected) as caught:
        kind.provider(server).send(simple_message(to=["not an address"]))
    assert caught.value.code == "invalid_address"
    assert server.requests == []


def test_one_provider_sends_from_many_threads(kind, server):
    sender = kind.provider(server)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: sender.send(simple_message(subject=f"n{n}")), range(24)))
    assert len(set(ids)) == 24
    assert sorted(server.accepted_ids()) == sorted(ids)


# Settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "  "])
def test_missing_key_is_a_configuration_error_naming_the_setting(kind, server, key):
    with pytest.raises(ConfigurationError) as caught:
        kind.provider(server, **{kind.key_setting: key}).send(simple_message())
    assert caught.value.setting == kind.key_setting
    assert f"'{kind.key_setting}'" in caught.value.message
    assert server.requests == []


@pytest.mark.parametrize("url", ["api.example.com", "ftp://api.example.com", "https://"])
def test_url_that_is_not_http_names_the_setting(kind, url):
    with pytest.raises(ConfigurationError) as caught:
        kind.provider(**{kind.url_setting: url}).send(simple_message())
    assert caught.value.setting == kind.url_setting


def test_describe_names_the_url_never_the_key(kind):
    for url, described in kind.describes:
        sender = kind.provider(**{kind.url_setting: url, kind.key_setting: SECRET})
        assert sender.describe() == described
        assert SECRET not in sender.describe()


def test_build_provider_through_the_registry_sends_to_the_stand_in(kind, server):
    sender = build_provider(
        kind.kind,
        settings=kind.settings(server.url),
        secrets={**kind.secrets, **kind.webhook_secrets},  # a webhook's: not for the transport
        timeout=2,
        connect_timeout=1,
        allow_private_hosts=True,
    )
    assert isinstance(sender, provider_class(kind.kind))
    message_id = sender.send(simple_message())
    assert server.accepted_ids() == [message_id]


# Through the service: failover between two configs of the kind -------------------------------


@pytest.fixture
def second_server(kind: HttpKind):
    with kind.stub.running() as second:
        yield second


def add_two(kind: HttpKind, add_provider, first: StubServer, second: StubServer):
    return [
        add_provider(kind.kind, name=name, settings=kind.settings(stub.url), secrets=kind.secrets)
        for name, stub in ((f"{kind.kind}-1", first), (f"{kind.kind}-2", second))
    ]


@pytest.mark.django_db
def test_failover_from_a_failing_stand_in_to_a_working_one(
    kind, account, add_provider, server, second_server
):
    server.mode = "500"
    first, second = add_two(kind, add_provider, server, second_server)

    result = services.email_send(account=account, outgoing=outgoing(headers={"X-Ref": "42"}))

    email = result.email
    email.refresh_from_db()
    assert email.status == "sent"
    assert email.sent_via == second and email.sent_via_kind == kind.kind
    [accepted_id] = second_server.accepted_ids()
    assert email.provider_message_id == accepted_id
    kind.carried(second_server.messages[0], email)
    attempts = list(DeliveryAttempt.objects.filter(email=email).order_by("started_at", "id"))
    assert [(a.provider, a.outcome) for a in attempts] == [
        (first, "provider_error"),
        (second, "sent"),
    ]
    assert attempts[0].error_code == kind.failures["500"][1]
    assert attempts[1].provider_message_id == accepted_id
    assert not email.possible_duplicate
    assert len(server.requests) == 1 and server.accepted_ids() == []


@pytest.mark.django_db
def test_refused_recipient_does_not_fail_over(kind, account, add_provider, server, second_server):
    address = kind.refuse(server)
    code, message = kind.rejection
    add_two(kind, add_provider, server, second_server)

    result = services.email_send(account=account, outgoing=outgoing(to=[address]))

    email = result.email
    email.refresh_from_db()
    assert email.status == "failed" and email.sent_via is None
    assert message in email.failure_reason
    assert [(a.outcome, a.error_code) for a in email.attempts.all()] == [("rejected", code)]
    assert second_server.requests == []


# Throttling: a 429 pauses the provider instead of counting towards its circuit ---------------


class Clock:
    """time.time() for the breaker, moved by the test instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_429_pauses_the_provider_and_fails_over(kind, server, second_server):
    clock = Clock()
    # Threshold 1: a 429 counted as a failure would open the circuit at once.
    breaker = CircuitBreaker(cache, threshold=1, clock=clock)
    first, second = (
        Candidate(f"throttle-{uuid.uuid4().hex}", name, kind.provider(stub))
        for name, stub in (("first", server), ("second", second_server))
    )
    server.mode, server.retry_after = "429", "2"

    def send() -> list[tuple[str, str]]:
        delivery = deliver(simple_message(), [first, second], breaker=breaker)
        return [(a.outcome, a.code, a.message) for a in delivery.attempts]

    [(outcome, code, message), sent] = send()
    assert (outcome, code, sent[:2]) == ("provider_error", "throttled", ("sent", ""))
    assert message.startswith("HTTP 429") and message.endswith("; paused for 2 s (Retry-After 2 s)")
    state = breaker.state(first.key)
    assert (state.state, state.failures) == (CircuitState.CLOSED, 0)
    assert state.paused_until == clock.now + 2

    clock.now += 1.5  # within the pause: passed over, nothing sent to it
    [(outcome, code, message), sent] = send()
    assert (outcome, code, sent[0]) == ("skipped", "paused", "sent")
    assert message.startswith("paused until ") and message.endswith("(Retry-After 2 s)")
    assert len(server.requests) == 1

    clock.now += 1  # the pause is over: tried again
    server.mode = "ok"
    assert [attempt[:2] for attempt in send()] == [("sent", "")]
    assert len(server.requests) == 2 and len(server.accepted_ids()) == 1


@pytest.mark.parametrize(
    ("header", "pause"),
    [
        ("2", 2),
        (120.0, 120),  # an HTTP-date, 120 s from now
        ("", 5),  # absent: the default
        ("soon", 5),
        ("-5", 5),
        (-120.0, 5),  # an HTTP-date already past
        ("99999999", 600),  # capped
    ],
    ids=["seconds", "date", "absent", "garbage", "negative", "past", "huge"],
)
def test_retry_after_sets_the_pause(kind, server, header, pause):
    """Delta-seconds or an HTTP-date (a float here: that many seconds from now)."""
    if isinstance(header, float):
        header = formatdate(time.time() + header, usegmt=True)
    server.mode, server.retry_after = "429", header
    with pytest.raises(ProviderThrottled) as caught:
        kind.provider(server).send(simple_message())
    breaker = CircuitBreaker(cache, throttle_default_seconds=5, throttle_max_seconds=600)
    assert breaker.pause_for(caught.value.retry_after).seconds == pytest.approx(pause, abs=2)
