"""Amazon SES (API v2, raw MIME). The transport is in transport.py."""

from __future__ import annotations

import re

from .. import spec as s


def topic_arn(value) -> str:
    arn = s.text(value, max_length=256).strip()
    if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", arn):
        raise ValueError(
            f"{arn!r} is not an SNS topic ARN like arn:aws:sns:eu-west-1:123456789012:ses-events."
        )
    return arn


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
    counts_recipients=True,
    settings=(
        s.Option("region", s.region, label="AWS region", required=True, help="Like eu-west-1."),
        s.base_url_option(
            None,
            "Only for an SES-compatible API; leave blank for AWS.",
            name="endpoint_url",
            label="Endpoint URL",
        ),
        s.Option(
            "configuration_set",
            s.token_text,
            label="Configuration set",
            help="Sent with every message (event publishing, IP pools); optional.",
        ),
        s.Option(
            "topic_arn",
            topic_arn,
            label="SNS topic ARN",
            max_length=256,
            transport=False,
            help="The SNS topic SES publishes this provider's events to. Set it: webhooks from "
            "any other topic are then refused (SNS signs every topic's messages alike).",
        ),
    ),
    secrets=(
        s.Option("access_key_id", s.secret, label="Access key ID", required=True),
        s.Option("secret_access_key", s.secret, label="Secret access key", required=True),
    ),
    url_schemes=("ses",),
    from_url=from_url,
    url_example="ses://ACCESS_KEY_ID:SECRET@eu-west-1",
    # Through SNS: signed with Amazon's certificate, so no webhook secret of ours.
    events="mailer.providers.ses.events:SesEvents",
    webhook_steps=(
        "In Amazon SNS, create a topic (Standard) in the same region; put its ARN in this "
        "provider's SNS topic ARN setting.",
        "Subscribe to the topic with protocol HTTPS and endpoint {url}; leave raw message "
        "delivery off. The subscription is confirmed automatically.",
        "In SES, add a configuration set with an event destination to that topic (bounce, "
        "complaint, delivery, reject, delivery delay, open, click, subscription), and set it "
        "as this provider's configuration set.",
    ),
)
