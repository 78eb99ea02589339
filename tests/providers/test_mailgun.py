"""The Mailgun provider over real HTTP against the stand-in: the envelope and MIME it sends, its
sending domain and API URL, and its URL form. What every HTTP kind shares (each failure's
outcome, settings, the registry, failover) is in test_http_contract.py."""

from __future__ import annotations

import base64
from email.message import MIMEPart
from email.mime.application import MIMEApplication

import pytest
from django.core.mail import EmailMultiAlternatives
from django.utils.deprecation import RemovedInDjango2028Warning

from mailer.provider_settings import provider_urls
from mailer.providers.base import ConfigurationError
from tests.fakes.mailgun import DOMAIN, VALID_KEY
from tests.providers.http_kinds import MAILGUN, simple_message

BLOB = bytes(range(256)) * 3
provider = MAILGUN.provider


def full_message() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln: ünïcödé ✓ 日本",
        body="Hallo Jürgen,\nplain text body.",
        from_email="Zoë Müller <zoe@example.com>",
        to=["Jürgen Groß <juergen@example.org>", "Zoë <zoe@bücher.example>"],
        cc=["Carbon <cc@example.org>"],
        bcc=["hidden@example.org"],
        reply_to=["Help Desk <help@example.com>"],
        headers={"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"},
    )
    message.metadata = {"email_id": "42"}
    message.attach_alternative("<p>Hallo <b>Jürgen</b></p>", "text/html")
    message.attach("report.bin", BLOB, "application/octet-stream")
    message.attach("notes.txt", "Zeile ä\n", "text/plain")
    with pytest.warns(RemovedInDjango2028Warning):  # legacy, still what some site mail uses
        message.attach(MIMEApplication(b"%PDF-1.4 ...", "pdf", name="scan.pdf"))
    inline = MIMEPart()
    inline.set_content(
        b"\x89PNG...",
        maintype="image",
        subtype="png",
        disposition="inline",
        filename="logo.png",
        cid="<logo@example.com>",
    )
    message.attach(inline)
    return message


# What arrives --------------------------------------------------------------------------------


def test_envelope_variables_and_auth_arrive(mailgun_server):
    message_id = provider(mailgun_server).send(full_message())

    [got] = mailgun_server.messages
    assert message_id == got["_message_id"] and message_id.endswith(f"@{DOMAIN}>")
    # Every envelope recipient, Bcc included, as a bare address with an IDNA domain.
    assert got["to"] == [
        "juergen@example.org",
        "zoe@xn--bcher-kva.example",
        "cc@example.org",
        "hidden@example.org",
    ]
    assert got["variables"] == {"email_id": "42"}
    assert set(got["fields"]) == {"to", "v:email_id"}
    assert (got["filename"], got["file_type"]) == ("message.mime", "message/rfc822")
    token = base64.b64encode(f"api:{VALID_KEY}".encode()).decode()
    assert got["_headers"]["Authorization"] == f"Basic {token}"
    assert got["_headers"]["User-Agent"] == "emailservice"


def test_every_header_and_part_arrives_in_the_mime(mailgun_server):
    provider(mailgun_server).send(full_message())

    [got] = mailgun_server.messages
    mime = got["mime"]
    assert b"\n" not in got["message"].replace(b"\r\n", b"")  # CRLF line ends throughout
    assert mime["Subject"] == "Grüße aus Köln: ünïcödé ✓ 日本"
    assert (mime["From"].addresses[0].display_name, mime["From"].addresses[0].addr_spec) == (
        "Zoë Müller",
        "zoe@example.com",
    )
    assert [(a.display_name, a.addr_spec) for a in mime["To"].addresses] == [
        ("Jürgen Groß", "juergen@example.org"),
        ("Zoë", "zoe@xn--bcher-kva.example"),
    ]
    assert str(mime["Cc"]) == "Carbon <cc@example.org>"
    assert str(mime["Reply-To"]) == "Help Desk <help@example.com>"
    assert "Bcc" not in mime and b"hidden@example.org" not in got["message"]
    assert mime["Message-ID"] == "<abc.123@example.com>"
    assert mime["X-Campaign"] == "spring-2025"
    # Bodies travel with the wire's CRLF line ends.
    text, html = (mime.get_body((kind,)).get_content() for kind in ("plain", "html"))
    assert text == "Hallo Jürgen,\r\nplain text body.\r\n"
    assert html == "<p>Hallo <b>Jürgen</b></p>\r\n"

    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["report.bin"].get_content() == BLOB
    assert parts["notes.txt"].get_content() == "Zeile ä\r\n"  # text/*: canonical CRLF
    assert parts["scan.pdf"].get_content_type() == "application/pdf"
    assert parts["scan.pdf"].get_content() == b"%PDF-1.4 ..."
    logo = parts["logo.png"]
    assert logo.get_content_disposition() == "inline"
    assert logo["Content-ID"] == "<logo@example.com>"
    assert logo.get_content() == b"\x89PNG..."


def test_site_mail_without_metadata_and_repeated_recipients(mailgun_server):
    message = simple_message(to=["a@example.org", "A@example.org"], cc=["a@example.org"])
    assert not hasattr(message, "metadata")

    provider(mailgun_server).send(message)

    [got] = mailgun_server.messages
    assert got["to"] == ["a@example.org"]  # each recipient gets one copy
    assert got["variables"] == {} and set(got["fields"]) == {"to"}
    assert got["mime"]["Message-ID"]  # Django makes one when none is given


# The sending domain and the API URL ----------------------------------------------------------


def test_unknown_domain_is_a_configuration_error_naming_domain(mailgun_server):
    with pytest.raises(ConfigurationError) as caught:
        provider(mailgun_server, domain="other.example.com").send(simple_message())
    assert caught.value.setting == "domain"
    assert caught.value.opens_circuit
    assert "Domain not found: other.example.com" in caught.value.message
    assert mailgun_server.messages == []


def test_a_path_that_is_no_endpoint_names_api_url(mailgun_server):
    with pytest.raises(ConfigurationError) as caught:
        provider(mailgun_server, api_url=f"{mailgun_server.url}/elsewhere").send(simple_message())
    assert caught.value.setting == "api_url"
    assert "no such API endpoint" in caught.value.message


def test_missing_domain_is_named(mailgun_server):
    with pytest.raises(ConfigurationError) as caught:
        provider(mailgun_server, domain=None).send(simple_message())
    assert caught.value.setting == "domain"
    assert "'domain'" in caught.value.message
    assert mailgun_server.requests == []


def test_malformed_domain_is_named():
    with pytest.raises(ConfigurationError) as caught:
        provider(domain="mg.example.com/../v3").send(simple_message())
    assert caught.value.setting == "domain"


# MAIL_PROVIDER_URLS --------------------------------------------------------------------------


def test_provider_urls_read_the_mailgun_form():
    eu, us = provider_urls(
        [
            "mailgun://api:key-1%2Fx@mg.example.com?api_url=https://api.eu.mailgun.net",
            "mailgun://api:key-2@MG.Example.org",
        ],
        source="x",
    )
    assert eu == (
        "mailgun",
        {"domain": "mg.example.com", "api_url": "https://api.eu.mailgun.net"},
        {"api_key": "key-1/x"},
    )
    assert us == (
        "mailgun",
        {"domain": "mg.example.org", "api_url": "https://api.mailgun.net"},
        {"api_key": "key-2"},
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mailgun://api:key@mg.example.com:8080", "takes no port"),
        ("mailgun://api:key@mg.example.com?region=eu", "unknown URL parameter region"),
        ("mailgun://api@mg.example.com", "secrets.api_key"),
        ("mailgun://api:key@", "settings.domain"),
    ],
)
def test_provider_urls_name_what_is_wrong(url, problem):
    with pytest.raises(ValueError) as caught:
        provider_urls([url], source="MAIL_PROVIDER_URLS")
    assert problem in str(caught.value)
    assert "key@" not in str(caught.value)
