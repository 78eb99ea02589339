"""The SendGrid provider over real HTTP against the stand-in: payload, each failure, failover."""

from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import MIMEPart

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from harness.ports import free_port
from mailer import services
from mailer.models import DeliveryAttempt
from mailer.providers.base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    ProviderAuthError,
    ProviderUnavailable,
)
from mailer.providers.sendgrid import SendGridProvider
from tests.conftest import outgoing
from tests.fakes.sendgrid import VALID_KEY, SendGridServer, running_sendgrid

BLOB = bytes(range(256)) * 3


def provider(server: SendGridServer | None = None, **options) -> SendGridProvider:
    options.setdefault("api_key", VALID_KEY)
    options.setdefault("host", server.url if server else None)
    options.setdefault("timeout", 2)
    options.setdefault("connect_timeout", 1)
    return SendGridProvider(**options)


def simple_message(**overrides) -> EmailMessage:
    fields = {
        "subject": "Hi",
        "body": "Hello.",
        "from_email": "sender@example.com",
        "to": ["rcpt@example.org"],
    }
    fields.update(overrides)
    return EmailMessage(**fields)


# What arrives --------------------------------------------------------------------------------


def test_every_field_arrives_intact(sendgrid_server):
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln: ünïcödé ✓ 日本",
        body="Hallo Jürgen,\nplain text body.",
        from_email="Zoë Müller <zoe@example.com>",
        to=["Jürgen Groß <juergen@example.org>", "plain@example.org"],
        cc=["Carbon <cc@example.org>"],
        bcc=["hidden@example.org"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"},
    )
    message.attach_alternative("<p>Hallo <b>Jürgen</b></p>", "text/html")
    message.attach("report.bin", BLOB, "application/octet-stream")
    message.attach("notes.txt", "Zeile ä\n", "text/plain")

    message_id = provider(sendgrid_server).send(message)

    [got] = sendgrid_server.messages
    assert message_id == got["_message_id"] and len(message_id) >= 16
    assert got["personalizations"] == [
        {
            "to": [
                {"email": "juergen@example.org", "name": "Jürgen Groß"},
                {"email": "plain@example.org"},
            ],
            "cc": [{"email": "cc@example.org", "name": "Carbon"}],
            "bcc": [{"email": "hidden@example.org"}],
        }
    ]
    assert got["from"] == {"email": "zoe@example.com", "name": "Zoë Müller"}
    assert got["reply_to"] == {"email": "help@example.com", "name": "Help Desk"}
    assert "reply_to_list" not in got
    assert got["subject"] == "Grüße aus Köln: ünïcödé ✓ 日本"
    assert got["content"] == [
        {"type": "text/plain", "value": "Hallo Jürgen,\nplain text body."},
        {"type": "text/html", "value": "<p>Hallo <b>Jürgen</b></p>"},
    ]
    report, notes = got["attachments"]
    assert base64.b64decode(report["content"]) == BLOB
    assert {k: v for k, v in report.items() if k != "content"} == {
        "filename": "report.bin",
        "type": "application/octet-stream",
        "disposition": "attachment",
    }
    assert base64.b64decode(notes["content"]).decode() == "Zeile ä\n"
    assert notes["type"] == "text/plain"
    assert got["headers"] == {"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"}
    assert got["_headers"]["Authorization"] == f"Bearer {VALID_KEY}"
    assert got["_headers"]["User-Agent"] == "emailservice"


def test_html_body_goes_after_its_text_alternative_and_duplicates_are_merged(sendgrid_server):
    message = simple_message(
        body="<p>Hi</p>",
        to=["a@example.org", "A@example.org"],
        cc=["a@example.org"],
        bcc=["b@example.org"],
        reply_to=["r1@example.com", "R Two <r2@example.com>"],
        headers={"X-Count": 3, "Content-Type": "text/evil", "Bcc": "spy@example.org"},
    )
    message.content_subtype = "html"

    provider(sendgrid_server).send(message)

    [got] = sendgrid_server.messages
    # SendGrid refuses an address twice in one personalization; the recipient gets one copy.
    assert got["personalizations"] == [
        {"to": [{"email": "a@example.org"}], "bcc": [{"email": "b@example.org"}]}
    ]
    assert got["content"] == [{"type": "text/html", "value": "<p>Hi</p>"}]
    assert got["reply_to_list"] == [
        {"email": "r1@example.com"},
        {"email": "r2@example.com", "name": "R Two"},
    ]
    # Reserved headers are left out (SendGrid would refuse the whole message); values are text.
    assert got["headers"] == {"X-Count": "3"}


def test_non_ascii_domain_is_idna_encoded(sendgrid_server):
    provider(sendgrid_server).send(simple_message(to=["Zoë <zoe@bücher.example>"]))
    [got] = sendgrid_server.messages
    assert got["personalizations"][0]["to"] == [
        {"email": "zoe@xn--bcher-kva.example", "name": "Zoë"}
    ]


def test_one_provider_sends_from_many_threads(sendgrid_server):
    sender = provider(sendgrid_server)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: sender.send(simple_message(subject=f"n{n}")), range(24)))
    assert len(set(ids)) == 24
    assert sorted(m["_message_id"] for m in sendgrid_server.messages) == sorted(ids)


def test_text_alternative_is_sent_first():
    with running_sendgrid() as server:
        message = EmailMultiAlternatives(
            subject="Hi", body="<p>Hi</p>", from_email="s@example.com", to=["r@example.org"]
        )
        message.content_subtype = "html"
        message.attach_alternative("Hi", "text/plain")
        provider(server).send(message)
        assert [c["type"] for c in server.messages[0]["content"]] == ["text/plain", "text/html"]


def test_mime_part_attachments(sendgrid_server):
    inline = MIMEPart()
    inline.set_content(
        b"\x89PNG...",
        maintype="image",
        subtype="png",
        disposition="inline",
        filename="logo.png",
        cid="<logo@example.com>",
    )
    message = simple_message(attachments=[inline])

    provider(sendgrid_server).send(message)

    [attachment] = sendgrid_server.messages[0]["attachments"]
    assert attachment == {
        "content": base64.b64encode(b"\x89PNG...").decode(),
        "filename": "logo.png",
        "type": "image/png",
        "disposition": "inline",
        "content_id": "logo@example.com",
    }

    nested = MIMEPart()
    nested.make_mixed()
    with pytest.raises(MessageRejected):
        provider(sendgrid_server).send(simple_message(attachments=[nested]))


# Failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error", "code", "text"),
    [
        ("401", ProviderAuthError, "401", "authorization grant is invalid"),
        ("429", ProviderUnavailable, "429", "too many requests (rate limit resets at"),
        ("500", ProviderUnavailable, "500", "Internal server error"),
    ],
)
def test_failure_modes(sendgrid_server, mode, error, code, text):
    sendgrid_server.mode = mode
    with pytest.raises(error) as caught:
        provider(sendgrid_server).send(simple_message())
    assert type(caught.value) is error
    assert caught.value.code == code
    assert caught.value.outcome == "provider_error"
    assert caught.value.opens_circuit is (mode == "401")
    assert text in caught.value.message
    assert sendgrid_server.messages == []


def test_wrong_key_is_an_auth_error(sendgrid_server):
    with pytest.raises(ProviderAuthError) as caught:
        provider(sendgrid_server, api_key="SG.wrong").send(simple_message())
    assert caught.value.opens_circuit
    assert "SG.wrong" not in caught.value.message


def test_stall_after_sending_is_ambiguous_within_the_timeout(sendgrid_server):
    sendgrid_server.mode = "stall"
    started = time.monotonic()
    with pytest.raises(AmbiguousDelivery) as caught:
        provider(sendgrid_server, timeout=1, connect_timeout=1).send(simple_message())
    assert time.monotonic() - started < 2.5
    assert caught.value.code == "timeout"
    assert len(sendgrid_server.requests) == 1  # it did arrive: a retry elsewhere may duplicate


def test_connection_dropped_after_sending_is_ambiguous(sendgrid_server):
    sendgrid_server.mode = "drop"
    with pytest.raises(AmbiguousDelivery) as caught:
        provider(sendgrid_server).send(simple_message())
    assert caught.value.code == "disconnected"
    assert len(sendgrid_server.requests) == 1


def test_closed_port_is_a_connect_error():
    port = free_port()
    with pytest.raises(ProviderUnavailable) as caught:
        provider(host=f"http://127.0.0.1:{port}").send(simple_message())
    assert caught.value.code == "connect"
    assert caught.value.outcome == "provider_error" and not caught.value.opens_circuit


def test_unresolvable_host_is_a_connect_error():
    with pytest.raises(ProviderUnavailable) as caught:
        provider(host="http://sendgrid.invalid").send(simple_message())
    assert caught.value.code == "connect"


def test_connect_timeout_is_not_ambiguous():
    # A listener whose accept queue is full: Linux drops further SYNs, so connect() hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.1)
        try:
            port = listener.getsockname()[1]
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable) as caught:
                provider(host=f"http://127.0.0.1:{port}", timeout=0.5).send(simple_message())
            assert time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()
    assert caught.value.code == "timeout"


def test_invalid_recipient_is_rejected_by_sendgrid(sendgrid_server):
    with pytest.raises(MessageRejected) as caught:
        provider(sendgrid_server).send(simple_message(to=["rcpt@localhost"]))
    assert caught.value.code == "400"
    assert caught.value.outcome == "rejected"
    assert caught.value.message == (
        "HTTP 400: personalizations.0.to.0.email: Does not contain a valid address."
    )
    assert sendgrid_server.messages == []


def test_empty_body_is_rejected_by_sendgrid(sendgrid_server):
    with pytest.raises(MessageRejected) as caught:
        provider(sendgrid_server).send(simple_message(body=""))
    assert "content parameter is required" in caught.value.message


def test_unparseable_address_is_rejected_before_sending(sendgrid_server):
    with pytest.raises(MessageRejected) as caught:
        provider(sendgrid_server).send(simple_message(to=["not an address"]))
    assert caught.value.code == "invalid_address"
    assert sendgrid_server.requests == []


def test_missing_api_key_names_the_setting(sendgrid_server, monkeypatch):
    # The SDK would fall back to this variable; the provider must never let it.
    monkeypatch.setenv("SENDGRID_API_KEY", VALID_KEY)
    with pytest.raises(ConfigurationError) as caught:
        provider(sendgrid_server, api_key=None).send(simple_message())
    assert caught.value.setting == "api_key"
    assert "'api_key'" in caught.value.message
    assert sendgrid_server.requests == []


@pytest.mark.parametrize("host", ["api.sendgrid.com", "ftp://api.sendgrid.com", "https://"])
def test_bad_host_names_the_setting(host):
    with pytest.raises(ConfigurationError) as caught:
        provider(host=host).send(simple_message())
    assert caught.value.setting == "host"


def test_describe_names_the_host_never_the_key():
    assert provider(api_key="SG.secret").describe() == "sendgrid https://api.sendgrid.com"
    eu = provider(api_key="SG.secret", host="https://api.eu.sendgrid.com/v3/")
    assert eu.describe() == "sendgrid https://api.eu.sendgrid.com"


# Through the service: failover between two SendGrid configs ----------------------------------


@pytest.fixture
def second_sendgrid():
    with running_sendgrid() as server:
        yield server


@pytest.mark.django_db
def test_failover_from_a_failing_sendgrid_to_the_next(
    account, add_provider, sendgrid_server, second_sendgrid
):
    sendgrid_server.mode = "500"
    first = add_provider(
        "sendgrid",
        name="sg-us",
        settings={"host": sendgrid_server.url},
        secrets={"api_key": VALID_KEY},
    )
    second = add_provider(
        "sendgrid",
        name="sg-eu",
        settings={"host": second_sendgrid.url},
        secrets={"api_key": VALID_KEY},
    )

    result = services.email_send(account=account, outgoing=outgoing(headers={"X-Ref": "42"}))

    email = result.email
    email.refresh_from_db()
    assert email.status == "sent"
    assert email.sent_via == second and email.sent_via_kind == "sendgrid"
    [accepted] = second_sendgrid.messages
    assert email.provider_message_id == accepted["_message_id"]
    assert accepted["headers"] == {"X-Ref": "42", "Message-ID": email.message_id}
    attempts = list(DeliveryAttempt.objects.filter(email=email).order_by("started_at", "id"))
    assert [(a.provider, a.outcome) for a in attempts] == [
        (first, "provider_error"),
        (second, "sent"),
    ]
    assert attempts[0].error_code == "500"
    assert attempts[1].provider_message_id == accepted["_message_id"]
    assert not email.possible_duplicate
    assert len(sendgrid_server.requests) == 1 and sendgrid_server.messages == []


@pytest.mark.django_db
def test_rejected_message_does_not_fail_over(
    account, add_provider, sendgrid_server, second_sendgrid
):
    add_provider(
        "sendgrid",
        name="sg-us",
        settings={"host": sendgrid_server.url},
        secrets={"api_key": VALID_KEY},
    )
    add_provider(
        "sendgrid",
        name="sg-eu",
        settings={"host": second_sendgrid.url},
        secrets={"api_key": VALID_KEY},
    )

    result = services.email_send(account=account, outgoing=outgoing(to=["rcpt@localhost"]))

    email = result.email
    email.refresh_from_db()
    assert email.status == "failed" and email.sent_via is None
    assert "valid address" in email.failure_reason
    assert [a.outcome for a in email.attempts.all()] == ["rejected"]
    assert second_sendgrid.requests == []
