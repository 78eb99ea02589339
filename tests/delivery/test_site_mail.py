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
from mailer.provider_settings import clean_provider, provider_urls
from mailer.providers.base import ProviderUnavailable
from mailer.providers.smtp.transport import SmtpProvider
from mailer.providers.urls import parse_provider_url


def site_mailers(*urls: str) -> dict:
    """MAILERS as settings.py writes them, over these URLs."""
    options = {"urls": list(urls), "timeout": 2, "connect_timeout": 1}
    return {"default": {"BACKEND": "mailer.backends.FailoverEmailBackend", "OPTIONS": options}}


def test_settings_hold_the_urls_and_the_backend_builds_providers_from_them():
    # tests/settings.py sets MAIL_PROVIDER_URLS=smtp://127.0.0.1:9?security=none
    default = CONFIGURED_MAILERS["default"]
    assert default["BACKEND"] == "mailer.backends.FailoverEmailBackend"
    assert default["OPTIONS"]["urls"] == ["smtp://127.0.0.1:9?security=none"]
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
        f"smtp://127.0.0.1:{closed_port}?security=none",
        f"smtp://127.0.0.1:{smtp_sink.port}?security=none",
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
            "BACKEND": "mailer.providers.smtp.transport.SmtpProvider",
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
    settings.MAILERS = site_mailers("smtp://127.0.0.1:25", "gopher://key:s3cret@mg.example")
    with pytest.raises(InvalidMailer) as caught:
        send_mail("Hi", "Body", "site@example.com", ["user@example.org"])
    assert "OPTIONS['urls'][1] ('gopher://***@mg.example')" in str(caught.value)
    assert "unknown provider URL scheme 'gopher'" in str(caught.value)
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
        f"smtp://127.0.0.1:{closed_port}?security=none",
        f"smtp://127.0.0.1:{busy.port}?security=none",
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
    ("url", "kind", "settings_", "secrets"),
    [
        (
            "smtp://u:p%40ss@smtp.gmail.com",
            "smtp",
            {"host": "smtp.gmail.com", "security": "starttls", "port": 587},
            {"username": "u", "password": "p@ss"},
        ),
        (
            "smtp://mail.example.com:465",
            "smtp",
            {"host": "mail.example.com", "security": "ssl", "port": 465},
            {},
        ),
        (
            "smtps://mail.example.com",
            "smtp",
            {"host": "mail.example.com", "security": "ssl", "port": 465},
            {},
        ),
        (
            "smtp://localhost:25?security=none",
            "smtp",
            {"host": "localhost", "security": "none", "port": 25},
            {},
        ),
        (
            "ses://AKID:SECRET@eu-west-1?configuration_set=events",
            "ses",
            {"region": "eu-west-1", "configuration_set": "events"},
            {"access_key_id": "AKID", "secret_access_key": "SECRET"},
        ),
        (
            "sendgrid://:SG.key@api.eu.sendgrid.com",
            "sendgrid",
            {"host": "https://api.eu.sendgrid.com"},
            {"api_key": "SG.key"},
        ),
    ],
)
def test_provider_urls_are_cleaned_with_the_kinds_defaults(url, kind, settings_, secrets):
    assert provider_urls([url], source="x") == [(kind, settings_, secrets)]


@pytest.mark.parametrize("given", [{}, {"port": 465}, {"port": 2525}, {"security": "ssl"}])
def test_a_url_means_what_the_same_settings_mean_through_the_api(given):
    """One grammar: smtp://host[:port] gets the defaults a config saved with the same settings
    gets (587 and STARTTLS unless the port is 465), not a URL dialect of its own."""
    query = f"?security={given['security']}" if "security" in given else ""
    port = f":{given['port']}" if "port" in given else ""
    [(_, from_url, _)] = provider_urls([f"smtp://mail.example.com{port}{query}"], source="x")
    saved, _ = clean_provider("smtp", {"host": "mail.example.com", **given}, {}, trusted=True)
    assert from_url == saved


def test_unknown_scheme_names_every_known_one():
    with pytest.raises(ValueError) as caught:
        parse_provider_url("gopher://key@x")
    assert "unknown provider URL scheme 'gopher'" in str(caught.value)
    for scheme in ("smtp", "smtps", "ses", "sendgrid", "mailgun", "mandrill", "postmark", "resend"):
        assert scheme in str(caught.value)


def test_fail_silently_counts_a_failure_out_instead_of_raising(settings, closed_port, smtp_sink):
    """Django's contract, as MAILERS takes it (an OPTION of a backend that supports it): a send
    that fails is logged and counted out, not raised, and the rest are still sent. Both our
    backends keep it."""
    messages = [
        mail.EmailMessage("One", "Body", "site@example.com", ["a@example.org"]),
        mail.EmailMessage("Two", "Body", "site@example.com", ["b@example.org"]),
    ]
    smtp = {"host": "127.0.0.1", "security": "none", "allow_private_hosts": True}
    provider, quiet = "mailer.providers.smtp.transport.SmtpProvider", {"fail_silently": True}
    settings.MAILERS = {
        "down": {"BACKEND": provider, "OPTIONS": {**smtp, "port": closed_port, **quiet}},
        "loud": {"BACKEND": provider, "OPTIONS": {**smtp, "port": closed_port}},
        "up": {"BACKEND": provider, "OPTIONS": {**smtp, "port": smtp_sink.port, **quiet}},
        "default": {
            "BACKEND": "mailer.backends.FailoverEmailBackend",
            "OPTIONS": {"urls": [f"smtp://127.0.0.1:{closed_port}?security=none"], "timeout": 2,
                        "fail_silently": True},
        },
    }  # fmt: skip
    assert mail.mailers["down"].send_messages(messages) == 0
    with pytest.raises(ProviderUnavailable):
        mail.mailers["loud"].send_messages(messages)
    assert mail.mailers["up"].send_messages(messages) == 2
    assert mail.mailers["default"].send_messages(messages) == 0
    assert len(smtp_sink.received) == 2
