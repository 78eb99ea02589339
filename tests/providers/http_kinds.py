"""The five HTTP API kinds, one small table each: how to build the provider pointed at its
stand-in (tests/fakes/), and what that stand-in makes the provider say. test_http_contract.py
runs the shared failure table over all five; each kind's own module builds its provider here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.mail import EmailMessage

from mailer.providers import provider_class
from mailer.providers.base import (
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
)
from tests.fakes import mailgun, mandrill, postmark, resend, sendgrid
from tests.fakes.http_stub import StubServer


def simple_message(**overrides: Any) -> EmailMessage:
    fields = {
        "subject": "Hi",
        "body": "Hello.",
        "from_email": "sender@example.com",
        "to": ["rcpt@example.org"],
    }
    return EmailMessage(**{**fields, **overrides})


def refuses_localhost(server: StubServer) -> str:
    """An address the stand-in refuses as invalid; the service's own checks let it through."""
    return "rcpt@localhost"


@dataclass(frozen=True)
class HttpKind:
    """One kind. Messages are exact, or a prefix where they end with "..."."""

    kind: str
    fixture: str  # the stand-in's pytest fixture
    stub: type[StubServer]  # to start another one
    settings: Callable[[str | None], dict[str, Any]]  # for the stand-in's URL (None: default)
    secrets: dict[str, str]  # what the stand-in accepts; the first is the key
    url_setting: str
    # stand-in mode -> what the provider raises: (type, code, message)
    failures: dict[str, tuple[type[ProviderError], str, str]]
    describes: tuple[tuple[str | None, str], ...]  # (URL setting given, describe())
    # An address the stand-in refuses (it may set that up), and (code, message) for it
    refuse: Callable[[StubServer], str]
    rejection: tuple[str, str]
    # Assert that the service's X-Ref header, Message-ID and email id arrived in the kind's shape
    carried: Callable[[dict[str, Any], Any], None]
    wrong_key: tuple[str, str] | None = None  # (code, message); None: as in mode "401"
    webhook_secrets: dict[str, str] = field(default_factory=dict)  # never the transport's

    @property
    def key_setting(self) -> str:
        return next(iter(self.secrets))

    def wrong_key_answer(self) -> tuple[str, str]:
        return self.wrong_key or self.failures["401"][1:]

    def provider(self, server: StubServer | None = None, **options: Any) -> Provider:
        """The provider pointed at `server` (None: the kind's default URL), short timeouts."""
        given = {**self.settings(server.url if server else None), **self.secrets}
        given.update(timeout=2, connect_timeout=1)
        return provider_class(self.kind)(**{**given, **options})


def matches(message: str, expected: str) -> bool:
    if expected.endswith("..."):
        return message.startswith(expected[:-3])
    return message == expected


# SendGrid ------------------------------------------------------------------------------------


def _sendgrid_carried(accepted: dict[str, Any], email: Any) -> None:
    assert accepted["headers"] == {"X-Ref": "42", "Message-ID": email.message_id}


SENDGRID = HttpKind(
    kind="sendgrid",
    fixture="sendgrid_server",
    stub=sendgrid.SendGridServer,
    settings=lambda url: {"host": url},
    secrets={"api_key": sendgrid.VALID_KEY},
    url_setting="host",
    failures={
        "401": (ProviderAuthError, "401", f"HTTP 401: {sendgrid.BAD_KEY}"),
        "429": (ProviderThrottled, "429", "HTTP 429: too many requests (rate limit resets at..."),
        "500": (ProviderUnavailable, "500", "HTTP 500: Internal server error"),
    },
    describes=(
        (None, "sendgrid https://api.sendgrid.com"),
        ("https://api.eu.sendgrid.com/v3/", "sendgrid https://api.eu.sendgrid.com"),
    ),
    refuse=refuses_localhost,
    rejection=("400", f"HTTP 400: personalizations.0.to.0.email: {sendgrid.BAD_ADDRESS}"),
    carried=_sendgrid_carried,
)


# Mailgun -------------------------------------------------------------------------------------


def _mailgun_carried(accepted: dict[str, Any], email: Any) -> None:
    assert accepted["variables"] == {"email_id": str(email.pk)}
    assert accepted["mime"]["X-Ref"] == "42"
    assert accepted["mime"]["Message-ID"] == email.message_id


MAILGUN = HttpKind(
    kind="mailgun",
    fixture="mailgun_server",
    stub=mailgun.MailgunServer,
    settings=lambda url: {"domain": mailgun.DOMAIN, "api_url": url},
    secrets={"api_key": mailgun.VALID_KEY},
    url_setting="api_url",
    failures={
        "401": (ProviderAuthError, "401", "HTTP 401: the API key was refused; check api_key"),
        "429": (ProviderThrottled, "429", "HTTP 429: Too many requests (retry after 60 s)"),
        "500": (ProviderUnavailable, "500", "HTTP 500: Internal Server Error"),
    },
    describes=(
        (None, "mailgun https://api.mailgun.net (mg.example.com)"),
        ("https://api.eu.mailgun.net/v3/", "mailgun https://api.eu.mailgun.net (mg.example.com)"),
    ),
    refuse=refuses_localhost,
    rejection=("400", f"HTTP 400: {mailgun.BAD_TO}"),
    carried=_mailgun_carried,
    webhook_secrets={"webhook_signing_key": "whsec"},
)


# Mandrill ------------------------------------------------------------------------------------


def _mandrill_carried(accepted: dict[str, Any], email: Any) -> None:
    mime = accepted["_mime"]
    assert mime["X-Ref"] == "42" and mime["Message-ID"] == email.message_id
    assert json.loads(str(mime["X-MC-Metadata"])) == {"email_id": str(email.pk)}


def _mandrill_error(name: str) -> str:
    return f"HTTP 500: {name}: {mandrill.ERRORS[name][1]}"


MANDRILL = HttpKind(
    kind="mandrill",
    fixture="mandrill_server",
    stub=mandrill.MandrillServer,
    settings=lambda url: {"api_url": url},
    secrets={"api_key": mandrill.VALID_KEY},
    url_setting="api_url",
    failures={  # Mandrill answers its errors with HTTP 500 and names them
        "401": (ProviderAuthError, "Invalid_Key", _mandrill_error("Invalid_Key")),
        "payment": (ProviderAuthError, "PaymentRequired", _mandrill_error("PaymentRequired")),
        "429": (ProviderThrottled, "429", "HTTP 429: Too Many Requests attempted recently"),
        "500": (ProviderUnavailable, "GeneralError", _mandrill_error("GeneralError")),
    },
    describes=(
        (None, "mandrill https://mandrillapp.com/api/1.0"),
        ("https://proxy.example/api/1.0/", "mandrill https://proxy.example/api/1.0"),
    ),
    refuse=refuses_localhost,  # answered 200, the recipient "invalid"
    rejection=("recipients_refused", "Mandrill refused every recipient: rcpt@localhost invalid"),
    carried=_mandrill_carried,
    webhook_secrets={"webhook_key": "not for sending"},
)


# Postmark ------------------------------------------------------------------------------------


def _postmark_carried(accepted: dict[str, Any], email: Any) -> None:
    assert accepted["Headers"] == [
        {"Name": "X-Ref", "Value": "42"},
        {"Name": "Message-ID", "Value": email.message_id},
    ]
    assert accepted["Metadata"] == {"email_id": str(email.pk)}


def _postmark_inactive(server: StubServer) -> str:
    """Postmark takes rcpt@localhost; it refuses a recipient marked inactive (ErrorCode 406)."""
    assert isinstance(server, postmark.PostmarkServer)
    server.inactive.add("bounced@example.org")
    return "bounced@example.org"


POSTMARK = HttpKind(
    kind="postmark",
    fixture="postmark_server",
    stub=postmark.PostmarkServer,
    settings=lambda url: {"api_url": url},
    secrets={"server_token": postmark.VALID_TOKEN},
    url_setting="api_url",
    failures={
        "401": (ProviderAuthError, "401", f"HTTP 401: ErrorCode 10: {postmark.BAD_TOKEN}"),
        "429": (ProviderThrottled, "429", "HTTP 429: ErrorCode 429: Rate limit exceeded."),
        "500": (ProviderUnavailable, "500", "HTTP 500"),  # its HTML body is never echoed
    },
    describes=(
        (None, "postmark https://api.postmarkapp.com"),
        ("https://pm.example/", "postmark https://pm.example"),
    ),
    refuse=_postmark_inactive,
    rejection=(
        "422/406",
        f"HTTP 422: ErrorCode 406: {postmark.INACTIVE.format('bounced@example.org')}",
    ),
    carried=_postmark_carried,
    webhook_secrets={"webhook_username": "hooks", "webhook_password": "hook-pass"},
)


# Resend --------------------------------------------------------------------------------------


def idempotency_key(message_id: str) -> str:
    """What the Resend transport sends: stable per stored email, unique across installations."""
    return "emailservice-" + hashlib.sha256(message_id.encode()).hexdigest()[:40]


def _resend_carried(accepted: dict[str, Any], email: Any) -> None:
    assert accepted["headers"] == {"X-Ref": "42", "Message-ID": email.message_id}
    assert accepted["tags"] == [{"name": "email_id", "value": str(email.pk)}]
    assert accepted["_headers"]["Idempotency-Key"] == idempotency_key(email.message_id)


def _resend_429(mode: str) -> str:
    status, name, message = resend.CANNED[mode]
    return f"HTTP {status}: {name}: {message} (retry after 1 s)"


RESEND = HttpKind(
    kind="resend",
    fixture="resend_server",
    stub=resend.ResendServer,
    settings=lambda url: {"api_url": url},
    secrets={"api_key": resend.VALID_KEY},
    url_setting="api_url",
    failures={
        "401": (ProviderAuthError, "401", "HTTP 401: validation_error: API key is invalid"),
        "429": (ProviderThrottled, "429", _resend_429("429")),
        # A daily quota won't clear within a pause: an outage, counted towards the circuit.
        "quota": (ProviderUnavailable, "429", _resend_429("quota")),
        "500": (
            ProviderUnavailable,
            "500",
            "HTTP 500: application_error: An unexpected error occurred.",
        ),
    },
    describes=(
        (None, "resend https://api.resend.com"),
        ("http://x.example/", "resend http://x.example"),
    ),
    refuse=refuses_localhost,
    rejection=("422", f"HTTP 422: validation_error: {resend.BAD_ADDRESS.format('to')}"),
    carried=_resend_carried,
    wrong_key=("403", "HTTP 403: invalid_api_key: API key is invalid."),
    webhook_secrets={"webhook_secret": "whsec_c2VjcmV0"},
)


KINDS = (SENDGRID, MAILGUN, MANDRILL, POSTMARK, RESEND)
