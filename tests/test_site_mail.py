"""The site's own mail (MAILERS "default") fails over across the providers of MAIL_PROVIDER_URLS."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.mail import InvalidMailer, send_mail

from emailservice.settings import MAILERS as CONFIGURED_MAILERS
from mailer.backends import DeliveryFailed, FailoverEmailBackend
from mailer.providers.urls import parse_provider_url
from tests.fakes.smtp import ScriptedHandler


def site_mailers(*urls: str) -> dict:
    mailers = {}
    for index, url in enumerate(urls, start=1):
        kind, options = parse_provider_url(url)
        mailers[f"site-{index}"] = {
            "BACKEND": f"mailer.providers.{kind}.SmtpProvider",
            "OPTIONS": {**options, "timeout": 2, "connect_timeout": 1},
        }
    mailers["default"] = {
        "BACKEND": "mailer.backends.FailoverEmailBackend",
        "OPTIONS": {"mailers": [m for m in mailers]},
    }
    return mailers


def test_settings_build_mailers_from_env():
    # tests/settings.py sets MAIL_PROVIDER_URLS=smtp://127.0.0.1:9
    assert CONFIGURED_MAILERS["site-1-smtp"]["BACKEND"] == "mailer.providers.smtp.SmtpProvider"
    assert CONFIGURED_MAILERS["site-1-smtp"]["OPTIONS"]["port"] == 9
    assert CONFIGURED_MAILERS["default"]["OPTIONS"] == {"mailers": ["site-1-smtp"]}


def test_send_mail_fails_over(settings, closed_port, smtp_sink):
    settings.MAILERS = site_mailers(
        f"smtp://127.0.0.1:{closed_port}", f"smtp://127.0.0.1:{smtp_sink.port}"
    )
    assert (
        send_mail(
            "Reset your password", "Follow the link.", "site@example.com", ["user@example.org"]
        )
        == 1
    )
    [received] = smtp_sink.received
    assert received.message["Subject"] == "Reset your password"


def test_no_provider_accepting_raises_with_the_reason(settings, closed_port, smtp_server):
    busy = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Busy"))
    settings.MAILERS = site_mailers(
        f"smtp://127.0.0.1:{closed_port}", f"smtp://127.0.0.1:{busy.port}"
    )
    with pytest.raises(DeliveryFailed) as caught:
        send_mail("Hi", "Body", "site@example.com", ["user@example.org"])
    assert "421" in str(caught.value)


def test_a_mailer_that_is_not_a_provider_is_refused(settings):
    settings.MAILERS = {
        "console": {"BACKEND": "django.core.mail.backends.console.EmailBackend"},
        "default": {
            "BACKEND": "mailer.backends.FailoverEmailBackend",
            "OPTIONS": {"mailers": ["console"]},
        },
    }
    with pytest.raises(InvalidMailer, match="not a provider backend"):
        mail.mailers.default.send_messages([mail.EmailMessage("s", "b", "a@b.c", ["d@e.f"])])


def test_failover_backend_needs_mailers():
    with pytest.raises(InvalidMailer):
        FailoverEmailBackend(mailers=[], alias="default")


@pytest.mark.parametrize(
    ("url", "kind", "options"),
    [
        (
            "smtp://u:p%40ss@smtp.gmail.com:587",
            "smtp",
            {
                "host": "smtp.gmail.com",
                "port": 587,
                "security": "starttls",
                "username": "u",
                "password": "p@ss",
            },
        ),
        (
            "smtps://mail.example.com",
            "smtp",
            {"host": "mail.example.com", "port": 465, "security": "ssl"},
        ),
        (
            "ses://AKID:SECRET@eu-west-1",
            "ses",
            {"region": "eu-west-1", "access_key_id": "AKID", "secret_access_key": "SECRET"},
        ),
        (
            "sendgrid://:SG.key@api.eu.sendgrid.com",
            "sendgrid",
            {"api_key": "SG.key", "host": "https://api.eu.sendgrid.com"},
        ),
    ],
)
def test_provider_urls(url, kind, options):
    assert parse_provider_url(url) == (kind, options)


def test_unknown_scheme_is_explained():
    with pytest.raises(ValueError, match="use smtp, smtps, ses or sendgrid"):
        parse_provider_url("mailgun://key@x")
