"""Mailgun's HTTP API (messages.mime): a sending domain and an API key. The transport is in
transport.py."""

from __future__ import annotations

from .. import spec as s

DEFAULT_API_URL = "https://api.mailgun.net"


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """mailgun://api:API_KEY@mg.example.com[?api_url=https://api.eu.mailgun.net]

    The host is the sending domain, so it can't also name the API host (that is ?api_url=);
    the user part is Mailgun's fixed Basic-auth user "api" and is ignored."""
    if url.port is not None:
        raise ValueError(
            "the host of a mailgun URL is the sending domain and takes no port; "
            "give the API host as ?api_url=https://..."
        )
    settings = url.params("api_url")
    settings["domain"] = url.hostname
    return settings, {"api_key": url.password}


SPEC = s.KindSpec(
    kind="mailgun",
    label="Mailgun",
    note="Mailgun's HTTP API: a sending domain and an API key.",
    transport="mailer.providers.mailgun.transport:MailgunProvider",
    sent_via=4,
    legacy_name="mailgun",
    settings=(
        s.Option(
            "domain",
            s.domain,
            label="Sending domain",
            required=True,
            help="The domain as Mailgun lists it under Sending > Domains, like 'mg.example.com'.",
        ),
        s.base_url_option(
            DEFAULT_API_URL,
            f"Leave as {DEFAULT_API_URL} for a domain in Mailgun's US region; a domain "
            "in the EU region needs https://api.eu.mailgun.net.",
            label="API host",
        ),
    ),
    secrets=(
        s.Option(
            "api_key",
            s.secret,
            label="API key",
            required=True,
            help="A Mailgun API key or a domain sending key.",
        ),
        s.Option(
            "webhook_signing_key",
            s.secret,
            label="Webhook signing key",
            transport=False,
            help="Mailgun's HTTP webhook signing key, to verify the delivery events it posts.",
        ),
    ),
    url_schemes=("mailgun",),
    from_url=from_url,
    url_example="mailgun://api:API_KEY@mg.example.com",
    events="mailer.providers.mailgun.events:MailgunEvents",
    webhook_steps=(
        "In Mailgun, Sending > Webhooks for the sending domain: add {url} for each event "
        "(delivered, permanent and temporary failures, complained, unsubscribed, opened, "
        "clicked).",
        "Copy the HTTP webhook signing key (Settings > API Security) into this provider's "
        "Webhook signing key.",
    ),
)
