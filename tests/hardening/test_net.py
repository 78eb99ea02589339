"""Issue 9, items 2, 3 and 5: every outbound connection has a deadline over the whole attempt and
every send a budget; hosts are checked on the address actually connected to, redirects are never
followed and provider bodies never echoed; IDN addresses can't poison the SMTP pool."""

from __future__ import annotations

import time

import pytest
from django.core.mail import EmailMessage
from django.test import override_settings

from harness.factories import loopback_smtp
from harness.smtp import ScriptedHandler, SmtpServer
from mailer import services
from mailer.delivery.pool import provider_pool
from mailer.models import DeliveryAttempt, Email, EmailStatus
from mailer.providers.base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    ProviderUnavailable,
)
from mailer.providers.sendgrid.transport import SendGridProvider
from mailer.providers.smtp.transport import SmtpProvider
from tests.appserver import create_account, start_app_server
from tests.conftest import outgoing
from tests.fakes.hostile import Internal, RebindingDns, Redirector, Trickler
from tests.fakes.sendgrid import VALID_KEY

LOOSE = {"timeout": 1.0, "connect_timeout": 1.0, "attempt_deadline": 2.0,
         "allow_private_hosts": True}  # fmt: skip


def message(**overrides) -> EmailMessage:
    fields = {"subject": "Hi", "body": "Hello.", "from_email": "a@example.com",
              "to": ["b@example.org"]}  # fmt: skip
    return EmailMessage(**{**fields, **overrides})


# Item 2: a deadline over the whole attempt ----------------------------------------------------


def test_a_trickled_smtp_greeting_is_cut_off_at_the_attempt_deadline():
    hostile = Trickler(b"220-welcome\r\n", b"220-still welcoming\r\n", interval=0.3)
    try:
        provider = SmtpProvider(host="127.0.0.1", port=hostile.port, security="none", **LOOSE)
        clock = time.monotonic()
        with pytest.raises(ProviderUnavailable) as raised:
            provider.send(message())
        elapsed = time.monotonic() - clock
    finally:
        hostile.stop()
    # Each line came well within the 1 s socket timeout; only the 2 s deadline ends it.
    assert raised.value.code == "deadline"
    assert "cut off at the attempt deadline of 2.0 s" in raised.value.message
    assert elapsed < 2 + 1.5


def test_a_trickled_http_answer_is_cut_off_and_ambiguous():
    hostile = Trickler(b"HTTP/1.1 202 Accepted\r\n", b"X-Pad: x\r\n", interval=0.3, http=True)
    try:
        provider = SendGridProvider(
            api_key=VALID_KEY, host=f"http://127.0.0.1:{hostile.port}", **LOOSE
        )
        clock = time.monotonic()
        with pytest.raises(AmbiguousDelivery) as raised:
            provider.send(message())
        elapsed = time.monotonic() - clock
    finally:
        hostile.stop()
    assert raised.value.code == "deadline"  # the request went out: it may have been sent
    assert elapsed < 2 + 1.5


def test_a_send_stops_at_its_budget_and_is_queued_for_the_sweep(account, add_provider, settings):
    settings.ATTEMPT_DEADLINE_SECONDS = 1.5
    settings.SEND_BUDGET_SECONDS = 3.0
    stalling = [SmtpServer(ScriptedHandler(data_delay=30)).start() for _ in range(4)]
    try:
        for server in stalling:
            add_provider("smtp", settings=loopback_smtp(server.port))  # fmt: skip
        clock = time.monotonic()
        result = services.email_send(account=account, outgoing=outgoing())
        elapsed = time.monotonic() - clock
    finally:
        provider_pool.clear()
        for server in stalling:
            server.stop()
    email = Email.objects.get(pk=result.email.pk)
    outcomes = list(email.attempts.order_by("id").values_list("outcome", "error_code"))
    assert elapsed < 3.0 + 1.5
    assert outcomes[0] == ("ambiguous", "deadline")
    assert ("skipped", "budget") in outcomes  # the providers it never reached are on record
    # Not failed with providers untried, not stuck: queued for the sweep, flagged.
    assert email.status == EmailStatus.QUEUED
    assert email.possible_duplicate
    assert "budget" in email.failure_reason


# Item 3: the private-address rule at connect time, no redirects, no echoed bodies ---------------


def test_a_provider_saved_while_private_hosts_were_allowed_stops_delivering(
    account, add_provider, smtp_sink
):
    add_provider("smtp", settings=loopback_smtp(smtp_sink.port))  # fmt: skip
    with override_settings(ALLOW_PRIVATE_PROVIDER_HOSTS=False):
        provider_pool.clear()
        result = services.email_send(account=account, outgoing=outgoing())
    attempt = DeliveryAttempt.objects.get(email=result.email)
    assert result.email.status == EmailStatus.FAILED
    assert attempt.error_code == "configuration"
    assert "127.0.0.1 is a loopback address" in attempt.error_message
    assert smtp_sink.received == [] and smtp_sink.handler.connections == 0


def test_a_redirect_is_never_followed_and_no_body_is_echoed(caplog):
    internal = Internal()
    redirector = Redirector(internal.url + "/admin")
    try:
        provider = SendGridProvider(api_key=VALID_KEY, host=redirector.url, **LOOSE)
        with pytest.raises(ConfigurationError) as raised:
            provider.send(message())
        internal_error = SendGridProvider(api_key=VALID_KEY, host=internal.url, **LOOSE)
        with pytest.raises(MessageRejected):
            internal_error.send(message())
    finally:
        redirector.stop()
        internal.stop()
    assert len(redirector.requests) == 1
    assert len(internal.requests) == 1  # only the direct call above, never through the redirect
    assert "redirect, which is never followed" in raised.value.message
    assert Internal.SECRET not in raised.value.message
    # A body in SendGrid's documented error shape is quoted (sanitized and short); anything else
    # never is: the redirect's own body was not.
    assert Internal.SECRET not in caplog.text


def test_an_smtp_idn_domain_is_encoded_and_a_bad_address_does_not_poison_the_pool(smtp_sink):
    provider = SmtpProvider(host="127.0.0.1", port=smtp_sink.port, security="none", **LOOSE)
    provider.send(message(to=["ann@bücher.example"]))
    with pytest.raises(MessageRejected) as raised:
        provider.send(message(to=["ok@example.org", "jürgen@example.org"]))
    provider.send(message(to=["next@example.org"]))
    provider.close()
    assert raised.value.code == "encoding"
    assert [r.rcpt_tos for r in smtp_sink.received] == [
        ["ann@xn--bcher-kva.example"],
        ["next@example.org"],
    ]


def test_an_idn_address_through_the_service_is_delivered_and_counts_nothing(
    account, add_provider, smtp_sink
):
    add_provider("smtp", settings=loopback_smtp(smtp_sink.port))  # fmt: skip
    first = services.email_send(account=account, outgoing=outgoing(to=["ann@bücher.example"]))
    second = services.email_send(account=account, outgoing=outgoing(to=["bob@example.org"]))
    assert (first.email.status, second.email.status) == (EmailStatus.SENT, EmailStatus.SENT)
    assert [r.rcpt_tos for r in smtp_sink.received] == [
        ["ann@xn--bcher-kva.example"],
        ["bob@example.org"],
    ]


# The real stack: gunicorn with production settings, a resolver the test controls ------------


@pytest.fixture
def rebinding(tmp_path):
    """gunicorn that refuses private hosts and resolves through a DNS server that rebinds."""
    dns = RebindingDns(["mail.rebind.test", "api.rebind.test"])
    server = start_app_server(
        tmp_path,
        workers=2,
        ALLOW_PRIVATE_PROVIDER_HOSTS="false",
        DNS_NAMESERVERS=dns.address,
    )
    yield server, dns
    server.stop()
    dns.stop()


def test_dns_rebinding_reaches_neither_loopback_smtp_nor_an_http_host(rebinding, smtp_sink):
    server, dns = rebinding
    internal = Internal()
    token = create_account(server, "mallory")
    try:
        smtp = {"kind": "smtp", "name": "rebinding-smtp", "settings": {
            "host": "mail.rebind.test", "port": smtp_sink.port, "security": "none"}}  # fmt: skip
        sendgrid = {"kind": "sendgrid", "name": "rebinding-sendgrid",
                    "settings": {"host": f"http://api.rebind.test:{internal.url.split(':')[-1]}"},
                    "secrets": {"api_key": "SG.mallory"}}  # fmt: skip
        api = server.api(token)
        for config in (smtp, sendgrid):
            saved = api.post("/api/v1/providers", config)
            assert saved.status_code == 201, saved  # saved: the name answered a public address
        sent = api.post("/api/v1/emails", {"from": "m@example.com", "to": "v@example.org",
                                           "subject": "x", "text": "y"})  # fmt: skip
        status, body = sent.status_code, sent.json()
    finally:
        internal.stop()
    assert status == 502, body
    attempts = body["attempts"]
    assert [a["error_code"] for a in attempts] == ["configuration", "configuration"]
    assert all("(it reaches 127.0.0.1)" in a["error_message"] for a in attempts)
    # Both names were asked again at connect time and answered loopback: nothing reached it.
    assert ("mail.rebind.test", "127.0.0.1") in dns.answers
    assert ("api.rebind.test", "127.0.0.1") in dns.answers
    assert smtp_sink.handler.connections == 0
    assert internal.requests == []  # no Authorization: Bearer SG.mallory went anywhere


def test_seven_stalling_providers_end_within_the_budget_and_others_are_served(tmp_path):
    # The first trickles an endless greeting, the others take the message and never answer.
    trickler = Trickler(b"220-welcome\r\n", b"220-still welcoming\r\n", interval=0.5)
    stalling = [SmtpServer(ScriptedHandler(data_delay=60)).start() for _ in range(6)]
    sink = SmtpServer().start()
    server = start_app_server(
        tmp_path,
        workers=2,
        PROVIDER_TIMEOUT="2",
        ATTEMPT_DEADLINE_SECONDS="3",
        SEND_BUDGET_SECONDS="5",
        WEB_TIMEOUT="10",
    )
    try:
        victim = create_account(server, "victim")
        for index, port in enumerate([trickler.port] + [stall.port for stall in stalling]):
            config = {"kind": "smtp", "name": f"stall-{index}", "settings": loopback_smtp(port)}
            assert server.api(victim).post("/api/v1/providers", config).status_code == 201
        other = create_account(server, "other", smtp_port=sink.port)
        email = {"from": "a@example.com", "to": "b@example.org", "subject": "s", "text": "t"}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            clock = time.monotonic()
            slow = pool.submit(server.api(victim).post, "/api/v1/emails", email)
            # Meanwhile another account sends and the health check answers.
            assert server.api(other).post("/api/v1/emails", email).status_code == 201
            assert server.api().get("/healthz").status_code == 200
            answer = slow.result(timeout=60)
            status, body = answer.status_code, answer.json()
            elapsed = time.monotonic() - clock
        # An IDN recipient goes out encoded and leaves the pooled connection fit for the next.
        idn = server.api(other).post("/api/v1/emails", email | {"to": "ann@bücher.example"})
        after = server.api(other).post("/api/v1/emails", email)
    finally:
        server.stop()
        sink.stop()
        trickler.stop()
        for stall in stalling:
            stall.stop()
    assert (idn.status_code, after.status_code) == (201, 201), (idn, after)
    assert [r.rcpt_tos for r in sink.received][-2:] == [["ann@xn--bcher-kva.example"],
                                                        ["b@example.org"]]  # fmt: skip
    assert elapsed < 5 + 3, elapsed  # the budget, not 7 x the timeout
    assert status == 202, body  # accepted, not delivered yet, not a 500
    assert body["status"] == "queued" and body["possible_duplicate"] is True
    attempts = body["attempts"]
    assert (attempts[0]["outcome"], attempts[0]["error_code"]) == ("provider_error", "deadline")
    outcomes = [a["outcome"] for a in attempts]
    assert outcomes.count("ambiguous") >= 1 and outcomes.count("skipped") >= 1
    assert len(outcomes) == 7
