"""/api/v1/webhooks through the test client with a real token: endpoints (the secret shown once,
stored encrypted), URL and event-type validation, rotation, recent deliveries and "send again",
every query scoped to the account."""

from __future__ import annotations

import base64

import pytest
from django.db import connection

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer import crypto, services
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.services.webhooks_out import MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT, webhooks_sweep
from tests.conftest import outgoing
from tests.fakes.webhook_receiver import receiver_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks"


@pytest.fixture
def other_api(client, other_account) -> ApiClient:
    return ApiClient.django(client, make_token(other_account))


def problem_fields(response) -> dict[str, str]:
    assert response["Content-Type"] == "application/problem+json", response.content
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def create(api, hook, **body) -> dict:
    created = api.post(URL, {"url": hook.url, **body})
    assert created.status_code == 201, created.content
    hook.secret = created.json()["secret"]
    return created.json()


def test_create_shows_the_secret_once_and_stores_it_encrypted(api, receiver):
    hook = receiver()
    data = create(api, hook, event_types=["email.bounced", "email.sent"])
    secret = data.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert data["url"] == hook.url and data["enabled"] is True
    assert data["event_types"] == ["email.sent", "email.bounced"]  # the documented order
    assert data["disabled_reason"] == "" and data["failing_since"] is None
    api.bodies.clear()
    assert api.get(f"{URL}/{data['id']}").json() == data
    assert api.get(URL).json() == {"count": 1, "results": [data]}
    api.assert_never_returned(secret)
    with connection.cursor() as cursor:
        table = WebhookEndpoint._meta.db_table
        cursor.execute(f"SELECT secret_encrypted FROM {table} WHERE id = %s", [data["id"]])
        (stored,) = cursor.fetchone()
    assert secret not in stored and crypto.decrypt_json(stored) == {"secret": secret}


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"url": "https://127.0.0.1/in"}, "url", "loopback"),
        ({"url": "https://192.168.1.10/in"}, "url", "private"),
        ({"url": "http://93.184.215.14/in"}, "url", "https"),
        ({"url": "https://me:pw@93.184.215.14/in"}, "url", "credentials"),
        ({"url": "https://93.184.215.14/in#x"}, "url", "fragment"),
        ({"url": "https://93.184.215.14:99999/in"}, "url", "port"),
        ({"url": "not a url"}, "url", "spaces"),
        (
            {"url": "https://93.184.215.14/in", "event_types": ["email.sent", "email.lost", "x"]},
            "event_types",
            "email.lost, x",
        ),
    ],
)
def test_bad_fields_are_422_naming_them(api, settings, body, field, says):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    refused = api.post(URL, body)
    assert refused.status_code == 422, refused.content
    assert says in problem_fields(refused)[field]
    assert not WebhookEndpoint.objects.exists()


def test_http_and_loopback_are_allowed_where_private_hosts_are(api):
    assert api.post(URL, {"url": "http://127.0.0.1:9/in"}).status_code == 201


def test_patch_changes_what_is_given_and_checks_it(api, settings, receiver):
    data = create(api, receiver())
    path = f"{URL}/{data['id']}"
    changed = api.patch(path, {"event_types": ["email.failed"], "enabled": False})
    assert changed.status_code == 200, changed.content
    assert changed.json()["event_types"] == ["email.failed"] and not changed.json()["enabled"]
    assert changed.json()["disabled_reason"] == "Disabled by the account."
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    refused = api.patch(path, {"url": "https://10.0.0.1/x", "event_types": ["nope"]})
    assert refused.status_code == 422 and set(problem_fields(refused)) == {"url", "event_types"}
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = True
    enabled = api.patch(path, {"enabled": True, "event_types": []}).json()
    assert enabled["enabled"] and enabled["disabled_reason"] == "" and enabled["event_types"] == []
    assert api.patch(path, {"secret": "mine"}).status_code == 422  # not a field


def test_rotate_signs_with_the_new_secret_only(api, account, receiver):
    hook = receiver()
    data = create(api, hook)
    old = hook.secret
    rotated = api.post(f"{URL}/{data['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["id"] == data["id"]
    services.webhooks_emit(account, "email.sent", {"email_id": 1})
    webhooks_sweep(inline=True)
    assert len(hook.refused) == 1 and hook.arrivals == []  # the receiver still has the old one
    hook.secret = new
    message = WebhookMessage.objects.get()
    assert api.post(f"{URL}/{data['id']}/deliveries/{message.msg_id}/retry").status_code == 202
    webhooks_sweep(inline=True)
    assert [a.webhook_id for a in hook.arrivals] == [message.msg_id]


def test_deliveries_are_listed_newest_first_and_sent_again(api, account, smtp_sink, receiver):
    hook = receiver(status=500)
    data = create(api, hook)
    services.provider_config_create(
        account=account, kind="smtp", name="sink", settings=loopback_smtp(smtp_sink.port)
    )
    for n in range(3):
        services.email_send(account=account, outgoing=outgoing(subject=f"n{n}"))
    webhooks_sweep(inline=True)  # the first fails; the endpoint's others wait for the next pass
    page = api.get(f"{URL}/{data['id']}/deliveries", {"page_size": 2}).json()
    assert page["count"] == 3 and page["page"] == 1 and page["previous"] is None
    assert "page=2" in page["next"]
    first, second = page["results"]
    assert first["id"] > second["id"] and first["event_type"] == "email.sent"
    oldest = api.get(page["next"].split("testserver")[1]).json()["results"][0]
    assert (oldest["status"], oldest["tries"], oldest["last_status_code"]) == ("pending", 1, 500)
    assert oldest["last_error"] == "HTTP 500" and oldest["next_attempt_at"]
    assert first["tries"] == 0 and first["last_status_code"] is None

    hook.status = 200
    again = api.post(f"{URL}/{data['id']}/deliveries/{oldest['id']}/retry")
    assert again.status_code == 202, again.content
    assert (
        again.json()["webhook_id"] == oldest["webhook_id"] and again.json()["status"] == "pending"
    )
    webhooks_sweep(inline=True)
    after = api.get(f"{URL}/{data['id']}/deliveries").json()["results"]
    done = next(r for r in after if r["id"] == oldest["id"])
    assert (done["status"], done["tries"], done["last_status_code"]) == ("delivered", 2, 200)
    assert done["delivered_at"]
    assert [a.webhook_id for a in hook.arrivals].count(oldest["webhook_id"]) == 2
    assert api.post(f"{URL}/{data['id']}/deliveries/msg_nope/retry").status_code == 404


def test_send_again_is_refused_while_the_endpoint_is_disabled(api, account, receiver):
    data = create(api, receiver())
    [message] = services.webhooks_emit(account, "email.sent", {"email_id": 1})
    api.patch(f"{URL}/{data['id']}", {"enabled": False})
    refused = api.post(f"{URL}/{data['id']}/deliveries/{message.pk}/retry")
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]


def test_delete_removes_the_endpoint_and_its_messages(api, account, receiver):
    data = create(api, receiver())
    services.webhooks_emit(account, "email.sent", {"email_id": 1})
    assert api.delete(f"{URL}/{data['id']}").status_code == 204
    assert api.get(f"{URL}/{data['id']}").status_code == 404
    assert not WebhookMessage.objects.exists()


def test_an_account_has_at_most_its_limit_of_endpoints(api):
    for n in range(MAX_WEBHOOK_ENDPOINTS_PER_ACCOUNT):
        assert api.post(URL, {"url": f"http://127.0.0.1:9/{n}"}).status_code == 201
    refused = api.post(URL, {"url": "http://127.0.0.1:9/one-more"})
    assert refused.status_code == 409 and "delete one" in refused.json()["detail"]


def test_another_accounts_endpoints_are_not_found(api, other_api, other_account, receiver):
    theirs = create(other_api, receiver())
    [message] = services.webhooks_emit(other_account, "email.sent", {"email_id": 1})
    path = f"{URL}/{theirs['id']}"
    assert api.get(URL).json() == {"count": 0, "results": []}
    for method, suffix in [("get", ""), ("patch", ""), ("delete", ""), ("post", "/rotate-secret"),
                           ("get", "/deliveries"),
                           ("post", f"/deliveries/{message.pk}/retry")]:  # fmt: skip
        answer = getattr(api, method)(path + suffix)
        assert answer.status_code == 404, (method, suffix, answer.content)
    assert WebhookEndpoint.objects.get(pk=theirs["id"]).enabled
    assert api.get(f"{URL}/{2**63}").status_code == 422  # past any id: a 422, not a crash


def test_the_openapi_document_lists_the_webhook_endpoints(api):
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/webhooks", "/api/v1/webhooks/{webhook_id}",
            "/api/v1/webhooks/{webhook_id}/rotate-secret",
            "/api/v1/webhooks/{webhook_id}/deliveries",
            "/api/v1/webhooks/{webhook_id}/deliveries/{delivery}/retry"} <= set(paths)  # fmt: skip
