"""The original contract (/send_email/, /view_sent_emails/) through the whole Django stack, real
SMTP/SendGrid/SES stand-ins and Redis, and the original curl commands against a live server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlencode

import pytest
from django.test import Client

from harness.factories import loopback_smtp
from harness.procs import process_group_alive
from mailer.models import DeliveryAttempt, Email, EmailStatus
from mailer.services import token_create, token_revoke
from tests.fakes.sendgrid import VALID_KEY
from tests.fakes.ses import DUMMY_KEYS
from tests.makerun import running_app

SEND, LIST = "/send_email/", "/view_sent_emails/"
FORM = "application/x-www-form-urlencoded"
DRF_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ROW_KEYS = ["id", "from_email", "to_email", "subject", "body_text", "sent_via", "created", "status"]


@pytest.fixture
def token(account) -> str:
    return token_create(account=account)[1]


@pytest.fixture
def smtp_provider(add_provider, smtp_sink):
    settings = loopback_smtp(smtp_sink.port)
    return add_provider("smtp", settings=settings)


@pytest.fixture
def sendgrid_provider(add_provider, sendgrid_server):
    settings = {"host": sendgrid_server.url}
    return add_provider("sendgrid", settings=settings, secrets={"api_key": VALID_KEY})


def fields(token: str | None, **overrides: str) -> dict[str, str]:
    """The original client's form: every field it sent, TOKEN included unless None."""
    data = {
        "to_email": "rcpt@example.org",
        "from_email": "sender@example.com",
        "subject": "Hello",
        "body_text": "Hello there.",
        "sent_via": "",
        "status": "1",
    }
    if token is not None:
        data["TOKEN"] = token
    return {**data, **overrides}


def send(client, token: str | None, content_type: str | None = None, **overrides: str):
    """POST /send_email/ as multipart (the test client's default) or form-encoded."""
    data = fields(token, **overrides)
    if content_type == FORM:
        return client.post(SEND, urlencode(data), content_type=FORM)
    return client.post(SEND, data)


def stored(account, count: int = 1, **extra) -> list[Email]:
    """Rows as a finished send leaves them, oldest first (set-up only: no provider involved)."""
    values = {"from_email": "s@example.com", "to": ["r@example.org"], "subject": "Stored"}
    values.update(text="Body.", status=EmailStatus.SENT, sent_via_kind="smtp")
    values.update(extra)
    return [Email.objects.create(account=account, **values) for _ in range(count)]


pytestmark = pytest.mark.django_db


# POST /send_email/ ----------------------------------------------------------------------------


def test_multipart_send_with_sent_via_3_is_200_and_stored(
    client, account, token, smtp_provider, sendgrid_provider, sendgrid_server
):
    response = send(client, token, sent_via="3", subject="Via SG")

    email = Email.objects.get(account=account)
    assert response.status_code == 200
    assert response.json() == {
        "message": "Email sent successfully via send_grid",
        "status": 200,
        "id": email.pk,
        "sent_via": "send_grid",
    }
    assert email.status == EmailStatus.SENT
    assert email.sent_via == email.requested_provider == sendgrid_provider
    assert (email.to, email.subject, email.text) == (["rcpt@example.org"], "Via SG", "Hello there.")
    [message] = sendgrid_server.messages
    assert message["subject"] == "Via SG"
    assert message["personalizations"][0]["to"] == [{"email": "rcpt@example.org"}]


def test_form_encoded_with_blank_sent_via_follows_the_account_order(
    client, token, smtp_provider, sendgrid_provider, smtp_sink, sendgrid_server
):
    response = send(client, token, content_type=FORM)

    assert response.status_code == 200
    assert response.json()["sent_via"] == "google_SMTP"
    assert smtp_sink.received[0].rcpt_tos == ["rcpt@example.org"]
    assert sendgrid_server.messages == []


def test_bearer_header_instead_of_token_field(client, account, token, smtp_provider):
    response = client.post(SEND, fields(None), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert Email.objects.get(account=account).status == EmailStatus.SENT


def test_json_body_as_the_original_drf_view_took_it(client, token, smtp_provider):
    body = json.dumps({**fields(token), "sent_via": 2, "to_email": ["a@example.org"]})
    response = client.post(SEND, body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["sent_via"] == "google_SMTP"


@pytest.mark.usefixtures("smtp_provider", "sendgrid_provider")
@pytest.mark.parametrize(
    ("sent_via", "name"), [("1", "amazon_SES"), ("2", "google_SMTP"), ("3", "send_grid")]
)
def test_sent_via_tries_its_kind_first(client, account, token, add_provider, ses, sent_via, name):
    ses.verify("example.com")
    add_provider("ses", settings={"region": "us-east-1", "endpoint_url": ses.endpoint_url},
                 secrets=DUMMY_KEYS)  # fmt: skip
    response = send(client, token, sent_via=sent_via)
    assert response.status_code == 200, response.content
    assert response.json()["sent_via"] == name
    assert Email.objects.get(account=account).attempts.count() == 1


def test_sent_via_provider_failing_fails_over_to_the_next(
    client, account, token, smtp_provider, sendgrid_provider, sendgrid_server, smtp_sink
):
    sendgrid_server.mode = "500"
    response = send(client, token, sent_via="3")

    assert response.status_code == 200
    assert response.json()["sent_via"] == "google_SMTP"
    email = Email.objects.get(account=account)
    outcomes = [(a.provider_kind, a.outcome) for a in email.attempts.all()]
    assert outcomes == [("sendgrid", "provider_error"), ("smtp", "sent")]
    assert len(smtp_sink.received) == 1


def test_every_provider_failing_is_502_with_the_reason(
    client, account, token, add_provider, closed_port, sendgrid_provider, sendgrid_server
):
    add_provider("smtp", settings=loopback_smtp(closed_port))
    sendgrid_server.mode = "401"
    response = send(client, token)

    email = Email.objects.get(account=account)
    assert response.status_code == 502
    assert email.status == EmailStatus.FAILED and email.failure_reason
    assert response.json() == {
        "message": f"Email could not be sent: {email.failure_reason}",
        "status": 502,
        "id": email.pk,
        "failure_reason": email.failure_reason,
    }
    assert DeliveryAttempt.objects.filter(email=email).count() == 2


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"from_email": "not an address"}, "from_email", "not a valid email address"),
        ({"from_email": ""}, "from_email", "empty"),
        ({"to_email": ""}, "to_email", "At least one recipient"),
        ({"to_email": "ok@example.org\r\nBcc: victim@example.org"}, "to_email", "line break"),
        ({"to_email": "a@example.org, nobody"}, "to_email", "not a valid email address"),
        ({"subject": ""}, "subject", "empty"),
        ({"subject": "Hi\nBcc: x@example.org"}, "subject", "line breaks"),
        ({"body_text": "  "}, "body_text", "text or an HTML body"),
    ],
)
def test_invalid_field_is_400_under_its_legacy_name(
    client, account, token, smtp_provider, overrides, field, fragment
):
    response = send(client, token, content_type=FORM, **overrides)

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and list(body["errors"]) == [field]
    assert any(fragment in message for message in body["errors"][field])
    assert not Email.objects.filter(account=account).exists()


def test_every_bad_field_is_named_at_once(client, token, smtp_provider):
    response = send(client, token, sent_via="9", from_email="x", to_email="")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"sent_via", "from_email", "to_email"}


@pytest.mark.parametrize(
    ("limit", "fragment"),
    [
        ("MAX_MESSAGE_BYTES", "the limit is 1000 bytes"),
        ("DATA_UPLOAD_MAX_MEMORY_SIZE", "over 1000"),
    ],
)
def test_too_large_is_413_in_the_same_shape(client, account, token, smtp_provider, settings,
                                            limit, fragment):  # fmt: skip
    # Without the Content-Length check in front, the view answers (from validation or from
    # Django refusing to read the body).
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "RequestSizeLimit" not in m]
    setattr(settings, limit, 1000)
    response = send(client, token, body_text="x" * 1200)

    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert fragment in response.json()["errors"]["message"][0]
    assert not Email.objects.filter(account=account).exists()


def test_too_large_body_is_413_before_it_is_read(client, account, token, smtp_provider, settings):
    settings.MAX_MESSAGE_BYTES = 1000
    response = send(client, token, body_text="x" * 1200)
    assert response.status_code == 413 and response.json()["status"] == 413
    assert not Email.objects.filter(account=account).exists()


def test_comma_separated_to_email_is_split(client, account, token, smtp_provider, smtp_sink):
    to = 'a@example.org, "Doe, Jo" <jo@example.org>, Zoë <z@example.org>'
    response = send(client, token, to_email=to)

    assert response.status_code == 200, response.content
    email = Email.objects.get(account=account)
    assert email.to == ["a@example.org", '"Doe, Jo" <jo@example.org>', "Zoë <z@example.org>"]
    assert smtp_sink.received[0].rcpt_tos == ["a@example.org", "jo@example.org", "z@example.org"]


def test_sent_via_for_a_kind_not_configured_fails_over_and_says_so(
    client, account, token, smtp_provider, smtp_sink, add_provider
):
    """The original failed over when its chosen provider could not send; a kind the account has
    not configured is such a preference: its providers are tried in order, and the answer says
    the preference could not be honoured."""
    add_provider("sendgrid", name="off", secrets={"api_key": VALID_KEY}, enabled=False)
    for sent_via, kind in (("1", "Amazon SES"), ("3", "SendGrid"), ("7", "Resend")):
        response = send(client, token, sent_via=sent_via)  # a disabled one is not configured

        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["sent_via"] == "google_SMTP"
        assert body["sent_via_note"] == (
            f"No {kind} provider is configured for this account (sent_via={sent_via}), so its "
            "providers were tried in order: SMTP 'smtp-1' (sent_via=2)."
        )
        email = Email.objects.get(pk=body["id"])
        assert (email.status, email.requested_provider) == ("sent", None)
    assert len(smtp_sink.handler.received) == 3


def test_sent_via_for_a_configured_kind_adds_no_note(client, token, smtp_provider):
    body = send(client, token, sent_via="2").json()
    assert body["sent_via"] == "google_SMTP" and "sent_via_note" not in body


@pytest.mark.parametrize("value", ["8", "0", "sendgrid", "3.0"])
def test_bad_sent_via_names_the_valid_values(client, token, smtp_provider, value):
    response = send(client, token, sent_via=value)
    assert response.status_code == 400
    [message] = response.json()["errors"]["sent_via"]
    assert "1 (Amazon SES), 2 (SMTP), 3 (SendGrid), 4 (Mailgun), 5 (Mandrill)" in message
    assert "6 (Postmark), 7 (Resend)" in message and repr(value) in message


def test_token_missing_invalid_or_revoked_is_403(client, account, token, smtp_provider):
    assert send(client, None).status_code == 403
    assert send(client, None).json()["message"] == "Token is missing !!"
    assert send(client, "es_wrong").json() == {"message": "invalid token !!", "status": 403}
    token_revoke(token=account.api_tokens.get())
    response = send(client, token, content_type=FORM)
    assert (response.status_code, response.json()["message"]) == (403, "invalid token !!")
    assert not Email.objects.exists()


def test_only_post_and_no_csrf_token_needed(token, smtp_provider):
    client = Client(enforce_csrf_checks=True)
    response = client.get(SEND)
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert send(client, token).status_code == 200


def test_rate_limit_is_429_with_retry_after(client, token, smtp_provider, settings):
    settings.API_RATE_LIMIT = "2/h"  # an hour's window: no reset mid-test
    assert send(client, token).status_code == 200
    assert client.get(LIST, {"TOKEN": token}).status_code == 200
    response = send(client, token)
    assert response.status_code == 429 and response.json()["status"] == 429
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert client.get(LIST, {"TOKEN": token}).status_code == 429


# GET /view_sent_emails/ -----------------------------------------------------------------------


def test_pages_of_ten_newest_first_with_drf_links(client, account, token):
    ids = [e.pk for e in reversed(stored(account, 23))]
    base = f"http://testserver{LIST}?TOKEN={token}"

    first = client.get(LIST, {"TOKEN": token}).json()
    assert (first["count"], first["next"], first["previous"]) == (23, f"{base}&page=2", None)
    assert [row["id"] for row in first["results"]] == ids[:10]
    second = client.get(LIST, {"TOKEN": token, "page": "2"}).json()
    assert (second["next"], second["previous"]) == (f"{base}&page=3", base)
    assert [row["id"] for row in second["results"]] == ids[10:20]
    last = client.get(LIST, {"TOKEN": token, "page": "3"}).json()
    assert (last["next"], last["previous"]) == (None, f"{base}&page=2")
    assert [row["id"] for row in last["results"]] == ids[20:]
    assert client.get(LIST, {"TOKEN": token, "page": "last"}).json() == last
    # Other query parameters are kept, in DRF's (sorted) order.
    kept = client.get(LIST, {"TOKEN": token, "page": "2", "x": "1"}).json()
    assert kept["next"] == f"{base}&page=3&x=1"


@pytest.mark.parametrize("page", ["4", "0", "-1", "abc", "", "1.0"])
def test_invalid_page_is_404_as_drf_said_it(client, account, token, page):
    stored(account, 23)
    response = client.get(LIST, {"TOKEN": token, "page": page})
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})


def test_empty_list(client, token):
    response = client.get(LIST, {"TOKEN": token})
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert client.get(LIST, {"TOKEN": token, "page": "2"}).status_code == 404


def test_rows_in_the_original_shape_with_legacy_provider_names(client, account, token):
    stored(account, sent_via_kind="ses")
    stored(account, sent_via_kind="sendgrid")
    stored(account, sent_via_kind="smtp", to=["a@example.org", "B <b@example.org>"])
    stored(account, sent_via_kind="", status=EmailStatus.FAILED, failure_reason="down")

    rows = client.get(LIST, headers={"Authorization": f"Bearer {token}"}).json()["results"]
    assert all(list(row) == ROW_KEYS for row in rows)
    assert [(row["sent_via"], row["status"]) for row in rows] == [
        (None, "failed"), ("google_SMTP", "sent"), ("send_grid", "sent"), ("amazon_SES", "sent")
    ]  # fmt: skip
    assert rows[1]["to_email"] == "a@example.org, B <b@example.org>"
    assert (rows[1]["from_email"], rows[1]["body_text"]) == ("s@example.com", "Body.")
    assert all(DRF_DATETIME.match(row["created"]) for row in rows)


def test_another_accounts_emails_are_never_listed(client, account, other_account, token):
    mine = stored(account, 2)
    stored(other_account, 3)
    body = client.get(LIST, {"TOKEN": token}).json()
    assert body["count"] == 2
    assert {row["id"] for row in body["results"]} == {e.pk for e in mine}


def test_list_token_missing_invalid_or_revoked_is_403(client, account, token):
    assert client.get(LIST).json() == {"message": "Token is missing !!", "status": 403}
    response = client.get(LIST, {"TOKEN": "es_nope"})
    assert (response.status_code, response.json()["message"]) == (403, "invalid token !!")
    token_revoke(token=account.api_tokens.get())
    assert client.get(LIST, {"TOKEN": token}).status_code == 403
    assert client.post(LIST, {"TOKEN": token}).status_code == 405


def test_a_new_send_shows_on_the_very_next_list(client, account, token, smtp_provider):
    assert client.get(LIST, {"TOKEN": token}).json()["count"] == 0
    stored(account)  # bypasses the services: the cached page does not know of it
    assert client.get(LIST, {"TOKEN": token}).json()["count"] == 0
    sent_id = send(client, token, subject="Fresh").json()["id"]

    body = client.get(LIST, {"TOKEN": token}).json()
    assert body["count"] == 2
    assert (body["results"][0]["id"], body["results"][0]["subject"]) == (sent_id, "Fresh")


# The original curl commands, unchanged, against bin/run-local -------------------------------


def curl(*args: str) -> dict:
    out = subprocess.run(["curl", *args], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_original_curl_commands_against_a_live_server(tmp_path, sendgrid_server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    with running_app(tmp_path) as app:
        app.factory("provider", "demo", "sendgrid", "--name", "SendGrid",
                    "--settings", json.dumps({"host": sendgrid_server.url}),
                    "--secrets", json.dumps({"api_key": VALID_KEY}))  # fmt: skip
        sent = curl("-X", "POST", f"{app.url}/send_email/", "-F", "to_email=friend@example.org",
                    "-F", "from_email=demo@example.com", "-F", "subject=Hello from curl",
                    "-F", "body_text=Sent the original way.", "-F", "sent_via=3",
                    "-F", "status=1", "-F", f"TOKEN={app.token}")  # fmt: skip
        listed = curl(f"{app.url}/view_sent_emails/?TOKEN={app.token}")

    assert not process_group_alive(app.process.pid), "the live server was left running"
    assert sent == {
        "message": "Email sent successfully via send_grid",
        "status": 200,
        "id": sent["id"],
        "sent_via": "send_grid",
    }
    [message] = sendgrid_server.messages
    assert message["subject"] == "Hello from curl"
    assert message["personalizations"][0]["to"] == [{"email": "friend@example.org"}]
    assert listed["count"] == 1 and listed["next"] is None and listed["previous"] is None
    [row] = listed["results"]
    assert DRF_DATETIME.match(row.pop("created"))
    assert row == {
        "id": sent["id"],
        "from_email": "demo@example.com",
        "to_email": "friend@example.org",
        "subject": "Hello from curl",
        "body_text": "Sent the original way.",
        "sent_via": "send_grid",
        "status": "sent",
    }
