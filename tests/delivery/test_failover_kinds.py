"""Failover across kinds: one email through four different providers, each a stand-in that
speaks that provider's API, the first three failing in three different ways."""

from __future__ import annotations

from harness.api import ApiClient
from harness.factories import make_token
from mailer.models import Email
from tests.fakes import mailgun, postmark, resend, sendgrid


def test_a_chain_of_four_kinds_fails_over_in_order_and_records_every_attempt(
    client,
    account,
    add_provider,
    sendgrid_server,
    mailgun_server,
    postmark_server,
    resend_server,
):
    sendgrid_server.mode = "401"  # a key the provider refuses: opens its circuit at once
    mailgun_server.mode = "500"  # the provider's own trouble
    postmark_server.mode = "stall"  # takes the request and never answers: may have sent it
    add_provider("sendgrid", name="grid", priority=1, settings={"host": sendgrid_server.url},
                 secrets={"api_key": sendgrid.VALID_KEY})  # fmt: skip
    add_provider("mailgun", name="gun", priority=2,
                 settings={"domain": mailgun.DOMAIN, "api_url": mailgun_server.url},
                 secrets={"api_key": mailgun.VALID_KEY})  # fmt: skip
    add_provider("postmark", name="mark", priority=3, settings={"api_url": postmark_server.url},
                 secrets={"server_token": postmark.VALID_TOKEN})  # fmt: skip
    add_provider("resend", name="re", priority=4, settings={"api_url": resend_server.url},
                 secrets={"api_key": resend.VALID_KEY})  # fmt: skip

    api = ApiClient.django(client, make_token(account))
    response = api.post(
        "/api/v1/emails",
        {"from": "shop@example.com", "to": "ann@example.org", "subject": "Four", "text": "Hi"},
    )

    assert response.status_code == 201, response.content
    sent = response.json()
    assert (sent["status"], sent["sent_via"]["name"], sent["possible_duplicate"]) == (
        "sent", "re", True,
    )  # fmt: skip
    attempts = [(a["provider"]["kind"], a["outcome"], a["error_code"]) for a in sent["attempts"]]
    assert attempts == [
        ("sendgrid", "provider_error", "401"),
        ("mailgun", "provider_error", "500"),
        ("postmark", "ambiguous", "timeout"),
        ("resend", "sent", ""),
    ]
    email = Email.objects.get(pk=sent["id"])
    stored = list(
        email.attempts.order_by("started_at", "id").values_list("provider_kind", "outcome")
    )
    assert stored == [(kind, outcome) for kind, outcome, _ in attempts]
    [delivered] = resend_server.messages
    assert delivered["subject"] == "Four" and delivered["to"] == ["ann@example.org"]
    assert email.provider_message_id == delivered["_id"]
