"""The Mandrill provider over real HTTP against the stand-in: the key in the body, the raw MIME,
each recipient's result in a 200, and Mandrill's named errors. What every HTTP kind shares
(each failure's outcome, settings, the registry, failover) is in test_http_contract.py."""

from __future__ import annotations

import json
import logging
from email.message import MIMEPart

import pytest
from django.core.mail import EmailMultiAlternatives

from mailer.provider_settings import provider_urls
from mailer.providers.base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    ProviderAuthError,
    ProviderUnavailable,
)
from mailer.providers.httpclient import HttpAnswer
from mailer.providers.mandrill import DEFAULT_API_URL
from tests.fakes.mandrill import VALID_KEY
from tests.providers.http_kinds import MANDRILL, simple_message

BLOB = bytes(range(256)) * 3
provider = MANDRILL.provider


def full_message() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln: ünïcödé ✓ 日本",
        body="Hallo Jürgen,\nplain text body.",
        from_email="Zoë Müller <zoe@example.com>",
        to=["Jürgen Groß <juergen@bücher.example>", "plain@example.org"],
        cc=["Carbon <cc@example.org>"],
        bcc=["hidden@example.org"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"},
    )
    message.attach_alternative("<p>Hallo <b>Jürgen</b></p>", "text/html")
    message.attach("report.bin", BLOB, "application/octet-stream")
    message.attach("notes.txt", "Zeile ä\n", "text/plain")
    logo = MIMEPart()
    logo.set_content(
        b"\x89PNG...",
        maintype="image",
        subtype="png",
        disposition="inline",
        filename="logo.png",
        cid="<logo@example.com>",
    )
    message.attach(logo)
    message.metadata = {"email_id": "4242"}
    return message


# What arrives --------------------------------------------------------------------------------


def test_the_envelope_and_the_key_arrive_in_the_body(mandrill_server):
    message_id = provider(mandrill_server).send(full_message())

    [got] = mandrill_server.messages
    assert message_id == got["_results"][0]["_id"] and len(message_id) == 32
    assert {k: v for k, v in got.items() if not k.startswith("_") and k != "raw_message"} == {
        "key": VALID_KEY,
        "from_email": "zoe@example.com",
        "from_name": "Zoë Müller",
        "to": [
            "juergen@xn--bcher-kva.example",
            "plain@example.org",
            "cc@example.org",
            "hidden@example.org",
        ],
        "async": False,
    }
    assert [r["status"] for r in got["_results"]] == ["sent"] * 4
    assert "Authorization" not in got["_headers"]  # the key travels in the body only
    assert got["_headers"]["User-Agent"] == "emailservice"


def test_every_field_arrives_intact_in_the_mime(mandrill_server):
    provider(mandrill_server).send(full_message())

    [got] = mandrill_server.messages
    raw, mime = got["raw_message"], got["_mime"]
    assert raw.isascii() and "\r\n" in raw
    assert "hidden@example.org" not in raw and mime["Bcc"] is None
    assert mime["Subject"] == "Grüße aus Köln: ünïcödé ✓ 日本"
    assert mime["From"].addresses[0].display_name == "Zoë Müller"
    assert [(a.display_name, a.addr_spec) for a in mime["To"].addresses] == [
        ("Jürgen Groß", "juergen@xn--bcher-kva.example"),
        ("", "plain@example.org"),
    ]
    assert str(mime["Cc"]) == "Carbon <cc@example.org>"
    assert str(mime["Reply-To"]) == "Help Desk <help@example.com>"
    assert mime["X-Campaign"] == "spring-2025"
    assert mime["Message-ID"] == "<abc.123@example.com>"
    assert json.loads(str(mime["X-MC-Metadata"])) == {"email_id": "4242"}
    text, html = (mime.get_body((kind,)).get_content() for kind in ("plain", "html"))
    assert text == "Hallo Jürgen,\r\nplain text body.\r\n"  # CRLF, as SMTP carries it
    assert html == "<p>Hallo <b>Jürgen</b></p>\r\n"
    report, notes, logo = mime.iter_attachments()
    assert (report.get_filename(), report.get_content_type()) == (
        "report.bin",
        "application/octet-stream",
    )
    assert report.get_content() == BLOB
    assert notes.get_filename() == "notes.txt" and notes.get_content() == "Zeile ä\r\n"
    assert logo.get_content_disposition() == "inline"
    assert (logo["Content-ID"], logo.get_content()) == ("<logo@example.com>", b"\x89PNG...")


def test_metadata_keeps_the_callers_own_and_site_mail_carries_none(mandrill_server):
    message = simple_message(headers={"X-MC-Metadata": '{"user_id": "7", "email_id": "x"}'})
    message.metadata = {"email_id": "99"}
    provider(mandrill_server).send(message)
    provider(mandrill_server).send(simple_message())  # no metadata attribute: site mail

    first, second = mandrill_server.messages
    assert json.loads(str(first["_mime"]["X-MC-Metadata"])) == {"user_id": "7", "email_id": "99"}
    assert len(first["_mime"].get_all("X-MC-Metadata")) == 1
    assert second["_mime"]["X-MC-Metadata"] is None


def test_duplicate_recipients_are_sent_once_and_many_are_queued(mandrill_server):
    many = [f"r{n}@example.org" for n in range(11)]
    message_id = provider(mandrill_server).send(
        simple_message(to=["Dup <a@example.org>", *many], cc=["A@example.org"])
    )
    [got] = mandrill_server.messages
    assert got["to"] == ["a@example.org", *many]
    assert {r["status"] for r in got["_results"]} == {"queued"}  # Mandrill's rule past ten
    assert message_id == got["_results"][0]["_id"]


# Recipients refused in a 200 answer ----------------------------------------------------------


def test_some_recipients_refused_is_sent_and_logged(mandrill_server, caplog):
    mandrill_server.rejects = {"gone@example.org": "hard-bounce"}
    with caplog.at_level(logging.WARNING, logger="mailer.providers"):
        message_id = provider(mandrill_server).send(
            simple_message(to=["gone@example.org", "rcpt@example.org"])
        )
    [got] = mandrill_server.messages
    assert message_id == got["_results"][1]["_id"]  # the first accepted one
    assert "gone@example.org rejected (hard-bounce)" in caplog.text
    assert message_id in caplog.text


def test_every_recipient_refused_is_rejected(mandrill_server):
    # One recipient "invalid" is the contract's; here each is on the rejection list.
    mandrill_server.rejects = {"gone@example.org": "hard-bounce", "spam@example.org": "spam"}
    with pytest.raises(MessageRejected) as caught:
        provider(mandrill_server).send(simple_message(to=["gone@example.org", "spam@example.org"]))
    assert type(caught.value) is MessageRejected
    assert caught.value.code == "recipients_refused"
    assert caught.value.message == (
        "Mandrill refused every recipient: "
        "gone@example.org rejected (hard-bounce); spam@example.org rejected (spam)"
    )
    assert mandrill_server.accepted_ids() == []


def test_an_unverified_sending_domain_fails_over_instead(mandrill_server):
    mandrill_server.rejects = {"rcpt@example.org": "unsigned"}
    with pytest.raises(ProviderUnavailable) as caught:
        provider(mandrill_server).send(simple_message())
    assert type(caught.value) is ProviderUnavailable and not caught.value.opens_circuit
    assert caught.value.code == "sender_refused"
    assert "rcpt@example.org rejected (unsigned)" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        b"[{",  # cut short: what Mandrill did is unknown
        b'{"status": "sent"}',
        b'[{"email": "a@example.org", "status": "soon"}]',
    ],
)
def test_a_200_that_is_not_a_recipient_list_is_ambiguous(body):
    with pytest.raises(AmbiguousDelivery) as caught:
        provider().message_id(HttpAnswer(200, None, body))
    assert caught.value.code == "unreadable"


# Mandrill's errors ---------------------------------------------------------------------------


def test_wrong_key_is_an_auth_error_whatever_the_status(mandrill_server):
    mandrill_server.error_status = 401  # the newer OpenAPI's status; Mandrill's own is 500
    with pytest.raises(ProviderAuthError) as caught:
        provider(mandrill_server, api_key="md-wrong").send(simple_message())
    assert caught.value.opens_circuit and caught.value.code == "Invalid_Key"
    assert caught.value.message == "HTTP 401: Invalid_Key: Invalid API key"


def test_validation_error_is_rejected(mandrill_server):
    with pytest.raises(MessageRejected) as caught:
        provider(mandrill_server).send(simple_message(from_email="Me <sender@localhost>"))
    assert caught.value.code == "ValidationError"
    assert caught.value.outcome == "rejected"
    assert "from_email" in caught.value.message and "valid email address" in caught.value.message


def test_unparseable_sender_is_rejected_before_sending(mandrill_server):
    with pytest.raises(MessageRejected) as caught:
        provider(mandrill_server).send(simple_message(from_email="nobody"))
    assert caught.value.code == "invalid_address"
    assert mandrill_server.requests == []


def test_the_key_travels_in_the_body_not_a_header(mandrill_server):
    with pytest.raises(ConfigurationError) as caught:
        provider(mandrill_server, api_key=None).auth_headers()
    assert caught.value.setting == "api_key"
    assert provider(mandrill_server).auth_headers() == {}


# MAIL_PROVIDER_URLS --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "settings_", "secrets"),
    [
        ("mandrill://:md-key@", {"api_url": DEFAULT_API_URL}, {"api_key": "md-key"}),
        ("mandrill://md-key@", {"api_url": DEFAULT_API_URL}, {"api_key": "md-key"}),
        (
            "mandrill://:md-key@proxy.example:8443",
            {"api_url": "https://proxy.example:8443/api/1.0"},
            {"api_key": "md-key"},
        ),
        (
            "mandrill://:md%2Fkey@?api_url=https://proxy.example/api/1.0/",
            {"api_url": "https://proxy.example/api/1.0"},
            {"api_key": "md/key"},
        ),
    ],
)
def test_provider_urls(url, settings_, secrets):
    assert provider_urls([url], source="x") == [("mandrill", settings_, secrets)]


def test_provider_url_without_a_key_or_with_unknown_parameters_is_refused():
    for url in ("mandrill://", "mandrill://:k@?region=eu"):
        with pytest.raises(ValueError):
            provider_urls([url], source="x")
