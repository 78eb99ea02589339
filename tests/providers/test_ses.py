"""The SES provider against moto's real HTTP server and sockets that misbehave, and in failover."""

from __future__ import annotations

import email
import email.policy
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from django.core.mail import EmailMessage, EmailMultiAlternatives

from mailer import services
from mailer.models import EmailStatus
from mailer.providers.base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    ProviderAuthError,
    ProviderThrottled,
    ProviderUnavailable,
)
from mailer.providers.ses.transport import SesProvider
from tests.conftest import outgoing
from tests.fakes.ses import DUMMY_KEYS, REGION

SENDER = "sender@example.com"
ATTACHMENT = bytes(range(256)) * 4


def provider(endpoint_url: str, **options) -> SesProvider:
    return SesProvider(
        region=REGION,
        endpoint_url=endpoint_url,
        **{**DUMMY_KEYS, "timeout": 2, "connect_timeout": 1, **options},
    )


def simple(**overrides) -> EmailMessage:
    fields = {
        "subject": "Hello",
        "body": "Hello there.",
        "from_email": f"Sender <{SENDER}>",
        "to": ["rcpt@example.org"],
    }
    return EmailMessage(**{**fields, **overrides})


def test_verified_sender_sends_the_raw_message_intact(ses):
    ses.verify(SENDER)
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln ✓",
        body="Plain body, naïve café.",
        from_email=f"Zoë Sender <{SENDER}>",
        to=["to1@example.org", "Two <to2@example.org>"],
        cc=["cc@bücher.example"],
        bcc=["hidden@example.net"],
        reply_to=["reply@example.com"],
        headers={"Message-ID": "<fixed-id@example.com>", "X-Campaign": "spring"},
    )
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("data.bin", ATTACHMENT, "application/octet-stream")

    message_id = provider(ses.endpoint_url).send(message)

    [recorded] = ses.sent()
    assert message_id and recorded["id"] == message_id
    assert recorded["source"] == SENDER
    # moto adds the To/Cc header addresses to the Destination lists it was given.
    assert set(recorded["destinations"]) >= {
        "to1@example.org",
        "to2@example.org",
        "cc@xn--bcher-kva.example",
        "hidden@example.net",
    }
    raw = recorded["raw_data"].encode()  # moto stores the bytes it got, decoded as UTF-8
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Grüße aus Köln ✓"
    assert parsed["From"].addresses[0].display_name == "Zoë Sender"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["to1@example.org", "to2@example.org"]
    assert parsed["Cc"].addresses[0].domain == "xn--bcher-kva.example"
    assert parsed["Bcc"] is None and b"hidden@example.net" not in raw
    assert parsed["Reply-To"] == "reply@example.com"
    assert parsed["Message-ID"] == "<fixed-id@example.com>"
    assert parsed["X-Campaign"] == "spring"
    assert parsed.get_body(("plain",)).get_content().strip() == "Plain body, naïve café."
    assert parsed.get_body(("html",)).get_content().strip() == "<p>HTML body</p>"
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == "data.bin"
    assert attachment.get_content() == ATTACHMENT


def test_client_is_built_once_and_dropped_on_close(ses):
    ses.verify("example.com")  # a verified domain covers every address in it
    ses_provider = provider(ses.endpoint_url)
    ses_provider.send(simple())
    client = ses_provider._client
    ses_provider.send(simple(from_email="other@example.com"))
    assert ses_provider._client is client and len(ses.sent()) == 2
    ses_provider.close()
    assert ses_provider._client is None
    assert ses_provider.describe() == "ses us-east-1"


def test_unverified_sender_is_a_provider_error_with_ses_reason(ses):
    with pytest.raises(ProviderUnavailable) as caught:
        provider(ses.endpoint_url).send(simple())
    error = caught.value
    assert type(error) is ProviderUnavailable  # per sender: must not open the circuit at once
    assert error.code == "MessageRejected"
    assert (
        error.message == f"SES MessageRejected: Did not have authority to send from email {SENDER}"
    )
    assert ses.sent() == []


@pytest.mark.parametrize("missing", ["access_key_id", "secret_access_key"])
def test_missing_secret_is_a_configuration_error_at_send_time(ses, missing):
    ses_provider = provider(ses.endpoint_url, **{missing: ""})  # building it must not raise
    with pytest.raises(ConfigurationError) as caught:
        ses_provider.send(simple())
    assert caught.value.setting == missing and missing in caught.value.message
    assert caught.value.opens_circuit


def test_closed_port_is_unavailable_at_once(closed_port):
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        provider(f"http://127.0.0.1:{closed_port}").send(simple())
    assert type(caught.value) is ProviderUnavailable and caught.value.code == "connect"
    assert time.monotonic() - started < 2


def test_silent_server_is_ambiguous_after_one_read_timeout(blackhole):
    started = time.monotonic()
    # A whole-attempt deadline far past the read timeout: the read timeout is what ends it, even
    # on a loaded machine where connecting takes a while.
    silent = provider(f"http://127.0.0.1:{blackhole.port}", timeout=1, connect_timeout=1,
                      attempt_deadline=30)  # fmt: skip
    with pytest.raises(AmbiguousDelivery) as caught:
        silent.send(simple())
    elapsed = time.monotonic() - started
    assert caught.value.code == "timeout"
    # One request, one timeout: an SDK retry here could deliver the message twice.
    assert len(blackhole.accepted) == 1
    assert 0.9 < elapsed < 30


def test_throttling_is_a_provider_error(ses_error_server):
    server = ses_error_server(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
    # The stand-in speaks the real wire format: botocore itself reads the code from it.
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client(
        "sesv2", endpoint_url=server.endpoint_url, config=Config(retries={"total_max_attempts": 1})
    )
    with pytest.raises(ClientError) as raw:
        client.send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": [SENDER]},
            Content={"Raw": {"Data": b"Subject: x\r\n\r\nx"}},
        )
    assert raw.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert raw.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

    with pytest.raises(ProviderThrottled) as caught:
        provider(server.endpoint_url).send(simple())
    assert caught.value.retry_after is None  # SES names no wait: failover pauses the default
    assert caught.value.code == "TooManyRequestsException"
    assert caught.value.message == "SES TooManyRequestsException: Maximum sending rate exceeded."
    assert server.requests == 2  # one each: botocore retries throttling unless told not to


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (403, "UnrecognizedClientException", ProviderAuthError),
        (403, "InvalidSignatureException", ProviderAuthError),
        (400, "AccountSuspendedException", ProviderAuthError),
        (400, "SendingPausedException", ProviderAuthError),
        (400, "MailFromDomainNotVerifiedException", ProviderUnavailable),
        (400, "LimitExceededException", ProviderUnavailable),
        (400, "BadRequestException", MessageRejected),
        (500, "InternalFailure", ProviderUnavailable),
        (503, "ServiceUnavailable", ProviderUnavailable),
        (400, "SomethingNewException", ProviderUnavailable),
    ],
)
def test_error_codes_are_classified(ses_error_server, status, error_type, expected):
    server = ses_error_server(status, error_type, "the reason")
    with pytest.raises(expected) as caught:
        provider(server.endpoint_url).send(simple())
    assert type(caught.value) is expected
    assert caught.value.code == error_type
    assert caught.value.message == f"SES {error_type}: the reason"
    assert server.requests == 1


# Failover end to end --------------------------------------------------------------------------


def ses_config(add_provider, name: str, endpoint_url: str, region: str = REGION):
    return add_provider(
        "ses",
        name=name,
        settings={"region": region, "endpoint_url": endpoint_url},
        secrets=dict(DUMMY_KEYS),
    )


@pytest.mark.django_db
def test_failover_records_each_ses_failure_in_order(ses, account, add_provider, closed_port):
    unverified = ses_config(add_provider, "ses-unverified", ses.endpoint_url)
    down = ses_config(add_provider, "ses-down", f"http://127.0.0.1:{closed_port}")

    result = services.email_send(account=account, outgoing=outgoing())

    email_row = result.email
    email_row.refresh_from_db()
    assert email_row.status == EmailStatus.FAILED and email_row.sent_via is None
    attempts = list(email_row.attempts.all())
    assert [(a.provider, a.outcome, a.error_code) for a in attempts] == [
        (unverified, "provider_error", "MessageRejected"),
        (down, "provider_error", "connect"),
    ]
    assert "Did not have authority to send from email sender@example.com" in (
        attempts[0].error_message
    )
    assert "ses 'ses-down'" in email_row.failure_reason
    assert not email_row.possible_duplicate
    assert ses.sent() == []


@pytest.mark.django_db
def test_failover_moves_on_to_the_next_ses_region(ses, account, add_provider):
    ses.verify(SENDER)  # in us-east-1 only: moto keeps identities per region
    elsewhere = ses_config(add_provider, "ses-eu", ses.endpoint_url, region="eu-west-1")
    home = ses_config(add_provider, "ses-us", ses.endpoint_url)

    email_row = services.email_send(account=account, outgoing=outgoing()).email

    email_row.refresh_from_db()
    assert email_row.status == EmailStatus.SENT and email_row.sent_via == home
    assert [(a.provider, a.outcome) for a in email_row.attempts.all()] == [
        (elsewhere, "provider_error"),
        (home, "sent"),
    ]
    [recorded] = ses.sent()
    assert email_row.provider_message_id == recorded["id"]


@pytest.mark.django_db
def test_ses_accepts_on_the_first_try(ses, account, add_provider, closed_port):
    ses.verify(SENDER)
    first = ses_config(add_provider, "ses-main", ses.endpoint_url)
    ses_config(add_provider, "ses-backup", f"http://127.0.0.1:{closed_port}")

    email_row = services.email_send(account=account, outgoing=outgoing()).email

    email_row.refresh_from_db()
    [recorded] = ses.sent()
    assert email_row.status == EmailStatus.SENT
    assert email_row.sent_via == first and email_row.sent_via_kind == "ses"
    assert email_row.provider_message_id == recorded["id"]
    [attempt] = email_row.attempts.all()
    assert (attempt.provider, attempt.outcome, attempt.provider_message_id) == (
        first,
        "sent",
        recorded["id"],
    )
    assert f"Message-ID: {email_row.message_id}" in recorded["raw_data"]
