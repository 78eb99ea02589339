"""The Resend provider over real HTTP against the stand-in: the payload, idempotency, Resend's
error names, its spec and URL form. What every HTTP kind shares (each failure's outcome,
settings, the registry, failover) is in test_http_contract.py."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from email.message import MIMEPart

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from mailer.provider_settings import provider_urls
from mailer.providers import spec_for
from mailer.providers.base import (
    AmbiguousDelivery,
    MessageRejected,
    ProviderAuthError,
    ProviderThrottled,
    ProviderUnavailable,
)
from mailer.providers.resend.transport import ERRORS, error_class
from tests.fakes.resend import VALID_KEY
from tests.providers.http_kinds import RESEND, idempotency_key, simple_message

BLOB = bytes(range(256)) * 3
provider = RESEND.provider


def stored_message(email_id: str | None, **overrides) -> EmailMessage:
    """As compose.py builds a stored email: its Message-ID and its id in metadata."""
    if email_id is None:
        return simple_message(**overrides)
    overrides.setdefault("headers", {"Message-ID": f"<{email_id}.stored@example.com>"})
    message = simple_message(**overrides)
    message.metadata = {"email_id": email_id}
    return message


def inline_logo() -> MIMEPart:
    """An inline image as Django's docs make one: a Content-ID and no disposition."""
    part = MIMEPart()
    part.set_content(b"\x89PNG...", maintype="image", subtype="png")
    part.add_header("Content-ID", "<logo@example.com>")
    return part


# What arrives --------------------------------------------------------------------------------


def test_every_field_arrives_intact(resend_server):
    report = MIMEPart()
    report.set_content(
        b"%PDF-1.7", maintype="application", subtype="pdf", disposition="attachment",
        filename="Bericht für Jürgen.pdf",
    )  # fmt: skip
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln: ünïcödé ✓ 日本",
        body="Hallo Jürgen,\nplain text body.",
        from_email="Zoë Müller <zoe@example.com>",
        to=["Jürgen Groß <juergen@example.org>", "Zoë <zoe@bücher.example>"],
        cc=["Carbon <cc@example.org>"],
        bcc=["hidden@example.org"],
        reply_to=["Help Desk <help@example.com>", "second@example.com"],
        headers={"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"},
        attachments=[report, inline_logo()],
    )
    message.attach_alternative("<p>Hallo <b>Jürgen</b> <img src='cid:logo@example.com'></p>",
                               "text/html")  # fmt: skip
    message.attach("blob.bin", BLOB, "application/octet-stream")
    message.attach("notes.txt", "Zeile ä\n", "text/plain")
    message.metadata = {"email_id": "42"}

    message_id = provider(resend_server).send(message)

    [got] = resend_server.messages
    assert message_id == got["_id"] and uuid.UUID(message_id)
    body = {k: v for k, v in got.items() if not k.startswith("_") and k != "attachments"}
    assert body == {
        "from": "Zoë Müller <zoe@example.com>",
        "to": ["Jürgen Groß <juergen@example.org>", "Zoë <zoe@xn--bcher-kva.example>"],
        "cc": ["Carbon <cc@example.org>"],
        "bcc": ["hidden@example.org"],
        "reply_to": ["Help Desk <help@example.com>", "second@example.com"],
        "subject": "Grüße aus Köln: ünïcödé ✓ 日本",
        "text": "Hallo Jürgen,\nplain text body.",
        "html": "<p>Hallo <b>Jürgen</b> <img src='cid:logo@example.com'></p>",
        "headers": {"X-Campaign": "spring-2025", "Message-ID": "<abc.123@example.com>"},
        "tags": [{"name": "email_id", "value": "42"}],
    }
    pdf, logo, blob, notes = got["attachments"]
    assert pdf == {
        "filename": "Bericht für Jürgen.pdf",
        "content": base64.b64encode(b"%PDF-1.7").decode(),
        "content_type": "application/pdf",
    }
    assert logo == {
        "filename": "attachment",
        "content": base64.b64encode(b"\x89PNG...").decode(),
        "content_type": "image/png",
        "content_id": "logo@example.com",
    }
    assert base64.b64decode(blob["content"]) == BLOB
    assert (blob["filename"], blob["content_type"]) == ("blob.bin", "application/octet-stream")
    assert base64.b64decode(notes["content"]).decode() == "Zeile ä\n"
    assert notes["content_type"] == "text/plain"
    headers = got["_headers"]
    assert headers["Authorization"] == f"Bearer {VALID_KEY}"
    assert headers["Idempotency-Key"] == idempotency_key("<abc.123@example.com>")
    assert headers["User-Agent"] == "emailservice"
    assert headers["Content-Type"] == "application/json"


def test_html_only_own_field_headers_and_quoted_names(resend_server):
    message = simple_message(
        body="<p>Hi</p>",
        to=['"Doe, Jane" <jane@example.org>'],
        headers={
            "From": "Header Sender <header@example.com>",
            "Reply-To": "replies@example.com",
            "Content-Type": "text/evil",
            "Bcc": "spy@example.org",
            "X-Count": 3,
        },
    )
    message.content_subtype = "html"

    provider(resend_server).send(message)

    [got] = resend_server.messages
    assert got["from"] == "Header Sender <header@example.com>"
    assert got["to"] == ['"Doe, Jane" <jane@example.org>']
    assert got["reply_to"] == ["replies@example.com"]
    # HTML alone stays alone: "" stops Resend from writing a text version of it.
    assert (got["html"], got["text"]) == ("<p>Hi</p>", "")
    assert got["headers"] == {"X-Count": "3"}
    assert "bcc" not in got


@pytest.mark.parametrize("email_id", [None, "4 2/ä"])
def test_no_email_id_fit_for_a_tag_means_no_idempotency_key_or_tags(resend_server, email_id):
    provider(resend_server).send(stored_message(email_id))  # site mail has no metadata
    [got] = resend_server.messages
    assert "Idempotency-Key" not in got["_headers"] and "tags" not in got


def test_what_resend_cannot_carry_is_rejected_before_sending(resend_server):
    nested = MIMEPart()
    nested.make_mixed()
    calendar = EmailMultiAlternatives(subject="Hi", body="Hi", from_email="s@example.com",
                                      to=["r@example.org"])  # fmt: skip
    calendar.attach_alternative("BEGIN:VCALENDAR", "text/calendar")
    for message, code in ((simple_message(attachments=[nested]), "attachment"),
                          (calendar, "body")):  # fmt: skip
        with pytest.raises(MessageRejected) as caught:
            provider(resend_server).send(message)
        assert caught.value.code == code
    assert resend_server.requests == []


# Idempotency ---------------------------------------------------------------------------------


def test_retry_after_a_stall_returns_the_first_id_and_sends_once(resend_server):
    resend_server.mode = "stall"
    sender = provider(resend_server, timeout=0.5, connect_timeout=0.5)
    message = stored_message("7")
    started = time.monotonic()
    with pytest.raises(AmbiguousDelivery) as caught:
        sender.send(message)
    assert time.monotonic() - started < 1.5
    assert caught.value.code == "timeout" and caught.value.outcome == "ambiguous"
    [first] = resend_server.messages  # it was sent: only the answer was lost

    resend_server.mode = "ok"
    assert sender.send(message) == first["_id"]
    assert len(resend_server.messages) == 1 and resend_server.replays == 1
    assert len(resend_server.requests) == 2


def test_changed_payload_under_the_same_key_is_a_provider_error(resend_server):
    sender = provider(resend_server)
    sender.send(stored_message("9"))
    with pytest.raises(ProviderUnavailable) as caught:
        sender.send(stored_message("9", subject="Changed"))
    error = caught.value
    assert type(error) is ProviderUnavailable and error.code == "409"
    assert error.outcome == "provider_error" and not error.opens_circuit
    assert error.message.startswith("HTTP 409: invalid_idempotent_request: ")
    assert len(resend_server.messages) == 1


def test_attempt_while_the_first_is_in_progress_is_a_provider_error(resend_server):
    resend_server.mode = "hold"
    sender, message, first = provider(resend_server), stored_message("10"), {}
    worker = threading.Thread(target=lambda: first.update(id=sender.send(message)))
    worker.start()
    try:
        assert resend_server.holding.wait(2)  # the first has taken the key
        resend_server.mode = "ok"
        with pytest.raises(ProviderUnavailable) as caught:
            sender.send(message)
    finally:
        resend_server.release.set()
        worker.join(3)
    assert type(caught.value) is ProviderUnavailable and caught.value.code == "409"
    assert "concurrent_idempotent_requests" in caught.value.message
    [sent] = resend_server.messages
    assert first["id"] == sent["_id"]


# Resend's error names ------------------------------------------------------------------------


def test_unverified_sender_domain_is_the_accounts_problem_not_the_messages(resend_server):
    resend_server.verified_domains = {"example.com"}
    with pytest.raises(ProviderAuthError) as caught:
        provider(resend_server).send(simple_message(from_email="a@elsewhere.example"))
    assert caught.value.outcome == "provider_error" and caught.value.opens_circuit
    assert "elsewhere.example domain is not verified" in caught.value.message


def test_error_names_and_statuses():
    assert error_class(422, "validation_error") is MessageRejected
    assert error_class(403, "validation_error") is ProviderAuthError  # unverified domain
    assert error_class(401, "validation_error") is ProviderAuthError  # unknown key
    assert error_class(409, "invalid_idempotent_request") is ProviderUnavailable
    assert error_class(418, "something_new") is None  # judged by its status
    assert error_class(429, "rate_limit_exceeded") is ProviderThrottled
    assert error_class(429, "daily_quota_exceeded") is ProviderUnavailable  # not a pause
    assert set(ERRORS.values()) == {
        MessageRejected,
        ProviderAuthError,
        ProviderThrottled,
        ProviderUnavailable,
    }


# The spec and the URL form -------------------------------------------------------------------


def test_spec_declares_the_webhook_secret_for_webhooks_only():
    spec = spec_for("resend")
    secret = spec.option("webhook_secret")
    assert secret.transport is False and not secret.required
    assert secret.title == "Webhook signing secret (whsec_...)"
    assert spec.option("api_key").required and spec.option("api_url").summary() == (
        "api_url? (https://api.resend.com)"
    )


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        ("resend://:re_key@", {"api_url": "https://api.resend.com"}),
        ("resend://re_key@", {"api_url": "https://api.resend.com"}),
        (
            "resend://:re_key@api.eu.example.com:8443",
            {"api_url": "https://api.eu.example.com:8443"},
        ),
        ("resend://:re_key@?api_url=http://127.0.0.1:8025/", {"api_url": "http://127.0.0.1:8025"}),
    ],
)
def test_provider_url(url, settings):
    assert provider_urls([url], source="x") == [("resend", settings, {"api_key": "re_key"})]


def test_provider_url_problems_are_named_without_the_key():
    with pytest.raises(ValueError, match="unknown URL parameter host") as caught:
        provider_urls(["resend://:re_key@?host=x"], source="MAIL_PROVIDER_URLS")
    assert "re_key" not in str(caught.value)
    with pytest.raises(ValueError, match=r"secrets\.api_key"):
        provider_urls(["resend://"], source="x")
