"""Mandrill (Mailchimp Transactional API 1.0, raw MIME). The transport is in transport.py, the
webhook events (X-Mandrill-Signature, checked with webhook_key) in events.py."""

from __future__ import annotations

from .. import spec as s

DEFAULT_API_URL = "https://mandrillapp.com/api/1.0"


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """mandrill://:API_KEY@[host[:port]][?api_url=https://...]

    A host stands for Mandrill's API on it, https://host[:port]/api/1.0; an API under another
    path (a stand-in) is given whole as api_url."""
    settings = url.params("api_url")
    if url.hostname:
        settings["api_url"] = f"{url.https_origin}/api/1.0"
    return settings, {"api_key": url.key}


SPEC = s.KindSpec(
    kind="mandrill",
    label="Mandrill",
    note="Mailchimp Transactional (Mandrill) API: an API key.",
    transport="mailer.providers.mandrill.transport:MandrillProvider",
    sent_via=5,
    legacy_name="mandrill",
    settings=(
        s.base_url_option(
            DEFAULT_API_URL,
            f"The API's base URL, version included; leave blank for {DEFAULT_API_URL}.",
        ),
    ),
    secrets=(
        s.Option(
            "api_key",
            s.secret,
            label="API key",
            required=True,
            help="A Mailchimp Transactional API key (Settings > SMTP & API Info).",
        ),
        s.Option(
            "webhook_key",
            s.secret,
            label="Webhook key",
            transport=False,
            help="The key Mandrill shows for your webhook; it checks X-Mandrill-Signature. "
            "Optional: without it, this provider's webhook events are refused.",
        ),
    ),
    url_schemes=("mandrill",),
    from_url=from_url,
    url_example="mandrill://:API_KEY@",
    events="mailer.providers.mandrill.events:MandrillEvents",
    webhook_steps=(
        "In Mandrill, Settings > Webhooks: add a webhook with the URL {url}, exactly as shown, "
        "and tick the message events (sent, delivered, deferral, bounces, spam, unsub, "
        "reject, open, click).",
        "Copy the webhook's key into this provider's Webhook key.",
    ),
)
