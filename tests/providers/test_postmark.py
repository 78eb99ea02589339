"""The Postmark provider over real HTTP against the stand-in: the fields it sends, the one
kept-alive connection, Postmark's ErrorCodes, its message stream and URL form. What every HTTP
kind shares (each failure's outcome, settings, the registry, failover) is in
test_http_contract.py."""

from __future__ import annotations

import base64
import http.client
import json
from email.message import MIMEPart

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from mailer.provider_settings import ProviderSettingsError, clean_provider, provider_urls
from mailer.providers import build_provider
from mailer.providers.base import MessageRejected, ProviderAuthError, ProviderUnavailable
from mailer.providers.httpclient import HttpAnswer
from tests.fakes.postmark import VALID_TOKEN
from tests.providers.http_kinds import POSTMARK, simple_message

BLOB = bytes(range(256)) * 3
provider = POSTMARK.provider


def pdf_part() -> MIMEPart:
    part = MIMEPart()
    part.set_content(b"%PDF-1.4", maintype="application", subtype="pdf", filename="terms.pdf")
    return part


def inline_logo() -> MIMEPart:
    part = MIMEPart()
    part.set_content(
        b"\x89PNG...",
        maintype="image",
        subtype="png",
        disposition="inline",
        filename="logo.png",
        cid="<logo@example.com>",
    )
    return part


# What arrives --------------------------------------------------------------------------------


def test_every_field_arrives_intact(postmark_server):
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln: ünïcödé ✓ 日本",
        body="Hallo Jürgen,\nplain text body.",
        from_email="Zoë Müller <zoe@example.com>",
        to=["Jürgen Groß <juergen@example.org>", "Zoë <zoe@bücher.example>"],
        cc=["Carbon <cc@example.org>"],
        bcc=["hidden@example.org"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"},
        attachments=[inline_logo(), pdf_part()],
    )
    message.attach_alternative(
        "<p>Hallo <b>Jürgen</b> <img src='cid:logo@example.com'></p>", "text/html"
    )
    message.attach("report.dat", BLOB, "application/octet-stream")
    message.attach("notes.txt", "Zeile ä\n", "text/plain")
    message.metadata = {"email_id": "42"}

    message_id = provider(postmark_server).send(message)

    [got] = postmark_server.messages
    assert message_id == got.pop("_message_id")
    headers = got.pop("_headers")
    assert headers["X-Postmark-Server-Token"] == VALID_TOKEN
    assert headers["Accept"] == headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "emailservice"
    attachments = got.pop("Attachments")
    assert got == {
        "From": "Zoë Müller <zoe@example.com>",
        "To": "Jürgen Groß <juergen@example.org>, Zoë <zoe@xn--bcher-kva.example>",
        "Cc": "Carbon <cc@example.org>",
        "Bcc": "hidden@example.org",
        "ReplyTo": "Help Desk <help@example.com>",
        "Subject": "Grüße aus Köln: ünïcödé ✓ 日本",
        "TextBody": "Hallo Jürgen,\nplain text body.",
        "HtmlBody": "<p>Hallo <b>Jürgen</b> <img src='cid:logo@example.com'></p>",
        "Headers": [
            {"Name": "X-Campaign", "Value": "spring-2025"},
            {"Name": "Message-ID", "Value": "<abc.123@example.com>"},
        ],
        "Metadata": {"email_id": "42"},
        "MessageStream": "outbound",
    }
    decoded = [{**a, "Content": base64.b64decode(a["Content"])} for a in attachments]
    assert decoded == [
        {
            "Name": "logo.png",
            "Content": b"\x89PNG...",
            "ContentType": "image/png",
            "ContentID": "cid:logo@example.com",
        },
        {"Name": "terms.pdf", "Content": b"%PDF-1.4", "ContentType": "application/pdf"},
        {"Name": "report.dat", "Content": BLOB, "ContentType": "application/octet-stream"},
        {"Name": "notes.txt", "Content": "Zeile ä\n".encode(), "ContentType": "text/plain"},
    ]


def test_html_only_quoted_names_and_reserved_headers(postmark_server):
    message = simple_message(
        body="<p>Hi</p>",
        from_email='"Doe, Jane" <jane@example.com>',
        to=['"Smith, J. \\"Jo\\"" <jo@example.org>', "b@example.org"],
        reply_to=["r1@example.com", "R Two <r2@example.com>"],
        headers={"X-Count": 3, "Content-Type": "text/evil", "Bcc": "spy@example.org"},
    )
    message.content_subtype = "html"

    provider(postmark_server).send(message)

    [got] = postmark_server.messages
    # A name with a comma is quoted: Postmark splits its lists at commas.
    assert got["From"] == '"Doe, Jane" <jane@example.com>'
    assert got["To"] == '"Smith, J. \\"Jo\\"" <jo@example.org>, b@example.org'
    assert got["ReplyTo"] == "r1@example.com, R Two <r2@example.com>"
    assert got["HtmlBody"] == "<p>Hi</p>" and "TextBody" not in got
    # Fields carry these; values are text.
    assert got["Headers"] == [{"Name": "X-Count", "Value": "3"}]
    assert "Metadata" not in got  # site mail has no email id


def test_messages_share_one_kept_alive_connection(postmark_server):
    sender = provider(postmark_server)
    ids = {sender.send(simple_message(subject=f"n{n}")) for n in range(3)}
    assert len(ids) == 3
    assert len(set(postmark_server.peers)) == 1


def calendar_alternative() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives("Hi", "Hi", "s@example.com", ["r@example.org"])
    message.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
    return message


def nested_attachment() -> EmailMessage:
    nested = MIMEPart()
    nested.make_mixed()
    return simple_message(attachments=[nested])


@pytest.mark.parametrize(
    ("make", "code"), [(calendar_alternative, "alternative"), (nested_attachment, "attachment")]
)
def test_what_postmark_has_no_field_for_is_rejected_before_sending(postmark_server, make, code):
    with pytest.raises(MessageRejected) as caught:
        provider(postmark_server).send(make())
    assert caught.value.code == code
    assert postmark_server.requests == []


# Postmark's ErrorCodes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error", "code", "text"),
    [
        ({"to": ["two..dots@example.org"]}, MessageRejected, "422/300", "Illegal email address"),
        ({"body": ""}, MessageRejected, "422/300", "Provide either email TextBody or HtmlBody"),
        (
            {"attachments": [("setup.exe", b"MZ", "application/octet-stream")]},
            MessageRejected,
            "422/411",
            "forbidden file type",
        ),
        # An account setting, not the message: the next provider may send it.
        ({"from_email": "me@other.test"}, ProviderAuthError, "422/400", "not a Sender Signature"),
    ],
)
def test_postmark_error_codes(postmark_server, overrides, error, code, text):
    with pytest.raises(error) as caught:
        provider(postmark_server).send(simple_message(**overrides))
    assert type(caught.value) is error
    assert caught.value.code == code
    assert text in caught.value.message


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (405, ProviderAuthError),  # not allowed to send: out of credits
        (413, ProviderAuthError),  # account may not send
        (100, ProviderUnavailable),  # maintenance
        (402, MessageRejected),  # invalid JSON
        (9999, MessageRejected),  # not listed: a 422 is about the payload
    ],
)
def test_each_error_code_means_its_outcome(code, error):
    body = json.dumps({"ErrorCode": code, "Message": "Nope."}).encode()
    refusal = provider().refusal(HttpAnswer(422, http.client.HTTPMessage(), body))
    assert type(refusal) is error
    assert refusal.code == f"422/{code}"
    assert refusal.message == f"HTTP 422: ErrorCode {code}: Nope."


# Through the registry and MAIL_PROVIDER_URLS -------------------------------------------------


def test_message_stream_arrives_through_the_registry(postmark_server):
    sender = build_provider(
        "postmark",
        settings={"message_stream": "broadcast", "api_url": postmark_server.url},
        secrets={"server_token": VALID_TOKEN},
        timeout=2,
        connect_timeout=1,
        allow_private_hosts=True,
    )
    message_id = sender.send(simple_message())
    [got] = postmark_server.messages
    assert message_id == got["_message_id"] and got["MessageStream"] == "broadcast"


DEFAULTS = {"message_stream": "outbound", "api_url": "https://api.postmarkapp.com"}


@pytest.mark.parametrize(
    ("url", "settings_"),
    [
        ("postmark://:pm-token@", DEFAULTS),
        (
            "postmark://pm-token@127.0.0.1:8443?message_stream=broadcast",
            {"message_stream": "broadcast", "api_url": "https://127.0.0.1:8443"},
        ),
        (
            "postmark://:pm-token@?api_url=http://127.0.0.1:8025",
            {**DEFAULTS, "api_url": "http://127.0.0.1:8025"},
        ),
    ],
)
def test_provider_urls(url, settings_):
    expected = [("postmark", settings_, {"server_token": "pm-token"})]
    assert provider_urls([url], source="x") == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postmark://:t@?stream=x", "unknown URL parameter stream"),
        ("postmark://:t@h.example?api_url=https://x.example", "not both"),
        ("postmark://:t@?message_stream=a%20b", "settings.message_stream"),
        ("postmark://", "secrets.server_token"),
    ],
)
def test_bad_provider_urls(url, problem):
    with pytest.raises(ValueError) as caught:
        provider_urls([url], source="x")
    assert problem in str(caught.value)


def test_webhook_username_requires_its_password():
    with pytest.raises(ProviderSettingsError) as caught:
        clean_provider("postmark", {}, {"server_token": "t", "webhook_username": "hooks"})
    assert "secrets.webhook_password" in str(caught.value)
