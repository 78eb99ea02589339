"""Postmark's Email API (POST /email, JSON): a server token and a message stream. The transport
is in transport.py."""

from __future__ import annotations

from .. import spec as s

DEFAULT_API_URL = "https://api.postmarkapp.com"
DEFAULT_MESSAGE_STREAM = "outbound"  # Postmark's default transactional stream


def from_url(url: s.ProviderUrl) -> tuple[dict, dict]:
    """postmark://:SERVER_TOKEN@[host[:port]][?message_stream=broadcast][&api_url=https://...]

    A host, when given, is the API host over https (a stand-in or proxy); ?api_url= says the
    same with a scheme, so only one of them may be given."""
    settings = url.params("message_stream", "api_url")
    if url.hostname:
        if "api_url" in settings:
            raise ValueError("give the API host either as the URL's host or as ?api_url=, not both")
        settings["api_url"] = url.https_origin
    return settings, {"server_token": url.key}


SPEC = s.KindSpec(
    kind="postmark",
    label="Postmark",
    note="Postmark's Email API: a server token and a message stream.",
    transport="mailer.providers.postmark.transport:PostmarkProvider",
    sent_via=6,
    legacy_name="postmark",
    settings=(
        s.Option(
            "message_stream",
            s.token_text,
            label="Message stream",
            default=DEFAULT_MESSAGE_STREAM,
            help="The ID of the server's message stream to send through: 'outbound' (the "
            "default transactional stream), 'broadcast', or one you created.",
        ),
        s.base_url_option(
            DEFAULT_API_URL,
            f"Leave as {DEFAULT_API_URL}.",
            label="API host",
        ),
    ),
    secrets=(
        s.Option(
            "server_token",
            s.secret,
            label="Server token",
            required=True,
            help="The server's API token (the server's API Tokens tab), not the account token.",
        ),
        s.Option(
            "webhook_username",
            s.secret,
            label="Webhook username",
            requires=("webhook_password",),
            transport=False,
            help="The HTTP Basic user name put in the webhook URL given to Postmark, to check "
            "the delivery events it posts.",
        ),
        s.Option(
            "webhook_password",
            s.secret,
            label="Webhook password",
            transport=False,
            help="The HTTP Basic password put in the webhook URL given to Postmark.",
        ),
    ),
    url_schemes=("postmark",),
    from_url=from_url,
    url_example="postmark://:SERVER_TOKEN@?message_stream=broadcast",
    events="mailer.providers.postmark.events:PostmarkEvents",
    webhook_steps=(
        "Choose a webhook username and password and save them in this provider's secrets.",
        "In Postmark, the server's message stream > Webhooks: add the URL {url} with those "
        "credentials written into it (https://USERNAME:PASSWORD@host/...) and tick delivery, "
        "bounce, spam complaint, open, click and subscription change.",
    ),
)
