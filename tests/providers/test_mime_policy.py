"""The transports' MIME policy (mailer.providers.message_parts.MIME_POLICY) writes what the stock
email.policy.SMTP writes, byte for byte but for the random part boundaries, for every kind of
message a send makes: plain and non-ASCII headers, long ones that must fold, many recipients,
IDNA domains, attachments, custom headers."""

import email
import email.policy
import re

import pytest
from django.core.mail import EmailMultiAlternatives

from mailer.providers import message_parts
from mailer.providers.message_parts import MIME_POLICY

LONG = "A subject long enough that it has to be folded over more than one line of the header"


def _message(**overrides) -> EmailMultiAlternatives:
    fields = {
        "subject": "Hello",
        "body": "Plain text.\n",
        "from_email": "Bench <bench@example.com>",
        "to": ["rcpt@example.org"],
        "headers": {"Message-ID": "<fixed@example.com>", "Date": "Wed, 02 Dec 2026 10:00:00 +0000"},
    }
    fields.update(overrides)
    message = EmailMultiAlternatives(**fields)
    message.attach_alternative("<p>Hello</p>", "text/html")
    return message


CASES = {
    "plain": {},
    "non-ascii subject and name": {"subject": "Café ☕", "from_email": "Zoë Ä <zoe@example.com>"},
    "long subject": {"subject": LONG},
    "many recipients": {
        "to": [f"person{i}@example.org" for i in range(12)],
        "cc": ["Doe, John <john@example.org>"],
    },
    "idna domain": {"to": ["rcpt@exämple.org"]},
    "reply-to and custom headers": {
        "reply_to": ["Replies <replies@example.com>"],
        "headers": {
            "Message-ID": "<fixed@example.com>",
            "Date": "Wed, 02 Dec 2026 10:00:00 +0000",
            "X-Campaign": "winter =?utf-8?q?sale?=",
            "X-Long": "x" * 120,
        },
    },
    "encoded words given": {"subject": "=?utf-8?q?caf=C3=A9?= and more"},
}


def _written(message: EmailMultiAlternatives, policy) -> bytes:
    raw = message.message(policy=policy).as_bytes()
    return re.sub(rb"={15}\d+==", b"BOUNDARY", raw)


@pytest.mark.parametrize("case", CASES)
def test_the_policy_writes_what_the_stock_smtp_policy_writes(case):
    assert _written(_message(**CASES[case]), MIME_POLICY) == _written(
        _message(**CASES[case]), email.policy.SMTP
    )


def test_attachments_and_the_7bit_clone_write_the_same_too():
    def with_attachments():
        message = _message(subject="With files")
        message.attach("report.txt", "numbers\n", "text/plain")
        message.attach("data.bin", b"\x00\x01\x02" * 100, "application/octet-stream")
        message.attach("naïve name.pdf", b"%PDF-1.4", "application/pdf")
        return message

    assert _written(with_attachments(), MIME_POLICY) == _written(
        with_attachments(), email.policy.SMTP
    )
    seven_bit = MIME_POLICY.clone(cte_type="7bit")
    assert _written(with_attachments(), seven_bit) == _written(
        with_attachments(), email.policy.SMTP.clone(cte_type="7bit")
    )


def test_headers_read_back_are_parsed_and_the_cache_of_parsed_values_is_bounded():
    written = _message(to=["a@example.org", "b@example.org"]).message(policy=MIME_POLICY)
    assert [a.addr_spec for a in written["To"].addresses] == ["a@example.org", "b@example.org"]
    assert written.get_content_type() == "multipart/alternative"
    parsed = email.message_from_bytes(written.as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Hello" and parsed["Message-ID"] == "<fixed@example.com>"

    for n in range(1000):  # distinct values: the cache keeps at most its size
        _message(subject=f"Subject {n}").message(policy=MIME_POLICY)["Subject"]
    info = message_parts._parsed_plain.cache_info()
    assert info.maxsize == 256 and info.currsize <= 256


def test_a_header_with_a_line_break_is_still_refused():
    with pytest.raises(ValueError):
        _message(headers={"X-Injected": "value\r\nBcc: victim@example.org"}).message(
            policy=MIME_POLICY
        )


def test_mime_message_chooses_short_random_boundaries_and_keeps_the_structure():
    message = _message(subject="With a file")
    message.attach("report.txt", "numbers\n", "text/plain")
    stock = email.message_from_bytes(
        message.message(policy=email.policy.SMTP).as_bytes(), policy=email.policy.default
    )
    written = message_parts.mime_message(message).as_bytes()
    ours = email.message_from_bytes(written, policy=email.policy.default)

    def shape(mime):
        return [
            (part.get_content_type(), part.get_filename(),
             None if part.is_multipart() else part.get_content())
            for part in mime.walk()
        ]  # fmt: skip

    assert shape(ours) == shape(stock)
    boundaries = [part.get_boundary() for part in ours.walk() if part.is_multipart()]
    assert len(boundaries) == 2 and len(set(boundaries)) == 2  # mixed, and its alternative
    assert all(re.fullmatch(r"=_[A-Za-z0-9_-]{16}", b) for b in boundaries)
    assert b"\r\n" in written and b"Content-Type: multipart/mixed; boundary=" in written
    again = email.message_from_bytes(message_parts.mime_message(message).as_bytes())
    assert [p.get_boundary() for p in again.walk() if p.is_multipart()] != boundaries
