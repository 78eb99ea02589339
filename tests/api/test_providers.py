"""/api/v1/providers through the test client with a real token, against the real stand-ins."""

from __future__ import annotations

import pytest
from django.db import connection

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer import crypto, services
from mailer.delivery.breaker import breaker
from mailer.models import DeliveryAttempt, Email, ProviderConfig
from tests.conftest import outgoing
from tests.fakes.sendgrid import VALID_KEY
from tests.fakes.ses import DUMMY_KEYS, REGION

pytestmark = pytest.mark.django_db

URL = "/api/v1/providers"
PASSWORD = "s3cret-Passw0rd-value"
API_KEY = "SG.never-shown-key-0123456789"
AWS_SECRET = "aws-secret-access-key-never-shown"


@pytest.fixture
def other_api(client, other_account) -> ApiClient:
    return ApiClient.django(client, make_token(other_account))


def smtp_body(port: int = 2525, **overrides) -> dict:
    body = {
        "kind": "smtp",
        "name": "relay",
        "settings": loopback_smtp(port),
        "secrets": {"username": "mailer", "password": PASSWORD},
    }
    return {**body, **overrides}


def fields(response) -> set[str]:
    assert response["Content-Type"] == "application/problem+json"
    return {error["field"] for error in response.json()["errors"]}


# Create and read --------------------------------------------------------------------------


def test_create_smtp_and_read_it_back_without_secrets(api):
    created = api.post(URL, smtp_body())
    assert created.status_code == 201, created.content
    data = created.json()
    assert created["Location"].endswith(f"{URL}/{data['id']}")
    assert data["kind"] == "smtp" and data["name"] == "relay" and data["enabled"] is True
    assert data["settings"] == loopback_smtp(2525)
    assert data["secrets_set"] == ["password", "username"]
    assert "secrets" not in data
    assert data["circuit"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "last_error": "",
        "last_error_at": None,
        "open_until": None,
        "paused_until": None,
    }
    assert api.get(f"{URL}/{data['id']}").json() == data
    assert api.get(URL).json() == {"count": 1, "results": [data]}
    api.assert_never_returned(PASSWORD)


def test_create_ses_and_sendgrid_with_defaults_filled(api):
    ses = api.post(
        URL,
        {
            "kind": "ses",
            "name": "aws",
            "settings": {"region": "eu-west-1"},
            "secrets": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": AWS_SECRET},
        },
    )
    assert ses.status_code == 201, ses.content
    assert ses.json()["settings"] == {"region": "eu-west-1"}
    assert ses.json()["secrets_set"] == ["access_key_id", "secret_access_key"]
    sendgrid = api.post(
        URL,
        {
            "kind": "sendgrid",
            "name": "sg",
            "settings": {"host": "https://api.eu.sendgrid.com/"},
            "secrets": {"api_key": API_KEY},
        },
    )
    assert sendgrid.status_code == 201, sendgrid.content
    assert sendgrid.json()["settings"] == {"host": "https://api.eu.sendgrid.com"}
    assert sendgrid.json()["secrets_set"] == ["api_key"]
    smtp = api.post(URL, {"kind": "smtp", "name": "tls", "settings": {"host": "mx.example"}})
    assert smtp.json()["settings"] == {"host": "mx.example", "port": 587, "security": "starttls"}
    ssl_settings = {"host": "[::1]", "security": "ssl"}
    ssl = api.post(URL, {"kind": "smtp", "name": "ssl", "settings": ssl_settings})
    assert ssl.json()["settings"] == {"host": "::1", "port": 465, "security": "ssl"}
    assert ssl.json()["secrets_set"] == []
    api.assert_never_returned(AWS_SECRET, API_KEY, "AKIAEXAMPLE")


def test_secrets_are_encrypted_at_rest(api):
    provider_id = api.post(URL, smtp_body()).json()["id"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT secrets_encrypted FROM {ProviderConfig._meta.db_table} WHERE id = %s",
            [provider_id],
        )
        (stored,) = cursor.fetchone()
    assert PASSWORD not in stored and "mailer" not in stored
    assert crypto.decrypt_json(stored) == {"username": "mailer", "password": PASSWORD}


def test_list_is_in_failover_order(api):
    for name, priority in (("c", 30), ("a", 10), ("b2", 20), ("b1", 20)):
        api.post(URL, smtp_body(name=name, priority=priority))
    results = api.get(URL).json()["results"]
    assert [r["name"] for r in results] == ["a", "b2", "b1", "c"]  # same priority: by id
    api.post(URL, smtp_body(name="last"))
    assert api.get(URL).json()["results"][-1]["priority"] == 40


def test_requires_a_token(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


# Validation -------------------------------------------------------------------------------

INVALID = [
    ("smtp", {}, {}, {"settings.host"}),
    (
        "smtp",
        {"host": "smtp://x.example", "port": 0, "security": "tls", "tls": True},
        {"password": 5},
        {"settings.host", "settings.port", "settings.security", "settings.tls", "secrets.password"},
    ),
    (
        "smtp",
        {"host": "x.example", "port": "587"},
        {"username": "u"},
        {"settings.port", "secrets.password"},
    ),
    (
        "smtp",
        {"host": "x.example"},
        {"token": "t", "username": "a\r\nb", "password": "p"},
        {"secrets.token", "secrets.username"},
    ),
    ("ses", {}, {}, {"settings.region", "secrets.access_key_id", "secrets.secret_access_key"}),
    (
        "ses",
        {"region": "Europe", "endpoint_url": "ftp://x.example"},
        {"access_key_id": "k", "secret_access_key": ""},
        {"settings.region", "settings.endpoint_url", "secrets.secret_access_key"},
    ),
    (
        "ses",
        {"region": "eu-west-1", "endpoint_url": "https://u:p@x.example"},
        DUMMY_KEYS,
        {"settings.endpoint_url"},
    ),
    ("sendgrid", {"host": "api.sendgrid.com"}, {}, {"settings.host", "secrets.api_key"}),
    ("sendgrid", {"domain": "x"}, {"api_key": ["k"]}, {"settings.domain", "secrets.api_key"}),
]


@pytest.mark.parametrize(("kind", "settings_", "secrets", "expected"), INVALID)
def test_invalid_settings_and_secrets_name_each_field(api, kind, settings_, secrets, expected):
    body = {"kind": kind, "name": "p", "settings": settings_, "secrets": secrets}
    response = api.post(URL, body)
    assert response.status_code == 422, response.content
    assert fields(response) == expected
    for field in expected:
        assert field in response.json()["detail"]
    assert not ProviderConfig.objects.exists()


@pytest.mark.parametrize("kind", ["gopher", "", "SMTP"])
def test_unknown_kinds_say_which_are_available(api, kind):
    response = api.post(URL, {"kind": kind, "name": "p", "settings": {}, "secrets": {}})
    assert response.status_code == 422
    assert fields(response) == {"kind"}
    available = "smtp, ses, sendgrid, mailgun, mandrill, postmark, resend"
    assert f"available kinds: {available}" in response.json()["detail"]


def test_bad_name_priority_and_unknown_fields(api):
    response = api.post(URL, smtp_body(name="  ", priority=-1))
    assert response.status_code == 422
    assert fields(response) == {"name", "priority"}
    assert api.post(URL, smtp_body(name="42")).status_code == 422
    response = api.post(URL, {**smtp_body(), "colour": "red"})
    assert response.status_code == 422 and fields(response) == {"colour"}
    response = api.post(URL, {"name": "x"})
    assert response.status_code == 422 and fields(response) == {"kind"}


def test_duplicate_name_is_a_conflict(api):
    api.post(URL, smtp_body(name="main"))
    response = api.post(URL, smtp_body(name="main"))
    assert response.status_code == 409
    assert fields(response) == {"name"}
    other = api.post(URL, smtp_body(name="other")).json()
    response = api.patch(f"{URL}/{other['id']}", {"name": "main"})
    assert response.status_code == 409 and fields(response) == {"name"}
    assert api.patch(f"{URL}/{other['id']}", {"name": "other"}).status_code == 200


# Private hosts ----------------------------------------------------------------------------

PRIVATE = [
    ("smtp", {"host": "127.0.0.1"}),
    ("smtp", {"host": "10.0.0.1"}),
    ("smtp", {"host": "169.254.169.254"}),
    ("smtp", {"host": "[::1]"}),
    ("smtp", {"host": "localhost"}),
    ("smtp", {"host": "::ffff:10.0.0.1"}),
    ("ses", {"region": "us-east-1", "endpoint_url": "http://169.254.169.254/latest"}),
    ("ses", {"region": "us-east-1", "endpoint_url": "http://localhost:5000"}),
    ("sendgrid", {"host": "http://[::1]:8080"}),
    ("sendgrid", {"host": "https://10.1.2.3"}),
]
SECRETS = {"smtp": {}, "ses": DUMMY_KEYS, "sendgrid": {"api_key": "k"}}


@pytest.mark.parametrize(("kind", "settings_"), PRIVATE)
def test_private_hosts_are_refused(api, settings, kind, settings_):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    body = {"kind": kind, "name": "p", "settings": settings_, "secrets": SECRETS[kind]}
    response = api.post(URL, body)
    assert response.status_code == 422, response.content
    field = "settings.endpoint_url" if kind == "ses" else "settings.host"
    assert fields(response) == {field}
    assert "give a public host" in response.json()["detail"]
    assert not ProviderConfig.objects.exists()


@pytest.mark.parametrize(
    ("kind", "settings_"),
    [
        ("smtp", {"host": "93.184.216.34"}),
        ("smtp", {"host": "2606:4700:4700::1111", "port": 25}),
        ("ses", {"region": "us-east-1", "endpoint_url": "https://93.184.216.34"}),
        ("sendgrid", {"host": "https://93.184.216.34:8443"}),
    ],
)
def test_public_addresses_are_accepted(api, settings, kind, settings_):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    body = {"kind": kind, "name": "p", "settings": settings_, "secrets": SECRETS[kind]}
    assert api.post(URL, body).status_code == 201


def test_a_name_that_does_not_resolve_is_refused(api, settings):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    response = api.post(URL, smtp_body(settings={"host": "no-such-host.invalid"}))
    assert response.status_code == 422
    assert fields(response) == {"settings.host"}
    assert "resolve" in response.json()["detail"]


def test_update_checks_hosts_too(api, settings):
    provider_id = api.post(URL, smtp_body()).json()["id"]
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    response = api.patch(f"{URL}/{provider_id}", {"settings": {"host": "192.168.1.1"}})
    assert response.status_code == 422 and fields(response) == {"settings.host"}
    # Fields other than settings don't re-check the stored host.
    assert api.patch(f"{URL}/{provider_id}", {"priority": 5}).status_code == 200


# Update -----------------------------------------------------------------------------------


def stored_secrets(provider_id: int) -> dict:
    return crypto.decrypt_json(ProviderConfig.objects.get(pk=provider_id).secrets_encrypted)


def test_update_merges_secrets_and_replaces_settings(api):
    provider = api.post(URL, smtp_body(port=2525)).json()
    path = f"{URL}/{provider['id']}"
    changed = api.patch(path, {"secrets": {"password": "rotated-pass"}, "enabled": False})
    assert changed.status_code == 200, changed.content
    assert changed.json()["secrets_set"] == ["password", "username"]
    assert changed.json()["enabled"] is False
    assert stored_secrets(provider["id"]) == {"username": "mailer", "password": "rotated-pass"}
    # Settings are replaced as a whole: what is left out falls back to its default.
    changed = api.patch(path, {"settings": {"host": "mx.example"}, "name": "renamed"})
    assert changed.json()["settings"] == {"host": "mx.example", "port": 587, "security": "starttls"}
    assert changed.json()["name"] == "renamed"
    removed = api.patch(path, {"secrets": {"username": "", "password": None}})
    assert removed.json()["secrets_set"] == []
    assert stored_secrets(provider["id"]) == {}
    unchanged = api.patch(path, {"kind": "smtp", "settings": None, "priority": 1})
    assert unchanged.status_code == 200
    assert unchanged.json()["settings"]["host"] == "mx.example"
    assert unchanged.json()["priority"] == 1
    api.assert_never_returned(PASSWORD, "rotated-pass")


def test_update_refuses_what_would_leave_the_config_broken(api):
    smtp = api.post(URL, smtp_body()).json()
    response = api.patch(f"{URL}/{smtp['id']}", {"secrets": {"password": ""}})
    assert response.status_code == 422 and fields(response) == {"secrets.password"}
    response = api.patch(f"{URL}/{smtp['id']}", {"kind": "ses"})
    assert response.status_code == 422 and fields(response) == {"kind"}
    response = api.patch(f"{URL}/{smtp['id']}", {"settings": {"port": 25}, "secrets": {"x": "1"}})
    assert response.status_code == 422 and fields(response) == {"settings.host", "secrets.x"}
    ses = api.post(
        URL,
        {"kind": "ses", "name": "aws", "settings": {"region": REGION}, "secrets": DUMMY_KEYS},
    ).json()
    response = api.patch(f"{URL}/{ses['id']}", {"secrets": {"access_key_id": None}})
    assert response.status_code == 422 and fields(response) == {"secrets.access_key_id"}
    assert "can't be removed" in response.json()["detail"]
    assert stored_secrets(ses["id"]) == DUMMY_KEYS
    assert stored_secrets(smtp["id"]) == {"username": "mailer", "password": PASSWORD}


def test_circuit_shows_open_after_failures_and_an_update_closes_it(api):
    provider = api.post(URL, smtp_body()).json()
    key = ProviderConfig.objects.get(pk=provider["id"]).breaker_key
    breaker().record_failure(key, error="SMTP 535 at AUTH: bad credentials", trip_now=True)
    circuit = api.get(f"{URL}/{provider['id']}").json()["circuit"]
    assert circuit["state"] == "open"
    assert circuit["consecutive_failures"] == 1
    assert circuit["last_error"] == "SMTP 535 at AUTH: bad credentials"
    assert circuit["last_error_at"] is not None and circuit["open_until"] > circuit["last_error_at"]
    assert api.get(URL).json()["results"][0]["circuit"]["state"] == "open"
    changed = api.patch(f"{URL}/{provider['id']}", {"secrets": {"password": "fixed"}})
    assert changed.json()["circuit"]["state"] == "closed"


def test_provider_changes_invalidate_cached_email_lists(
    api, account, smtp_sink, django_capture_on_commit_callbacks
):
    provider = api.post(URL, smtp_body(port=smtp_sink.port, secrets={})).json()
    services.email_send(account=account, outgoing=outgoing())
    assert api.get("/api/v1/emails").json()["results"][0]["sent_via"]["name"] == "relay"
    with django_capture_on_commit_callbacks(execute=True):
        api.patch(f"{URL}/{provider['id']}", {"name": "renamed"})
    assert api.get("/api/v1/emails").json()["results"][0]["sent_via"]["name"] == "renamed"


# Delete -----------------------------------------------------------------------------------


def test_delete_keeps_the_history_of_emails_sent_through_it(api, account, smtp_sink):
    provider = api.post(URL, smtp_body(port=smtp_sink.port, secrets={})).json()
    email = services.email_send(account=account, outgoing=outgoing()).email
    response = api.delete(f"{URL}/{provider['id']}")
    assert response.status_code == 204 and response.content == b""
    assert api.get(f"{URL}/{provider['id']}").status_code == 404
    assert api.delete(f"{URL}/{provider['id']}").status_code == 404
    detail = api.get(f"/api/v1/emails/{email.pk}").json()
    assert detail["status"] == "sent"
    assert detail["sent_via"] == {"id": None, "kind": "smtp", "name": ""}
    assert detail["attempts"][0]["provider"] == {"id": None, "kind": "smtp", "name": "relay"}


# Test send --------------------------------------------------------------------------------


def test_test_send_through_a_real_smtp_server(api, account, smtp_server):
    sink = smtp_server(credentials=("mailer", PASSWORD))
    provider = api.post(URL, smtp_body(port=sink.port)).json()
    response = api.post(f"{URL}/{provider['id']}/test", {"to": "me@example.org"})
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["outcome"] == "sent", result
    assert result["error_code"] == "" and result["duration_ms"] >= 0
    assert (
        result["to"] == "me@example.org" and result["from"] == "emailservice <no-reply@localhost>"
    )
    assert result["circuit"]["state"] == "closed"
    (received,) = sink.received
    assert received.rcpt_tos == ["me@example.org"]
    assert "test message" in received.message["Subject"]
    # A connectivity check, not an email of the account.
    assert not Email.objects.exists() and not DeliveryAttempt.objects.exists()
    api.assert_never_returned(PASSWORD)


def test_test_send_defaults_to_the_account_email(api, account, smtp_sink):
    provider = api.post(URL, smtp_body(port=smtp_sink.port, secrets={})).json()
    path = f"{URL}/{provider['id']}/test"
    response = api.post(path)
    assert response.status_code == 422 and fields(response) == {"to"}
    account.email = "alice@example.org"
    account.save()
    response = api.post(path, {"from": "Shop <shop@example.com>"})
    assert response.json()["outcome"] == "sent"
    assert smtp_sink.received[0].rcpt_tos == ["alice@example.org"]
    assert smtp_sink.received[0].mail_from == "shop@example.com"
    response = api.post(path, {"to": "not an address", "from": "a\r\nb@example.com"})
    assert response.status_code == 422 and fields(response) == {"to", "from"}


def test_test_send_to_a_closed_port_is_a_provider_error(api, closed_port):
    provider = api.post(URL, smtp_body(port=closed_port, secrets={})).json()
    response = api.post(f"{URL}/{provider['id']}/test", {"to": "me@example.org"})
    assert response.status_code == 200
    result = response.json()
    assert result["outcome"] == "provider_error" and result["error_message"]
    assert result["circuit"]["consecutive_failures"] == 1
    assert result["circuit"]["last_error"] == result["error_message"]


def test_test_send_with_a_wrong_sendgrid_key(api, sendgrid_server):
    body = {
        "kind": "sendgrid",
        "name": "sg",
        "settings": {"host": sendgrid_server.url},
        "secrets": {"api_key": API_KEY},
    }
    provider = api.post(URL, body).json()
    result = api.post(f"{URL}/{provider['id']}/test", {"to": "me@example.org"}).json()
    assert result["outcome"] == "provider_error"
    assert result["error_code"] == "401"
    assert result["circuit"]["state"] == "open"  # bad credentials open the circuit at once
    assert sendgrid_server.messages == []
    # Fixing the key closes the circuit; the test runs, and succeeds.
    api.patch(f"{URL}/{provider['id']}", {"secrets": {"api_key": VALID_KEY}})
    addresses = {"to": "me@example.org", "from": "shop@example.com"}
    result = api.post(f"{URL}/{provider['id']}/test", addresses).json()
    assert result["outcome"] == "sent" and result["provider_message_id"]
    assert sendgrid_server.messages[0]["_message_id"] == result["provider_message_id"]
    api.assert_never_returned(API_KEY, VALID_KEY)


def test_test_send_runs_even_when_the_circuit_is_open(api, smtp_sink):
    provider = api.post(URL, smtp_body(port=smtp_sink.port, secrets={})).json()
    key = ProviderConfig.objects.get(pk=provider["id"]).breaker_key
    breaker().record_failure(key, error="x", trip_now=True)
    result = api.post(f"{URL}/{provider['id']}/test", {"to": "me@example.org"}).json()
    assert result["outcome"] == "sent"
    assert result["circuit"]["state"] == "closed"
    assert len(smtp_sink.received) == 1


def test_test_send_through_ses(api, ses):
    ses.verify("sender@example.com")
    body = {
        "kind": "ses",
        "name": "aws",
        "settings": {"region": REGION, "endpoint_url": ses.endpoint_url},
        "secrets": DUMMY_KEYS,
    }
    provider = api.post(URL, body).json()
    path = f"{URL}/{provider['id']}/test"
    result = api.post(path, {"to": "me@example.org", "from": "sender@example.com"}).json()
    assert result["outcome"] == "sent", result
    (sent,) = ses.sent()
    assert sent["id"] == result["provider_message_id"]
    assert set(sent["destinations"]) == {"me@example.org"}
    unverified = api.post(path, {"to": "me@example.org", "from": "nobody@example.net"}).json()
    assert unverified["outcome"] == "provider_error"
    assert unverified["error_code"] == "MessageRejected"


# Accounts ---------------------------------------------------------------------------------


def test_another_accounts_provider_is_not_found(api, other_api, smtp_sink):
    provider = api.post(URL, smtp_body(port=smtp_sink.port, secrets={})).json()
    path = f"{URL}/{provider['id']}"
    assert other_api.get(path).status_code == 404
    assert other_api.patch(path, {"name": "mine"}).status_code == 404
    assert other_api.post(f"{path}/test", {"to": "me@example.org"}).status_code == 404
    assert other_api.delete(path).status_code == 404
    assert other_api.get(URL).json() == {"count": 0, "results": []}
    assert smtp_sink.received == []
    assert api.get(path).json()["name"] == "relay"
    # Names are per account: the other one may use the same name.
    assert other_api.post(URL, smtp_body()).status_code == 201


def test_unknown_ids_are_not_found_and_huge_ones_invalid(api):
    assert api.get(f"{URL}/999999").status_code == 404
    # Past 64 bits no database could hold it: a field error, never a database error.
    response = api.get(f"{URL}/{2**70}")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "provider_id"
