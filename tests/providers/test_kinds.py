"""Every registered kind through each door a provider comes in by: the API, the pages (forms
generated from the kind's spec) and MAIL_PROVIDER_URLS. The same given values must come out as
the same stored settings, the kind's one set of defaults filled in, whichever door."""

from __future__ import annotations

import pytest

from harness.api import ApiClient
from harness.factories import make_token
from mailer.legacy import legacy_name, sent_via_kinds
from mailer.models import ProviderConfig
from mailer.provider_settings import provider_urls
from mailer.providers import build_provider, kind_choices, provider_class, specs
from mailer.providers.base import Provider

# kind -> (settings as a person gives them, secrets, the same as a MAIL_PROVIDER_URLS entry,
# the settings stored: given plus the kind's defaults)
SAMPLES = {
    "smtp": (
        {"host": "smtp.example.com"},
        {"username": "me@example.com", "password": "app-password"},
        "smtp://me%40example.com:app-password@smtp.example.com",
        {"host": "smtp.example.com", "security": "starttls", "port": 587},
    ),
    "ses": (
        {"region": "eu-west-1"},
        {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "aws-secret"},
        "ses://AKIAEXAMPLE:aws-secret@eu-west-1",
        {"region": "eu-west-1"},
    ),
    "sendgrid": (
        {"host": "https://api.eu.sendgrid.com"},
        {"api_key": "SG.key"},
        "sendgrid://:SG.key@api.eu.sendgrid.com",
        {"host": "https://api.eu.sendgrid.com"},
    ),
    "mailgun": (
        {"domain": "mg.example.com", "api_url": "https://api.eu.mailgun.net"},
        {"api_key": "key-mailgun"},
        "mailgun://api:key-mailgun@mg.example.com?api_url=https://api.eu.mailgun.net",
        {"domain": "mg.example.com", "api_url": "https://api.eu.mailgun.net"},
    ),
    "mandrill": (
        {},
        {"api_key": "md-key"},
        "mandrill://:md-key@",
        {"api_url": "https://mandrillapp.com/api/1.0"},
    ),
    "postmark": (
        {"message_stream": "broadcast"},
        {"server_token": "pm-token"},
        "postmark://:pm-token@?message_stream=broadcast",
        {"message_stream": "broadcast", "api_url": "https://api.postmarkapp.com"},
    ),
    "resend": (
        {},
        {"api_key": "re_key"},
        "resend://:re_key@",
        {"api_url": "https://api.resend.com"},
    ),
}


def test_every_registered_kind_has_a_sample():
    assert list(specs()) == ["smtp", "ses", "sendgrid", "mailgun", "mandrill", "postmark", "resend"]
    assert set(SAMPLES) == set(specs())


def test_everything_about_a_kind_is_derived_from_its_spec():
    """Model choices, the original contract's numbers and names, transports: one registry."""
    assert kind_choices() == [(spec.kind, spec.label) for spec in specs().values()]
    assert sent_via_kinds() == {
        "1": "ses", "2": "smtp", "3": "sendgrid", "4": "mailgun", "5": "mandrill",
        "6": "postmark", "7": "resend",
    }  # fmt: skip
    assert [legacy_name(k) for k in ("ses", "smtp", "sendgrid")] == [
        "amazon_SES", "google_SMTP", "send_grid",
    ]  # fmt: skip
    field = ProviderConfig._meta.get_field("kind")
    assert field.choices == kind_choices()
    for kind in specs():
        assert issubclass(provider_class(kind), Provider)
        assert provider_class(kind).kind == kind


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_the_same_provider_through_the_api_the_pages_and_a_url(client, account, kind):
    given, secrets, url, expected = SAMPLES[kind]

    api = ApiClient.django(client, make_token(account))
    response = api.post(
        "/api/v1/providers", {"kind": kind, "name": "by-api", "settings": given, "secrets": secrets}
    )
    assert response.status_code == 201, response.content
    assert response.json()["settings"] == expected
    assert sorted(response.json()["secrets_set"]) == sorted(secrets)

    client.force_login(account)
    page = client.post(f"/providers/add/{kind}/", {"name": "by-page", **given, **secrets})
    assert page.status_code == 302, page.content.decode()[-2000:]
    by_page = ProviderConfig.objects.get(account=account, name="by-page")
    assert by_page.settings == expected
    assert by_page.decrypted_secrets() == secrets

    [(url_kind, url_settings, url_secrets)] = provider_urls([url], source="MAIL_PROVIDER_URLS")
    assert (url_kind, url_settings, url_secrets) == (kind, expected, secrets)

    provider = build_provider(
        kind, settings=expected, secrets=secrets, timeout=1, connect_timeout=1
    )
    assert isinstance(provider, provider_class(kind))
    for secret in secrets.values():
        assert secret not in provider.describe()


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_api_help_names_each_kind_with_its_settings_and_secrets(client, account, kind):
    schema = client.get("/api/v1/openapi.json").json()
    provider_in = schema["components"]["schemas"]["ProviderIn"]["properties"]
    assert kind in provider_in["kind"]["description"]
    for option in specs()[kind].settings:
        assert option.name in provider_in["settings"]["description"]
    for option in specs()[kind].secrets:
        assert option.name in provider_in["secrets"]["description"]
