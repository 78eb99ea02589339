"""SendGrid's v3 Web API. The transport is in transport.py."""

from __future__ import annotations

from .. import spec as s


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """sendgrid://:API_KEY@[host[:port]][?host=https://...]"""
    settings = url.params("host")
    if url.hostname:
        settings["host"] = url.https_origin
    return settings, {"api_key": url.key}


def verification_key(value: object) -> str:
    """The Signed Event Webhook's public key, checked when it is saved rather than at the first
    webhook (which would then be refused). events is imported on use: a spec loads no crypto."""
    from .events import key_text, load_public_key

    given = s.secret(value)
    load_public_key(given)
    return key_text(given)


SPEC = s.KindSpec(
    kind="sendgrid",
    label="SendGrid",
    note="SendGrid's Web API: an API key.",
    transport="mailer.providers.sendgrid.transport:SendGridProvider",
    sent_via=3,
    legacy_name="send_grid",
    settings=(
        s.base_url_option(
            None,
            "Leave blank for https://api.sendgrid.com; the EU host is https://api.eu.sendgrid.com.",
            name="host",
            label="API host",
        ),
    ),
    secrets=(
        s.Option("api_key", s.secret, label="API key", required=True),
        s.Option(
            "webhook_public_key",
            verification_key,
            label="Event Webhook verification key",
            transport=False,
            help="To verify the delivery events SendGrid posts: in SendGrid, Settings > Mail "
            "Settings > Event Webhooks, edit the webhook and enable Signed Event Webhook under "
            "Security features; copy the verification key it shows (base64).",
        ),
    ),
    url_schemes=("sendgrid",),
    from_url=from_url,
    url_example="sendgrid://:API_KEY@",
    events="mailer.providers.sendgrid.events:SendGridEvents",
    webhook_steps=(
        "In SendGrid, Settings > Mail Settings > Event Webhooks: create a webhook with the "
        "URL {url} and select the events (delivered, bounced, dropped, deferred, spam reports, "
        "unsubscribes, opens, clicks).",
        "Enable Signed Event Webhook and copy its verification key into this provider's "
        "Event Webhook verification key.",
    ),
)
