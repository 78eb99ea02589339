"""Amazon SES (API v2, raw MIME). The transport is in transport.py."""

from __future__ import annotations

from .. import spec as s


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """ses://ACCESS_KEY_ID:SECRET@region?endpoint_url=...&configuration_set=..."""
    settings = url.params("region", "endpoint_url", "configuration_set")
    if url.hostname:
        settings["region"] = url.hostname
    secrets = {"access_key_id": url.username or "", "secret_access_key": url.password or ""}
    return settings, secrets


SPEC = s.KindSpec(
    kind="ses",
    label="Amazon SES",
    note="Amazon Simple Email Service: a region and an access key.",
    transport="mailer.providers.ses.transport:SesProvider",
    sent_via=1,
    legacy_name="amazon_SES",
    settings=(
        s.Option("region", s.region, label="AWS region", required=True, help="Like eu-west-1."),
        s.Option(
            "endpoint_url",
            s.url,
            label="Endpoint URL",
            host=s.url_host,
            max_length=2048,
            help="Only for an SES-compatible API; leave blank for AWS.",
        ),
        s.Option(
            "configuration_set",
            s.token_text,
            label="Configuration set",
            help="Sent with every message (event publishing, IP pools); optional.",
        ),
    ),
    secrets=(
        s.Option("access_key_id", s.secret, label="Access key ID", required=True),
        s.Option("secret_access_key", s.secret, label="Secret access key", required=True),
    ),
    url_schemes=("ses",),
    from_url=from_url,
    url_example="ses://ACCESS_KEY_ID:SECRET@eu-west-1",
)
