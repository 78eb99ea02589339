"""A throttling answer pauses its provider instead of opening its circuit: the pause's length
(Retry-After, the default, the cap), SMTP's rate-limit replies against a scripted server, SES's
throttling error, every provider paused, and a cache that is down. Time is a clock the test
moves, never a sleep."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError
from django.core.cache import cache

from harness.factories import loopback_smtp
from harness.smtp import ScriptedHandler
from mailer.delivery.breaker import CircuitBreaker, plain_guard
from mailer.delivery.errors import classify
from mailer.delivery.failover import Candidate, deliver
from mailer.providers.base import ProviderThrottled, ProviderUnavailable
from mailer.providers.ses.transport import SesProvider
from mailer.providers.smtp.transport import SmtpProvider
from mailer.vocabulary import CircuitState
from tests.providers.http_kinds import simple_message


class Clock:
    """time.time() for the breaker, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock) -> CircuitBreaker:
    """Threshold 1: a throttle that counted as a failure would open the circuit at once."""
    return CircuitBreaker(
        cache, threshold=1, throttle_default_seconds=5, throttle_max_seconds=600, clock=clock
    )


def smtp(port: int) -> SmtpProvider:
    return SmtpProvider(
        **loopback_smtp(port), timeout=2, connect_timeout=1, allow_private_hosts=True
    )


def candidate(provider, name: str) -> Candidate:
    return Candidate(f"throttle-{name}-{uuid.uuid4().hex}", name, provider)


def outcomes(delivery) -> list[tuple[str, str]]:
    return [(a.outcome, a.code) for a in delivery.attempts]


@pytest.mark.parametrize(
    ("retry_after", "seconds", "reason"),
    [
        (2, 2, "Retry-After 2 s"),
        (0.2, 1, "Retry-After 1 s"),  # at least a second
        (None, 5, "no usable Retry-After: default 5 s"),
        (-3, 5, "no usable Retry-After: default 5 s"),
        (float("inf"), 5, "no usable Retry-After: default 5 s"),
        (86_400 * 30, 600, "Retry-After 2592000 s, capped at 600 s"),
    ],
)
def test_the_pause_is_the_retry_after_within_the_cap(breaker, clock, retry_after, seconds, reason):
    pause = breaker.pause_for(retry_after)
    assert (pause.until, pause.seconds, pause.reason) == (clock.now + seconds, seconds, reason)


def test_smtp_rate_limit_reply_pauses_and_the_pause_ends(breaker, clock, smtp_server, smtp_sink):
    slow = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Too many messages, slow down"))
    first, second = candidate(smtp(slow.port), "slow"), candidate(smtp(smtp_sink.port), "ok")

    delivery = deliver(simple_message(), [first, second], breaker=breaker)
    assert outcomes(delivery) == [("provider_error", "throttled"), ("sent", "")]
    assert delivery.attempts[0].message == (
        "SMTP 421 at MAIL FROM: 4.7.0 Too many messages, slow down; "
        "paused for 5 s (no usable Retry-After: default 5 s)"
    )
    state = breaker.state(first.key)
    assert (state.state, state.failures, state.paused_until) == (
        CircuitState.CLOSED,
        0,
        clock.now + 5,
    )

    clock.now += 4.5  # within the pause: passed over without a connection
    connections = slow.handler.connections
    delivery = deliver(simple_message(), [first, second], breaker=breaker)
    assert outcomes(delivery) == [("skipped", "paused"), ("sent", "")]
    assert delivery.attempts[0].message == (
        "paused until 08:00:05 UTC after a throttling answer (no usable Retry-After: default 5 s)"
    )
    assert slow.handler.connections == connections

    clock.now += 1  # the pause is over: tried again, and its success clears the pause
    slow.handler.mail_reply = None
    delivery = deliver(simple_message(), [first, second], breaker=breaker)
    assert outcomes(delivery) == [("sent", "")]
    assert breaker.state(first.key).paused_until is None
    assert len(slow.received) == 1


def test_plain_421_is_an_outage_that_counts(breaker, smtp_server, smtp_sink):
    down = smtp_server(ScriptedHandler(mail_reply="421 4.3.2 Service not available"))
    first, second = candidate(smtp(down.port), "down"), candidate(smtp(smtp_sink.port), "ok")

    delivery = deliver(simple_message(), [first, second], breaker=breaker)

    assert outcomes(delivery) == [("provider_error", "421"), ("sent", "")]
    state = breaker.state(first.key)
    assert state.state == CircuitState.OPEN and state.paused_until is None


def test_every_provider_paused_is_tried_in_order_anyway(breaker, clock, smtp_server, smtp_sink):
    slow = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Too many messages, slow down"))
    first, second = candidate(smtp(slow.port), "slow"), candidate(smtp(smtp_sink.port), "ok")
    for key in (first.key, second.key):
        breaker.pause(key, breaker.pause_for(30))

    delivery = deliver(simple_message(), [first, second], breaker=breaker)

    assert outcomes(delivery) == [
        ("skipped", "paused"),
        ("skipped", "paused"),
        ("provider_error", "throttled"),  # still throttling: paused again, nothing counted
        ("sent", ""),
    ]
    assert breaker.state(first.key).failures == 0
    assert breaker.state(first.key).paused_until == clock.now + 5
    assert breaker.state(second.key).paused_until is None  # its success ended its pause


@pytest.mark.parametrize(
    ("code", "message", "throttled"),
    [
        ("Throttling", "Maximum sending rate exceeded.", True),
        ("TooManyRequestsException", "Too many requests.", True),
        ("Throttling", "Daily message quota exceeded.", False),  # not over within a pause
        ("LimitExceededException", "Too many identities.", False),
    ],
)
def test_ses_throttling_error_is_a_throttle(code, message, throttled):
    """The exact shape botocore raises for SES's throttling (Query API, HTTP 400)."""
    error = ClientError(
        {
            "Error": {"Type": "Sender", "Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
        },
        "SendEmail",
    )
    mapped = SesProvider().map_error(error)
    assert isinstance(mapped, ProviderUnavailable)
    assert isinstance(mapped, ProviderThrottled) is throttled
    result = classify(mapped)
    assert result.throttled is throttled and result.counts_for_breaker is not throttled
    assert result.code == ("throttled" if throttled else code)
    if throttled:
        assert mapped.retry_after is None  # SES names no wait: the default pause


class DownCache:
    """A cache whose every call fails, as django-redis does while Redis is down."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise ConnectionError("redis is down")

        return fail


def test_redis_down_a_throttle_still_fails_over(smtp_server, smtp_sink):
    down = CircuitBreaker(DownCache(), guard=plain_guard)
    slow = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Too many messages, slow down"))
    first, second = candidate(smtp(slow.port), "slow"), candidate(smtp(smtp_sink.port), "ok")

    for _ in range(2):  # nothing remembered: the throttled provider is tried each time
        delivery = deliver(simple_message(), [first, second], breaker=down)
        assert outcomes(delivery) == [("provider_error", "throttled"), ("sent", "")]
        assert delivery.attempts[0].message.endswith("; not paused: the cache is unreachable")
    assert down.state(first.key).state == CircuitState.UNKNOWN
