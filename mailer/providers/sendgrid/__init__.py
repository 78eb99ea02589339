"""SendGrid's v3 Web API. The transport is in transport.py."""

from __future__ import annotations

from .. import spec as s


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """sendgrid://:API_KEY@[host[:port]][?host=https://...]"""
    settings = url.params("host")
    if url.hostname:
        settings["host"] = f"https://{url.hostname}" + (f":{url.port}" if url.port else "")
    return settings, {"api_key": url.password or url.username or ""}


SPEC = s.KindSpec(
    kind="sendgrid",
    label="SendGrid",
    note="SendGrid's Web API: an API key.",
    transport="mailer.providers.sendgrid.transport:SendGridProvider",
    sent_via=3,
    legacy_name="send_grid",
    settings=(
        s.Option(
            "host",
            s.url,
            label="API host",
            host=s.url_host,
            max_length=2048,
            help="Leave blank for https://api.sendgrid.com; the EU host is "
            "https://api.eu.sendgrid.com.",
        ),
    ),
    secrets=(s.Option("api_key", s.secret, label="API key", required=True),),
    url_schemes=("sendgrid",),
    from_url=from_url,
    url_example="sendgrid://:API_KEY@",
)
