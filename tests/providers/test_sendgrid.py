"""The SendGrid provider over real HTTP against the stand-in: the payload it sends, what SendGrid
refuses, and the HTTP client's connect failures. What every HTTP kind shares (each failure's
outcome, settings, the registry, failover) is in test_http_contract.py."""

from __future__ import annotations

import base64
import select
import socket
import time
from email.message import MIMEPart

import pytest
from django.core.mail import EmailMultiAlternatives

from mailer.providers.base import ConfigurationError, MessageRejected, ProviderUnavailable
from tests.fakes.sendgrid import VALID_KEY
from tests.providers.http_kinds import SENDGRID, simple_message

BLOB = bytes(range(256)) * 3
provider = SENDGRID.provider


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


def test_text_alternative_is_sent_first(sendgrid_server):
    message = EmailMultiAlternatives(
        subject="Hi", body="<p>Hi</p>", from_email="s@example.com", to=["r@example.org"]
    )
    message.content_subtype = "html"
    message.attach_alternative("Hi", "text/plain")
    provider(sendgrid_server).send(message)
    [got] = sendgrid_server.messages
    assert [c["type"] for c in got["content"]] == ["text/plain", "text/html"]


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


# Refusals and connect failures ---------------------------------------------------------------


def test_empty_body_is_rejected_by_sendgrid(sendgrid_server):
    with pytest.raises(MessageRejected) as caught:
        provider(sendgrid_server).send(simple_message(body=""))
    assert "content parameter is required" in caught.value.message


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
        try:
            # Wait until one of them is connected: the queue is full from then on.
            _, connected, _ = select.select([], fillers, [], 2)
            assert connected
            port = listener.getsockname()[1]
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable) as caught:
                provider(host=f"http://127.0.0.1:{port}", timeout=0.5).send(simple_message())
            assert time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()
    assert caught.value.code == "timeout"


def test_the_sdks_environment_variable_is_never_a_fallback(sendgrid_server, monkeypatch):
    # The SDK would fall back to this variable; the provider must never let it.
    monkeypatch.setenv("SENDGRID_API_KEY", VALID_KEY)
    with pytest.raises(ConfigurationError) as caught:
        provider(sendgrid_server, api_key=None).send(simple_message())
    assert caught.value.setting == "api_key"
    assert sendgrid_server.requests == []
