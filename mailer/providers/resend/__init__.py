"""Resend's HTTP API (POST /emails with an API key). The transport is in transport.py."""

from __future__ import annotations

from .. import spec as s

DEFAULT_API_URL = "https://api.resend.com"


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """resend://:API_KEY@[host[:port]][?api_url=http(s)://...]

    A host in the URL means https on it; `api_url` gives any base URL (a stand-in on loopback)."""
    settings = url.params("api_url")
    if url.hostname:
        settings["api_url"] = url.https_origin
    return settings, {"api_key": url.key}


SPEC = s.KindSpec(
    kind="resend",
    label="Resend",
    note="Resend's HTTP API: an API key.",
    transport="mailer.providers.resend.transport:ResendProvider",
    sent_via=7,
    legacy_name="resend",
    settings=(
        s.base_url_option(
            DEFAULT_API_URL,
            f"Leave as {DEFAULT_API_URL} unless a proxy or a stand-in serves Resend's API.",
        ),
    ),
    secrets=(
        s.Option(
            "api_key",
            s.secret,
            label="API key",
            required=True,
            help="A Resend API key (re_...); sending access is enough.",
        ),
        s.Option(
            "webhook_secret",
            s.secret,
            label="Webhook signing secret (whsec_...)",
            help="From the webhook's page in Resend: verifies the delivery events it posts. "
            "Optional; not used for sending.",
            transport=False,
        ),
    ),
    url_schemes=("resend",),
    from_url=from_url,
    url_example="resend://:API_KEY@",
    events="mailer.providers.resend.events:ResendEvents",
    webhook_steps=(
        "In Resend, Webhooks: add an endpoint with the URL {url} and the email events "
        "(delivered, delivery delayed, bounced, complained, opened, clicked, failed).",
        "Copy its signing secret (whsec_...) into this provider's Webhook signing secret.",
    ),
)
