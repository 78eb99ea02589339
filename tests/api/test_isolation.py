"""Tenant isolation: account B tries every endpoint on account A's objects and never gets in."""

from __future__ import annotations

import re

import pytest

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer.models import Suppression
from mailer.services.suppressions import suppression_add
from mailer.services.templates import template_create
from mailer.services.webhooks_out import webhook_endpoint_create, webhooks_emit

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim(api, account, add_provider, smtp_sink):
    provider = add_provider("smtp", name="a-sink", settings=loopback_smtp(smtp_sink.port))
    email_id = api.post(
        "/api/v1/emails",
        {
            "from": "a@example.com",
            "to": "x@example.org",
            "subject": "A's secret",
            "text": "private",
        },
    ).json()["id"]
    endpoint, _ = webhook_endpoint_create(account=account, url="http://127.0.0.1:9/a-hook")
    [message] = webhooks_emit(account, "email.sent", {"email_id": email_id})
    suppression_add(account=account, address="a-only@example.org")
    template_create(account=account, name="a-template", subject="A's secret", text="private")
    return {"provider_id": provider.pk, "email_id": email_id, "webhook_id": endpoint.pk,
            "delivery": message.pk, "address": "a-only%40example.org",
            "name": "a-template"}  # fmt: skip


def operations(client) -> list[tuple[str, str]]:
    schema = client.get("/api/v1/openapi.json").json()
    return [
        (method, path) for path, item in schema["paths"].items() for method in item if "{" in path
    ]


def test_every_api_endpoint_with_an_id_is_404_for_another_account(
    client, victim, other_account, smtp_sink
):
    intruder = ApiClient.django(client, make_token(other_account))
    ops = operations(client)
    assert {path for _, path in ops} >= {
        "/api/v1/emails/{email_id}",
        "/api/v1/providers/{provider_id}",
        "/api/v1/providers/{provider_id}/test",
        "/api/v1/webhooks/{webhook_id}/deliveries/{delivery}/retry",
        "/api/v1/templates/{name}",
        "/api/v1/templates/{name}/render",
    }
    for method, path in ops:
        url = re.sub(r"\{(\w+)\}", lambda m: str(victim[m.group(1)]), path)
        if method == "get":
            response = intruder.get(url)
        elif method == "delete":
            response = intruder.delete(url)
        elif method == "patch":  # a field each PATCH takes
            body = {"subject": "x"} if "/templates/" in path else {"enabled": False}
            response = intruder.patch(url, body)
        elif method == "put":
            response = intruder.put(url, {"subject": "x", "text": "y"})
        elif path.endswith("/render"):
            response = intruder.post(url, {"variables": {}})
        else:
            response = intruder.post(url, {"to": "intruder@example.org"})
        assert response.status_code == 404, (method, path, response.content)
        assert b"A's secret" not in response.content and b"a-sink" not in response.content
    # Nothing changed hands and nothing was sent on A's provider by B.
    assert len(smtp_sink.received) == 1
    assert Suppression.objects.filter(address="a-only@example.org").exists()


def test_lists_and_sends_never_reach_another_account(
    client, api, victim, other_account, add_provider, smtp_server
):
    intruder = ApiClient.django(client, make_token(other_account))
    assert intruder.get("/api/v1/emails").json()["count"] == 0
    assert intruder.get("/api/v1/providers").json()["count"] == 0
    # Naming A's provider in B's send is an unknown provider, not a way to borrow it.
    response = intruder.post(
        "/api/v1/emails",
        {
            "from": "b@example.com",
            "to": "y@example.org",
            "subject": "Hi",
            "text": "Hi",
            "provider": victim["provider_id"],
        },
    )
    assert response.status_code == 422
    assert "a-sink" not in response.content.decode()
    # The original contract: B's token lists only B's emails.
    listing = client.get("/view_sent_emails/", {"TOKEN": intruder.token}).json()
    assert listing["count"] == 0
    assert client.get("/view_sent_emails/", {"TOKEN": api.token}).json()["count"] == 1
