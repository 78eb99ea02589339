"""The SMTP provider against real aiosmtpd servers: what arrives, TLS, AUTH, and each failure."""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time

import pytest
from django.core.mail import EmailMultiAlternatives

from harness.smtp import ScriptedHandler
from mailer.providers.base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    ProviderAuthError,
    ProviderThrottled,
    ProviderUnavailable,
)
from mailer.providers.smtp.transport import SmtpProvider

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def rich_message() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln – ünïcödé ✓",
        body="Hallo Jürgen,\nplain text body.",
        from_email="Zoë Müller <zoe@example.com>",
        to=["Jürgen Groß <juergen@example.org>", "plain@example.org"],
        cc=["cc@example.org"],
        bcc=["hidden@example.org"],
        reply_to=["Réponse <reply@example.com>"],
        headers={"X-Campaign": "spring-2026", "Message-ID": "<fixed-id@example.com>"},
    )
    message.attach_alternative("<p>Hallo <b>Jürgen</b></p>", "text/html")
    message.attach("report.pdf", PDF, "application/pdf")
    message.attach("notes.txt", "ünïcödé notes", "text/plain")
    return message


_open: list[SmtpProvider] = []


def provider(port: int, **options) -> SmtpProvider:
    options.setdefault("security", "none")
    smtp = SmtpProvider(host="127.0.0.1", port=port, timeout=2, connect_timeout=1, **options)
    _open.append(smtp)
    return smtp


def starttls_provider(port: int, tls_files, *, password: str) -> SmtpProvider:
    return provider(
        port,
        security="starttls",
        username="mailer",
        password=password,
        tls_ca_file=str(tls_files[0]),
    )


@pytest.fixture(autouse=True)
def _close_providers(smtp_server):
    """A provider keeps its connection open for reuse; close it before the servers stop
    (depending on smtp_server makes this teardown run first)."""
    yield
    while _open:
        _open.pop().close()


def test_starttls_with_auth_delivers_the_exact_message(smtp_server, server_tls_context, tls_files):
    server = smtp_server(starttls=server_tls_context, credentials=("mailer", "s3cret"))
    smtp = starttls_provider(server.port, tls_files, password="s3cret")

    message_id = smtp.send(rich_message())

    assert message_id == "<fixed-id@example.com>"
    [received] = server.received
    assert received.mail_from == "zoe@example.com"
    assert sorted(received.rcpt_tos) == sorted(
        ["juergen@example.org", "plain@example.org", "cc@example.org", "hidden@example.org"]
    )
    msg = received.message
    assert msg["Subject"] == "Grüße aus Köln – ünïcödé ✓"
    assert msg["From"] == "Zoë Müller <zoe@example.com>"
    assert msg["To"] == "Jürgen Groß <juergen@example.org>, plain@example.org"
    assert msg["Cc"] == "cc@example.org"
    assert msg["Bcc"] is None, "Bcc must never appear in the headers"
    assert msg["Reply-To"] == "Réponse <reply@example.com>"
    assert msg["X-Campaign"] == "spring-2026"
    assert msg["Message-ID"] == "<fixed-id@example.com>"
    # Non-ASCII headers travel encoded (RFC 2047), never as raw 8-bit bytes.
    raw_headers = received.data.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()
    assert msg.get_body(("plain",)).get_content() == "Hallo Jürgen,\nplain text body.\n"
    assert msg.get_body(("html",)).get_content() == "<p>Hallo <b>Jürgen</b></p>\n"
    attachments = {part.get_filename(): part for part in msg.iter_attachments()}
    assert attachments["report.pdf"].get_content_type() == "application/pdf"
    assert attachments["report.pdf"].get_content() == PDF
    assert attachments["notes.txt"].get_content().rstrip("\n") == "ünïcödé notes"


def test_auth_login_when_plain_is_not_offered(smtp_server, server_tls_context, tls_files):
    server = smtp_server(
        starttls=server_tls_context,
        credentials=("mailer", "s3cret"),
        auth_mechanisms_excluded=["PLAIN"],
    )
    smtp = starttls_provider(server.port, tls_files, password="s3cret")
    smtp.send(rich_message())
    assert len(server.received) == 1


def test_implicit_tls(smtp_server, server_tls_context, tls_files):
    server = smtp_server(implicit_tls=server_tls_context)
    smtp = provider(server.port, security="ssl", tls_ca_file=str(tls_files[0]))
    smtp.send(rich_message())
    assert len(server.received) == 1


def test_untrusted_certificate_is_a_provider_error(smtp_server, server_tls_context):
    server = smtp_server(starttls=server_tls_context)
    with pytest.raises(ProviderUnavailable) as caught:
        provider(server.port, security="starttls").send(rich_message())
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_wrong_password_is_an_auth_error(smtp_server, server_tls_context, tls_files):
    server = smtp_server(starttls=server_tls_context, credentials=("mailer", "s3cret"))
    smtp = starttls_provider(server.port, tls_files, password="wrong")
    with pytest.raises(ProviderAuthError) as caught:
        smtp.send(rich_message())
    assert caught.value.code == "535"
    assert caught.value.opens_circuit
    assert server.received == []


def test_connection_is_reused_across_messages(smtp_sink):
    smtp = provider(smtp_sink.port)
    for _ in range(5):
        smtp.send(rich_message())
    assert len(smtp_sink.received) == 5
    assert smtp_sink.handler.connections == 1


def test_a_connection_closed_by_the_server_is_reopened(smtp_server):
    first = smtp_server()
    smtp = provider(first.port)
    smtp.send(rich_message())
    first.stop()
    second = smtp_server(port=first.port)
    smtp.send(rich_message())
    assert len(second.received) == 1


@pytest.mark.parametrize(
    ("script", "error", "code"),
    [
        ({"mail_reply": "421 4.7.0 Too many connections, try later"}, ProviderThrottled, "421"),
        ({"mail_reply": "421 4.7.0 Too many messages, slow down"}, ProviderThrottled, "421"),
        (
            {"data_reply": "454 Throttling failure: Maximum sending rate exceeded."},
            ProviderThrottled,
            "454",
        ),
        ({"mail_reply": "451 4.7.1 Ratelimit exceeded"}, ProviderThrottled, "451"),
        ({"mail_reply": "421 4.3.2 Service not available"}, ProviderUnavailable, "421"),
        ({"mail_reply": "421 4.7.0 Try again later"}, ProviderUnavailable, "421"),
        (
            {"data_reply": "454 Throttling failure: Daily message quota exceeded."},
            ProviderUnavailable,
            "454",
        ),
        ({"data_reply": "451 4.3.0 Local error in processing"}, ProviderUnavailable, "451"),
        (
            {"rcpt_replies": {"rcpt@example.org": "554 5.7.1 Relay access denied"}},
            ProviderUnavailable,
            "554",
        ),
        ({"mail_reply": "454 4.7.0 TLS not available"}, ProviderUnavailable, "454"),
        ({"rcpt_replies": {"rcpt@example.org": "550 5.1.1 No such user"}}, MessageRejected, "550"),
        ({"data_reply": "552 5.3.4 Message too big"}, MessageRejected, "552"),
    ],
)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_smtp_replies_are_classified(smtp_server, script, error, code, pipelining):
    server = smtp_server(ScriptedHandler(**script, pipelining=pipelining))
    message = EmailMultiAlternatives("Hi", "Body", "s@example.com", ["rcpt@example.org"])
    with pytest.raises(error) as caught:
        provider(server.port).send(message)
    assert type(caught.value) is error
    assert caught.value.code == code
    assert code in caught.value.message
    assert server.received == []


@pytest.fixture
def writes(monkeypatch) -> list[bytes]:
    """What smtplib writes to the server, one entry per write."""
    sent: list[bytes] = []
    original = smtplib.SMTP.send

    def send(self, data):
        sent.append(data.encode() if isinstance(data, str) else data)
        return original(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", send)
    return sent


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_the_envelope_is_one_write_when_the_server_offers_pipelining(
    smtp_server, writes, pipelining
):
    server = smtp_server(ScriptedHandler(pipelining=pipelining))
    smtp = provider(server.port)
    smtp.send(rich_message())  # connects (EHLO) and sends
    writes.clear()
    smtp.send(rich_message())

    # MAIL FROM, 4 RCPT TO (to, cc, bcc) and DATA: one write, or one each; then the content.
    assert len(writes) == (2 if pipelining else 7)
    envelope = b"".join(writes[:-1])
    assert envelope.startswith(b"mail from:<zoe@example.com>\r\nrcpt to:")
    assert envelope.endswith(b"data\r\n") and envelope.count(b"rcpt to:") == 4
    assert writes[-1].endswith(b"\r\n.\r\n")
    first, second = (
        re.sub(rb"Date: [^\r]*", b"Date: -", re.sub(rb"=_[\w-]{16}", b"BOUNDARY", r.data))
        for r in server.received
    )
    assert first == second  # the same message both times, but for its boundaries and Date
    assert server.handler.connections == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
def test_a_refused_recipient_sends_nothing_and_the_next_message_goes_through(
    smtp_server, pipelining
):
    server = smtp_server(ScriptedHandler(
        rcpt_replies={"gone@example.org": "550 5.1.1 No such user"}, pipelining=pipelining
    ))  # fmt: skip
    smtp = provider(server.port)
    refused = EmailMultiAlternatives(
        "Hi", "Body", "s@example.com", ["ok@example.org", "gone@example.org"]
    )
    with pytest.raises(MessageRejected) as caught:
        smtp.send(refused)
    assert "gone@example.org" in caught.value.message and caught.value.code == "550"
    assert server.received == []  # DATA was accepted in the pipeline: nothing was sent

    smtp.send(EmailMultiAlternatives("Hi", "Body", "s@example.com", ["ok@example.org"]))
    [received] = server.received
    assert received.rcpt_tos == ["ok@example.org"]
    # Pipelined, DATA had been accepted, so that connection was closed; else it was reset.
    assert server.handler.connections == (2 if pipelining else 1)


@pytest.fixture
def closes_after_refusing():
    """A server offering PIPELINING that answers the envelope with 421 and closes, as RFC 5321
    lets a server that is shutting the channel; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 test ESMTP\r\n")
            lines.readline()  # EHLO
            conn.sendall(b"250-test\r\n250 PIPELINING\r\n")
            while lines.readline().lower() not in (b"data\r\n", b""):
                pass
            conn.sendall(b"421 4.3.2 Service not available, closing channel\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    thread.join(10)
    listener.close()


def test_a_refusal_then_the_server_closing_is_the_refusal(closes_after_refusing, writes):
    smtp = provider(closes_after_refusing)
    message = EmailMultiAlternatives("Hi", "Body", "s@example.com", ["rcpt@example.org"])
    with pytest.raises(ProviderUnavailable) as caught:
        smtp.send(message)
    assert caught.value.code == "421" and "Service not available" in caught.value.message
    # The connection was dropped once the server closed: no RSET is written to it.
    assert not any(write.lower().startswith(b"rset") for write in writes), writes


def test_a_message_with_leading_dots_arrives_as_written(smtp_sink):
    body = ".starts with a dot\n..two dots\nmiddle . dot\n."
    provider(smtp_sink.port).send(EmailMultiAlternatives("Dots", body, "s@example.com",
                                                         ["ok@example.org"]))  # fmt: skip
    [received] = smtp_sink.received
    assert received.message.get_content().replace("\r\n", "\n").rstrip("\n") == body


def test_refused_connection(closed_port):
    with pytest.raises(ProviderUnavailable) as caught:
        provider(closed_port).send(rich_message())
    assert caught.value.code == "connect"


def test_server_that_never_greets_times_out(blackhole):
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        provider(blackhole.port).send(rich_message())
    assert caught.value.code in ("timeout", "disconnected")
    assert time.monotonic() - started < 5


def test_drop_after_data_is_ambiguous(smtp_server):
    server = smtp_server(ScriptedHandler(drop_after_data=True))
    with pytest.raises(AmbiguousDelivery):
        provider(server.port).send(rich_message())


def test_stall_after_data_is_ambiguous(smtp_server):
    server = smtp_server(ScriptedHandler(data_delay=4))
    started = time.monotonic()
    with pytest.raises(AmbiguousDelivery) as caught:
        provider(server.port).send(rich_message())
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 4


def test_missing_host_names_the_setting():
    with pytest.raises(ConfigurationError) as caught:
        SmtpProvider(port=25, security="none").send(rich_message())
    assert caught.value.setting == "host"
    assert "'host'" in str(caught.value)


def test_invalid_security_names_the_setting():
    with pytest.raises(ConfigurationError) as caught:
        SmtpProvider(host="x", security="tls")
    assert caught.value.setting == "security"
