"""The site's own mail (MAILERS "default") fails over across the providers of MAIL_PROVIDER_URLS."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.mail import InvalidMailer, send_mail
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from emailservice.settings import MAILERS as CONFIGURED_MAILERS
from harness.smtp import ScriptedHandler
from mailer.backends import DeliveryFailed, FailoverEmailBackend
from mailer.checks import check_mail_provider_urls
from mailer.providers.smtp import SmtpProvider
from mailer.providers.urls import parse_provider_url


def site_mailers(*urls: str) -> dict:
    """MAILERS as settings.py writes them, over these URLs."""
    options = {"urls": list(urls), "timeout": 2, "connect_timeout": 1}
    return {"default": {"BACKEND": "mailer.backends.FailoverEmailBackend", "OPTIONS": options}}


def test_settings_hold_the_urls_and_the_backend_builds_providers_from_them():
    # tests/settings.py sets MAIL_PROVIDER_URLS=smtp://127.0.0.1:9
    default = CONFIGURED_MAILERS["default"]
    assert default["BACKEND"] == "mailer.backends.FailoverEmailBackend"
    assert default["OPTIONS"]["urls"] == ["smtp://127.0.0.1:9"]
    assert default["OPTIONS"]["allow_private_hosts"] is True
    backend = FailoverEmailBackend(alias="default", **default["OPTIONS"])
    assert backend.open()
    try:
        [candidate] = backend._candidates
        assert isinstance(candidate.provider, SmtpProvider)
        assert (candidate.provider.host, candidate.provider.port) == ("127.0.0.1", 9)
        assert candidate.provider.allow_private_hosts
    finally:
        backend.close()


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


def test_failover_across_mailers_aliases(settings, closed_port, smtp_sink):
    settings.MAILERS = {
        f"site-{index}": {
            "BACKEND": "mailer.providers.smtp.SmtpProvider",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 2},
        }
        for index, port in enumerate((closed_port, smtp_sink.port), start=1)
    }
    settings.MAILERS["default"] = {
        "BACKEND": "mailer.backends.FailoverEmailBackend",
        "OPTIONS": {"mailers": ["site-1", "site-2"]},
    }
    assert send_mail("Hi", "Body", "site@example.com", ["user@example.org"]) == 1
    assert len(smtp_sink.received) == 1


def test_a_bad_url_fails_at_first_use_naming_it_without_its_credentials(settings):
    settings.MAILERS = site_mailers("smtp://127.0.0.1:25", "mailgun://key:s3cret@mg.example")
    with pytest.raises(InvalidMailer) as caught:
        send_mail("Hi", "Body", "site@example.com", ["user@example.org"])
    assert "OPTIONS['urls'][1] ('mailgun://***@mg.example')" in str(caught.value)
    assert "unknown provider URL scheme 'mailgun'" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.django_db
def test_manage_py_check_names_each_bad_url(settings):
    settings.MAIL_PROVIDER_URLS = [
        "smtp://u:pw@127.0.0.1:25",
        "smtp://u:s3cret@mail.example?security=tls",
        "ftp://files.example",
    ]
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    message = str(caught.value)
    assert "mailer.E002" in message
    assert "MAIL_PROVIDER_URLS[1] ('smtp://***@mail.example?security=tls')" in message
    assert "MAIL_PROVIDER_URLS[2] ('ftp://files.example')" in message
    assert "MAIL_PROVIDER_URLS[0]" not in message and "s3cret" not in message


def test_check_refuses_no_url_and_accepts_good_ones(settings):
    settings.MAIL_PROVIDER_URLS = []
    assert [e.id for e in check_mail_provider_urls()] == ["mailer.E001"]
    settings.MAIL_PROVIDER_URLS = ["smtps://u:p@mail.example", "sendgrid://:SG.key@"]
    assert check_mail_provider_urls() == []


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


@pytest.mark.parametrize(
    "options", [{}, {"mailers": []}, {"urls": []}, {"urls": ["smtp://h"], "mailers": ["a"]}]
)
def test_failover_backend_needs_urls_or_mailers(options):
    with pytest.raises(InvalidMailer):
        FailoverEmailBackend(alias="default", **options)


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
