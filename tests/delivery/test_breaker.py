"""The circuit breaker: opening after the threshold, skipping without a network call, one probe
after the reset period, and state shared between processes through the real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache

from harness.factories import loopback_smtp
from harness.smtp import ScriptedHandler
from mailer.delivery.breaker import CircuitBreaker, breaker
from mailer.services import email_send
from mailer.vocabulary import CircuitState
from tests.conftest import outgoing

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_open_circuit_is_skipped_without_a_network_call(
    add_provider, smtp_server, smtp_sink, settings
):
    settings.BREAKER_THRESHOLD = 3
    settings.BREAKER_RESET_SECONDS = 0.6
    flaky = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Try again later"))
    first = add_provider("smtp", name="flaky", settings=loopback_smtp(flaky.port))
    add_provider("smtp", name="healthy", settings=loopback_smtp(smtp_sink.port))

    for _ in range(3):
        email = email_send(account=first.account, outgoing=outgoing()).email
        assert [a.outcome for a in email.attempts.all()] == ["provider_error", "sent"]
    assert breaker().state(first.breaker_key).state == CircuitState.OPEN
    connections = flaky.handler.connections

    email = email_send(account=first.account, outgoing=outgoing()).email
    assert [(a.outcome, a.error_code) for a in email.attempts.all()] == [
        ("skipped", "circuit_open"),
        ("sent", ""),
    ]
    assert flaky.handler.connections == connections, "an open circuit must not touch the network"

    # After the reset period exactly one probe goes through; it succeeds and closes the circuit.
    flaky.handler.mail_reply = None
    time.sleep(0.7)
    assert breaker().state(first.breaker_key).state == CircuitState.HALF_OPEN
    email = email_send(account=first.account, outgoing=outgoing()).email
    assert [a.outcome for a in email.attempts.all()] == ["sent"]
    assert email.sent_via == first
    assert breaker().state(first.breaker_key).state == CircuitState.CLOSED
    assert len(flaky.received) == 1


@pytest.mark.django_db
def test_auth_error_opens_the_circuit_at_once(add_provider, smtp_server, smtp_sink):
    locked = smtp_server(credentials=("user", "right"))
    first = add_provider(
        "smtp",
        name="locked",
        settings=loopback_smtp(locked.port),
        secrets={"username": "user", "password": "wrong"},
    )
    add_provider("smtp", name="healthy", settings=loopback_smtp(smtp_sink.port))
    email_send(account=first.account, outgoing=outgoing())
    state = breaker().state(first.breaker_key)
    assert state.state == CircuitState.OPEN
    assert "535" in state.last_error


@pytest.mark.django_db
def test_a_failed_probe_reopens_the_circuit(add_provider, closed_port, smtp_sink, settings):
    settings.BREAKER_THRESHOLD = 1
    settings.BREAKER_RESET_SECONDS = 0.3
    first = add_provider("smtp", name="dead", settings=loopback_smtp(closed_port))
    add_provider("smtp", name="healthy", settings=loopback_smtp(smtp_sink.port))
    email_send(account=first.account, outgoing=outgoing())
    time.sleep(0.4)
    email = email_send(account=first.account, outgoing=outgoing()).email
    assert [a.outcome for a in email.attempts.all()] == ["provider_error", "sent"]
    assert breaker().state(first.breaker_key).state == CircuitState.OPEN


@pytest.mark.django_db
def test_every_circuit_open_still_tries_in_order(add_provider, closed_port, smtp_sink):
    dead = add_provider("smtp", name="dead", settings=loopback_smtp(closed_port))
    healthy = add_provider("smtp", name="healthy", settings=loopback_smtp(smtp_sink.port))
    for config in (dead, healthy):
        breaker().record_failure(config.breaker_key, error="earlier outage", trip_now=True)

    email = email_send(account=dead.account, outgoing=outgoing()).email

    assert email.status == "sent"
    assert [(a.provider.name, a.outcome) for a in email.attempts.all()] == [
        ("dead", "skipped"),
        ("healthy", "skipped"),
        ("dead", "provider_error"),
        ("healthy", "sent"),
    ]
    assert breaker().state(healthy.breaker_key).state == CircuitState.CLOSED


def test_half_open_lets_exactly_one_probe_through():
    board = CircuitBreaker(cache, threshold=1, reset_seconds=0.2, probe_seconds=5)
    board.record_failure("probe-test", error="boom")
    assert not board.allow("probe-test")
    time.sleep(0.25)
    assert [board.allow("probe-test") for _ in range(5)] == [True, False, False, False, False]
    board.record_success("probe-test")
    assert board.allow("probe-test")


def test_consecutive_count_resets_on_success():
    board = CircuitBreaker(cache, threshold=3, reset_seconds=60)
    board.record_failure("k", error="1")
    board.record_failure("k", error="2")
    board.record_success("k")
    board.record_failure("k", error="3")
    board.record_failure("k", error="4")
    assert board.state("k").state == CircuitState.CLOSED
    assert board.record_failure("k", error="5") is True
    assert board.state("k").state == CircuitState.OPEN


CHILD = """
import json, sys, django
django.setup()
from mailer.delivery.breaker import breaker
action, key = sys.argv[1], sys.argv[2]
board = breaker()
if action == "fail":
    for n in range(int(sys.argv[3])):
        board.record_failure(key, error=f"child failure {n}")
print(json.dumps({"state": board.state(key).state, "allow": board.allow(key)}))
"""


def run_child(*args: str) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_state_is_shared_between_processes_through_redis(settings):
    assert "redis" in settings.CACHES["default"]["BACKEND"].lower()
    key = f"provider:shared-{os.getpid()}"
    # Another process sees this process's failures ...
    breaker().record_failure(key, error="parent failure 1")
    breaker().record_failure(key, error="parent failure 2")
    assert run_child("read", key) == {"state": CircuitState.CLOSED, "allow": True}
    # ... adds the one that trips the circuit, and this process sees it open.
    assert run_child("fail", key, "1") == {"state": CircuitState.OPEN, "allow": False}
    state = breaker().state(key)
    assert state.state == CircuitState.OPEN
    assert state.failures == 3
    assert state.last_error == "child failure 0"
    assert not breaker().allow(key)
