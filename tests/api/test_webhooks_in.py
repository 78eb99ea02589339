"""Webhooks in, through the real view: POST /webhooks/in/<token>/ signed as Mailgun signs, stored
once, matched to the exact email of the right account, folded into its delivery state, and
feeding the suppression list that every provider's sends then respect."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.api import ApiClient
from harness.factories import make_account, make_token
from mailer.models import DeliveryEvent, Email, Suppression
from tests.fakes import mailgun

KEY = secrets.token_hex(16)


@pytest.fixture
def gun(add_provider, mailgun_server):
    return add_provider(
        "mailgun",
        name="gun",
        settings={"domain": mailgun.DOMAIN, "api_url": mailgun_server.url},
        secrets={"api_key": mailgun.VALID_KEY, "webhook_signing_key": KEY},
    )


@pytest.fixture
def api(client, account) -> ApiClient:
    return ApiClient.django(client, make_token(account))


def signed(event_data: dict, *, key: str = KEY, token: str | None = None) -> bytes:
    """A Mailgun webhook body: the event, signed over timestamp + token with the signing key."""
    timestamp, token = str(int(time.time())), token or secrets.token_hex(25)
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    signature = {"timestamp": timestamp, "token": token, "signature": digest}
    return json.dumps({"signature": signature, "event-data": event_data}).encode()


def event(kind: str, recipient: str, email_id: int | str, **extra) -> dict:
    data = {
        "event": kind,
        "id": secrets.token_urlsafe(16),
        "timestamp": time.time(),
        "recipient": recipient,
        "message": {"headers": {"message-id": "x@mg.example.com"}},
        "user-variables": {"email_id": str(email_id)},
    }
    data.update(extra)
    return data


def hard_bounce(recipient: str, email_id) -> dict:
    status = {"code": 550, "message": "5.1.1 No such user", "description": ""}
    return event("failed", recipient, email_id, severity="permanent", reason="bounce",
                 **{"delivery-status": status})  # fmt: skip


def post(client, config, body: bytes, content_type: str = "application/json"):
    return client.post(f"/webhooks/in/{config.webhook_token}/", body, content_type=content_type)


def send(api, to: str = "ann@example.org"):
    return api.post("/api/v1/emails", {"from": "shop@example.com", "to": to, "subject": "Hi",
                                       "text": "Hello."})  # fmt: skip


def test_a_signed_bounce_is_stored_once_suppresses_and_no_provider_hears_of_it_again(
    client, api, gun, mailgun_server
):
    sent = send(api).json()
    assert sent["status"] == "sent" and len(mailgun_server.messages) == 1
    body = signed(hard_bounce("Ann@Example.org", sent["id"]))

    answer = post(client, gun, body)
    assert answer.status_code == 200 and answer.json() == {
        "stored": 1, "duplicates": 0, "unmatched": 0,
    }  # fmt: skip
    email = Email.objects.get(pk=sent["id"])
    assert email.delivery == "bounced"
    assert email.recipient_states["ann@example.org"]["state"] == "bounced"
    [row] = DeliveryEvent.objects.all()
    assert (row.email_id, row.attempt.provider_id, row.bounce_type) == (email.pk, gun.pk, "hard")
    [entry] = Suppression.objects.all()
    assert (entry.address, entry.reason, entry.source) == (
        "ann@example.org",
        "bounced",
        "mailgun 'gun'",
    )

    # The same request again is a replay; the same event signed anew is stored once.
    assert post(client, gun, body).status_code == 401
    again = json.loads(body)["event-data"]
    assert post(client, gun, signed(again)).json() == {"stored": 0, "duplicates": 1, "unmatched": 0}
    assert DeliveryEvent.objects.count() == 1

    refused = send(api, to="ANN@example.org")
    assert refused.status_code == 422, refused.content
    problem = refused.json()
    assert problem["suppressed"] == ["ann@example.org"] and problem["email_id"] > sent["id"]
    assert "suppression list" in problem["detail"]
    stored = Email.objects.get(pk=problem["email_id"])
    assert (stored.status, stored.to, stored.suppressed) == ("failed", [], ["ann@example.org"])
    assert not stored.attempts.exists() and len(mailgun_server.messages) == 1


def test_suppressed_recipients_are_left_out_and_the_rest_are_sent(client, api, gun, mailgun_server):
    first = send(api).json()
    post(client, gun, signed(hard_bounce("ann@example.org", first["id"])))
    both = api.post("/api/v1/emails", {"from": "shop@example.com", "subject": "Hi", "text": "x",
                                       "to": ["ann@example.org", "bob@example.org"]})  # fmt: skip
    assert both.status_code == 201 and both.json()["status"] == "sent"
    assert mailgun_server.messages[-1]["to"] == ["bob@example.org"]
    assert Email.objects.get(pk=both.json()["id"]).suppressed == ["ann@example.org"]


def test_deliveries_make_the_summary_and_unknown_messages_are_kept_unmatched(client, api, gun):
    both = {"from": "shop@example.com", "subject": "Hi", "text": "x",
            "to": ["ann@example.org", "Bob <bob@example.org>"]}  # fmt: skip
    sent = api.post("/api/v1/emails", both).json()
    post(client, gun, signed(event("delivered", "ann@example.org", sent["id"])))
    assert Email.objects.get(pk=sent["id"]).delivery == "partially_delivered"
    post(client, gun, signed(event("delivered", "bob@example.org", sent["id"])))
    assert Email.objects.get(pk=sent["id"]).delivery == "delivered"

    answer = post(client, gun, signed(event("delivered", "cy@example.org", "999999")))
    assert answer.json() == {"stored": 1, "duplicates": 0, "unmatched": 1}
    assert DeliveryEvent.objects.get(recipient="cy@example.org").email is None


def test_an_event_naming_another_accounts_email_matches_nothing(client, gun, add_provider):
    other = make_account("mallory")
    theirs = Email.objects.create(account=other, from_email="m@example.com", to=["v@example.org"],
                                  subject="Theirs", status="sent")  # fmt: skip
    answer = post(client, gun, signed(hard_bounce("v@example.org", theirs.pk)))
    assert answer.json()["unmatched"] == 1
    assert not theirs.events.exists() and Email.objects.get(pk=theirs.pk).delivery == "unknown"
    assert not Suppression.objects.filter(account=other).exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[]", "application/json", 400),
        (b"mandrill_events=[]", "application/x-www-form-urlencoded", 400),
        (json.dumps({"event-data": {}}).encode(), "application/json", 401),
    ],
)
def test_bad_requests_are_refused_and_store_nothing(client, gun, body, content_type, status):
    answer = post(client, gun, body, content_type)
    assert answer.status_code == status, answer.content
    assert answer.json()["detail"]
    assert not DeliveryEvent.objects.exists()


def test_forged_and_unknown_and_oversized_requests(client, gun, settings):
    forged = signed(hard_bounce("ann@example.org", 1), key="not-the-key")
    assert post(client, gun, forged).status_code == 401
    assert (
        client.post("/webhooks/no-such-token/", b"{}", content_type="application/json").status_code
        == 404
    )
    assert client.head(f"/webhooks/in/{gun.webhook_token}/").status_code == 200
    settings.WEBHOOK_MAX_BYTES = 100
    assert post(client, gun, b"{" + b" " * 200 + b"}").status_code == 413
    assert not DeliveryEvent.objects.exists() and not Suppression.objects.exists()


def test_smtp_has_no_webhook_url_and_the_api_shows_each_providers(api, gun, add_provider):
    relay = add_provider("smtp", name="relay", settings={"host": "127.0.0.1", "port": 25,
                                                         "security": "none"})  # fmt: skip
    listed = {p["name"]: p["webhook_url"] for p in api.get("/api/v1/providers").json()["results"]}
    assert listed["gun"] == f"http://testserver/webhooks/in/{gun.webhook_token}/"
    assert listed["relay"] is None
    assert relay.webhook_token != gun.webhook_token


def test_an_ambiguous_attempt_is_settled_by_its_providers_event(
    client, api, gun, mailgun_server, add_provider, smtp_sink
):
    """Mailgun took the request and never answered (ambiguous); the SMTP provider after it sent
    the email. Until Mailgun says something of it nobody knows whether it went out twice; its
    'delivered' shows it did: two copies, shown, not guessed."""
    relay = {"host": "127.0.0.1", "port": smtp_sink.port, "security": "none"}
    add_provider("smtp", name="relay", priority=200, settings=relay)
    mailgun_server.mode = "stall"
    sent = send(api).json()
    assert (sent["status"], sent["possible_duplicate"]) == ("sent", True)
    assert [a["outcome"] for a in sent["attempts"]] == ["ambiguous", "sent"]
    assert api.get(f"/api/v1/emails/{sent['id']}").json()["copies_sent"] is None

    post(client, gun, signed(event("delivered", "ann@example.org", sent["id"])))

    settled = api.get(f"/api/v1/emails/{sent['id']}").json()
    assert settled["copies_sent"] == 2
    [reported] = settled["events"]
    assert (reported["type"], reported["provider"]["name"]) == ("delivered", "gun")


def _webhook_secrets() -> dict[str, tuple[dict, dict]]:
    """A provider config of each kind that posts webhooks, with every webhook secret set."""
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "ses": ({"region": "eu-west-1"}, {"access_key_id": "a", "secret_access_key": "b"}),
        "sendgrid": ({}, {"api_key": "k", "webhook_public_key": base64.b64encode(public).decode()}),
        "mailgun": ({"domain": "mg.example.com"}, {"api_key": "k", "webhook_signing_key": KEY}),
        "mandrill": ({}, {"api_key": "k", "webhook_key": "mk"}),
        "postmark": ({}, {"server_token": "t", "webhook_username": "u", "webhook_password": "p"}),
        "resend": (
            {},
            {"api_key": "k", "webhook_secret": "whsec_" + base64.b64encode(b"k" * 24).decode()},
        ),
    }


JUNK = [
    (b"", "application/json"),
    (b"\x00\xff\xfe", "application/json"),
    (b"{}", "application/json"),
    (b"[]", "application/json"),
    (b'{"a":', "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b"mandrill_events=%5B%7B%7D%5D&x=1", "application/x-www-form-urlencoded"),
    (b"<xml/>", "text/xml"),
    (json.dumps({"Type": "Notification", "Message": "x"}).encode(), "text/plain"),
]


@pytest.mark.parametrize("kind", ["ses", "sendgrid", "mailgun", "mandrill", "postmark", "resend"])
def test_junk_to_every_kinds_webhook_is_a_4xx_and_stores_nothing(client, add_provider, kind):
    settings_, secrets_ = _webhook_secrets()[kind]
    config = add_provider(kind, name=kind, settings=settings_, secrets=secrets_)
    for body, content_type in JUNK:
        answer = post(client, config, body, content_type)
        assert answer.status_code in (400, 401), (kind, body[:20], answer.status_code)
        assert answer.json()["detail"]
    assert not DeliveryEvent.objects.exists()


@pytest.mark.parametrize("token", ["a%00b", "x" * 300, "%C3%A9t%C3%A9", "..%2F..%2Fetc"])
def test_a_webhook_url_that_no_token_could_make_is_404_on_any_database(client, token):
    answer = client.post(f"/webhooks/in/{token}/", b"{}", content_type="application/json")
    assert answer.status_code == 404


def test_digits_that_are_not_ascii_are_never_taken_for_ids(client, account, api, gun):
    """'²' is a digit to str.isdigit() and no number to int(): every id read checks ASCII."""
    body = {"from": "shop@example.com", "to": "a@example.org", "subject": "x", "text": "x"}
    assert api.post("/api/v1/emails", {**body, "provider": "²"}).status_code == 422
    client.force_login(account)
    assert client.get("/emails/", {"page": "²"}).status_code == 200
    assert client.get("/suppressions/", {"page": "²"}).status_code == 200
    assert (
        post(client, gun, signed(event("delivered", "a@example.org", "²"))).json()["unmatched"] == 1
    )
