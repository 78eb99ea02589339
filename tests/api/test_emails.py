"""/api/v1/emails through the real Django stack, real Redis and real SMTP/SendGrid stand-ins."""

from __future__ import annotations

import base64
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer import listcache, selectors
from mailer.models import Email
from mailer.services import email_create, token_authenticate, token_create, token_revoke
from tests.conftest import outgoing

pytestmark = pytest.mark.django_db

EMAIL = {"from": "Shop <shop@example.com>", "to": "ann@example.org", "subject": "Your order",
         "text": "Thanks for your order."}  # fmt: skip


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider(
        "smtp",
        name="sink",
        settings=loopback_smtp(smtp_sink.port),
    )


def test_send_returns_201_with_the_stored_email(api, sink_provider, smtp_sink):
    pdf = b"%PDF-1.4 binary \x00\xff"
    response = api.post("/api/v1/emails", {
        **EMAIL, "to": ["ann@example.org", "Bo <bo@example.org>"], "cc": "cc@example.org",
        "bcc": ["hidden@example.org"], "reply_to": "help@example.com", "html": "<p>Thanks</p>",
        "headers": {"X-Order": "42"}, "metadata": {"order": 42},
        "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf",
                         "content": base64.b64encode(pdf).decode()}],
    })  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "sent"
    assert body["from"] == "Shop <shop@example.com>"
    assert body["to"] == ["ann@example.org", "Bo <bo@example.org>"]
    assert body["cc"] == ["cc@example.org"] and body["bcc"] == ["hidden@example.org"]
    assert body["sent_via"] == {"id": sink_provider.pk, "kind": "smtp", "name": "sink"}
    assert body["attachments"] == [
        {"filename": "invoice.pdf", "content_type": "application/pdf", "size": len(pdf)}
    ]
    assert body["metadata"] == {"order": 42}
    assert [a["outcome"] for a in body["attempts"]] == ["sent"]
    assert Email.objects.get(pk=body["id"]).status == "sent"
    [received] = smtp_sink.received
    message = received.message
    assert message["X-Order"] == "42"
    [attachment] = message.iter_attachments()
    assert attachment.get_content() == pdf
    assert sorted(received.rcpt_tos) == [
        "ann@example.org",
        "bo@example.org",
        "cc@example.org",
        "hidden@example.org",
    ]


def test_send_fails_over_and_answers_502_when_nobody_accepts(api, add_provider, closed_port):
    add_provider("smtp", name="dead", settings=loopback_smtp(closed_port))
    response = api.post("/api/v1/emails", EMAIL)
    assert response.status_code == 502
    body = response.json()
    assert body["status"] == "failed"
    assert "cannot connect" in body["failure_reason"]
    assert [(a["outcome"], a["error_code"]) for a in body["attempts"]] == [
        ("provider_error", "connect")
    ]


def test_provider_picks_the_first_to_try(api, add_provider, smtp_server, sendgrid_server):
    sink = smtp_server()
    add_provider(
        "smtp",
        name="primary",
        settings=loopback_smtp(sink.port),
    )
    sendgrid = add_provider(
        "sendgrid",
        name="sg",
        settings={"host": sendgrid_server.url},
        secrets={"api_key": "SG.test-key.stand-in"},
    )
    for ref in (sendgrid.pk, "sg", "sendgrid"):
        body = api.post("/api/v1/emails", {**EMAIL, "provider": ref}).json()
        assert body["sent_via"]["name"] == "sg"
        assert body["requested_provider"]["id"] == sendgrid.pk
    assert len(sendgrid_server.messages) == 3
    assert sink.received == []


def test_unknown_provider_is_422_naming_the_choices(api, sink_provider):
    response = api.post("/api/v1/emails", {**EMAIL, "provider": "mailchimp"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"] == [{"field": "provider", "message": "unknown provider"}]
    assert f"{sink_provider.pk} ('sink', smtp)" in problem["detail"]
    assert not Email.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**EMAIL, "to": [f"r{i}@example.org" for i in range(51)]}, "to"),
        ({**EMAIL, "to": "ann@example.org\r\nBcc: evil@example.org"}, "to"),
        ({**EMAIL, "from": "not-an-address"}, "from"),
        ({**EMAIL, "headers": {"X-Evil": "a\nBcc: evil@example.org"}}, "headers"),
        ({**EMAIL, "subject": "", "text": ""}, "subject"),
        ({**EMAIL, "text": "", "html": ""}, "text"),
        (
            {**EMAIL, "attachments": [{"filename": "a.bin", "content": "%%%not base64"}]},
            "attachments[0].content",
        ),
        ({**EMAIL, "surprise": 1}, "surprise"),
        ({**EMAIL, "to": 42}, "to"),
        ({key: value for key, value in EMAIL.items() if key != "from"}, "from"),
    ],
)
def test_bad_input_is_422_naming_the_field(api, sink_provider, payload, field):
    response = api.post("/api/v1/emails", payload)
    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [error["field"] for error in problem["errors"]], problem
    assert not Email.objects.exists()


def test_malformed_json_and_wrong_content_type(api, client, sink_provider):
    response = api.post("/api/v1/emails", "{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    response = client.post("/api/v1/emails", {"to": "x"}, HTTP_AUTHORIZATION=f"Bearer {api.token}")
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_body_over_the_limit_is_413_before_parsing(api, sink_provider, settings):
    settings.MAX_MESSAGE_BYTES = 2000
    response = api.post("/api/v1/emails", {**EMAIL, "text": "x" * 3000})
    assert response.status_code == 413
    assert "2000" in response.json()["detail"]
    assert not Email.objects.exists()


def test_tokens_missing_unknown_or_revoked_are_401(client, api):
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer es_nope"},
        {"HTTP_AUTHORIZATION": "Token abc"},
    ):
        response = client.get("/api/v1/emails", **headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["title"] == "Unauthorized"
    token_revoke(token=token_authenticate(raw=api.token))
    assert api.get("/api/v1/emails").status_code == 401


def test_list_pages_newest_first_with_filters(api, sink_provider, add_provider, closed_port):
    ids = [
        api.post("/api/v1/emails", {**EMAIL, "subject": f"n{i}"}).json()["id"] for i in range(12)
    ]
    page1 = api.get("/api/v1/emails").json()
    assert page1["count"] == 12 and page1["page_size"] == 10
    assert [e["id"] for e in page1["results"]] == ids[::-1][:10]
    assert page1["previous"] is None and "page=2" in page1["next"]
    page2 = api.get("/api/v1/emails", {"page": 2}).json()
    assert [e["id"] for e in page2["results"]] == ids[::-1][10:]
    assert page2["next"] is None and "page=1" in page2["previous"]
    assert len(api.get("/api/v1/emails", {"page_size": 5}).json()["results"]) == 5
    assert api.get("/api/v1/emails", {"page": 9}).json()["results"] == []

    sink_provider.enabled = False
    sink_provider.save()
    dead = add_provider("smtp", name="dead", settings=loopback_smtp(closed_port))
    failed_id = api.post("/api/v1/emails", EMAIL).json()["id"]
    failed = api.get("/api/v1/emails", {"status": "failed"}).json()
    assert [e["id"] for e in failed["results"]] == [failed_id]
    by_provider = api.get("/api/v1/emails", {"provider": sink_provider.pk}).json()
    assert by_provider["count"] == 12
    assert api.get("/api/v1/emails", {"provider": dead.pk}).json()["count"] == 0


def test_list_filters_by_delivery(api, account, sink_provider):
    ids = [api.post("/api/v1/emails", EMAIL).json()["id"] for _ in range(3)]
    Email.objects.filter(pk=ids[0]).update(delivery="bounced")
    Email.objects.filter(pk=ids[1]).update(delivery="delivered")
    listcache.bump(account.pk)  # as the events service does when it folds events in
    bounced = api.get("/api/v1/emails", {"delivery": "bounced"}).json()
    assert [e["id"] for e in bounced["results"]] == [ids[0]] and bounced["count"] == 1
    assert bounced["results"][0]["delivery"] == "bounced"
    unknown = api.get("/api/v1/emails", {"delivery": "unknown", "status": "sent"}).json()
    assert [e["id"] for e in unknown["results"]] == [ids[2]]
    assert api.get("/api/v1/emails", {"delivery": "complained"}).json()["count"] == 0
    assert api.get("/api/v1/emails").json()["count"] == 3
    delivered = api.get("/api/v1/emails", {"delivery": "delivered", "page_size": 1}).json()
    assert delivered["next"] is None and [e["id"] for e in delivered["results"]] == [ids[1]]


@pytest.mark.parametrize(
    "query",
    [{"page": 0}, {"page_size": 101}, {"page_size": 0}, {"status": "lost"}, {"page": "x"},
     {"delivery": "lost"}, {"delivery": "partially delivered"}],
)  # fmt: skip
def test_bad_list_queries_are_422(api, query):
    response = api.get("/api/v1/emails", query)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == next(iter(query))


def test_a_new_send_shows_on_the_very_next_list_call(api, sink_provider):
    assert api.get("/api/v1/emails").json()["count"] == 0
    email_id = api.post("/api/v1/emails", EMAIL).json()["id"]
    assert [e["id"] for e in api.get("/api/v1/emails").json()["results"]] == [email_id]


def test_the_cache_hit_path_runs_no_sql(api, account, sink_provider, django_assert_num_queries):
    api.post("/api/v1/emails", EMAIL)
    first = selectors.email_list(account_id=account.pk)
    with django_assert_num_queries(0):
        assert selectors.email_list(account_id=account.pk) == first
    # Through the API too: the token was looked up by the request before (remembered for
    # TOKEN_CACHE_SECONDS), and the page comes from the cache.
    api.get("/api/v1/emails")
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/emails").status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_api_answers_from_the_database_when_redis_is_down(
    api, sink_provider, settings, closed_port, smtp_sink, caplog
):
    settings.CACHES = {"default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }}  # fmt: skip
    caplog.set_level(logging.WARNING)
    response = api.post("/api/v1/emails", EMAIL)
    assert response.status_code == 201
    listing = api.get("/api/v1/emails")
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    assert "cache unreachable" in caplog.text
    assert len(smtp_sink.received) == 1


def test_detail_and_other_accounts(api, sink_provider, client, other_account):
    email_id = api.post("/api/v1/emails", EMAIL).json()["id"]
    detail = api.get(f"/api/v1/emails/{email_id}").json()
    assert detail["id"] == email_id and detail["text"] == EMAIL["text"]
    assert detail["attempts"][0]["provider"]["name"] == "sink"
    other = ApiClient.django(client, make_token(other_account))
    response = other.get(f"/api/v1/emails/{email_id}")
    assert response.status_code == 404
    assert response.json()["title"] == "Not found"
    assert other.get("/api/v1/emails").json()["count"] == 0
    assert api.get("/api/v1/emails/999999").status_code == 404


def test_idempotency_key_replays_the_first_answer(api, sink_provider, smtp_sink):
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/api/v1/emails", EMAIL, headers=headers)
    again = api.post("/api/v1/emails", EMAIL, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(smtp_sink.received) == 1
    assert Email.objects.count() == 1

    different = api.post("/api/v1/emails", {**EMAIL, "subject": "Other"}, headers=headers)
    assert different.status_code == 422
    assert "different request" in different.json()["detail"]

    # Another account may use the same key for its own email.
    assert (
        api.post("/api/v1/emails", EMAIL, headers={"Idempotency-Key": "order-43"}).status_code
        == 201
    )


def test_idempotency_key_in_flight_is_409(api, account, sink_provider):
    from mailer.api.emails import EmailIn, _outgoing
    from mailer.send_request import request_fingerprint

    fingerprint = request_fingerprint(_outgoing(account, EmailIn.model_validate(EMAIL)), None)
    email, _ = email_create(
        account=account, outgoing=outgoing(), idempotency_key="k1", fingerprint=fingerprint
    )
    response = api.post("/api/v1/emails", EMAIL, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 409
    assert response.json()["email_id"] == email.pk


def test_idempotency_key_expires_after_24_hours(api, sink_provider, smtp_sink):
    headers = {"Idempotency-Key": "daily"}
    first_id = api.post("/api/v1/emails", EMAIL, headers=headers).json()["id"]
    Email.objects.filter(pk=first_id).update(
        created_at=Email.objects.get(pk=first_id).created_at - timedelta(hours=25)
    )
    second = api.post("/api/v1/emails", EMAIL, headers=headers)
    assert second.status_code == 201
    assert second.json()["id"] != first_id
    assert len(smtp_sink.received) == 2


def test_idempotency_key_too_long(api, sink_provider):
    response = api.post("/api/v1/emails", EMAIL, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_rate_limit_per_account_with_retry_after(api, account, client, settings, other_account):
    settings.API_RATE_LIMIT = "3/m"
    assert [api.get("/api/v1/emails").status_code for _ in range(3)] == [200, 200, 200]
    limited = api.get("/api/v1/emails")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "Retry after" in limited.json()["detail"]
    # Counted per account: another account still gets through, another token of this one not.
    assert (
        ApiClient.django(client, make_token(other_account)).get("/api/v1/emails").status_code == 200
    )
    _, raw = token_create(account=account, name="second")
    assert client.get("/api/v1/emails", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 429


def test_openapi_and_docs_are_served_locally(client):
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/emails" in schema["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
