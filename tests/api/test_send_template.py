"""POST /api/v1/emails with `template` and `variables`: the account's template rendered in the
sandbox, the rendered result stored and sent, its problems 422s naming the field."""

from __future__ import annotations

import pytest

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer.models import Email
from mailer.services.templates import template_create, template_update

SEND = {"from": "shop@example.com", "to": ["ann@example.org"], "template": "welcome"}


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    return add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))


@pytest.fixture
def welcome(account):
    return template_create(
        account=account,
        name="welcome",
        subject="Welcome, {{ name }}",
        text="Hello {{ name }}, your code is {{ code }}.",
        html="<p>Hello {{ name }}, your code is <b>{{ code }}</b>.</p>",
    )


def test_the_rendered_template_is_stored_and_sent(api, welcome, sink_provider, smtp_sink):
    answer = api.post("/api/v1/emails", SEND | {"variables": {"name": "<Ann>", "code": 42}})
    assert answer.status_code == 201, answer.json()
    email = Email.objects.get(pk=answer.json()["id"])
    assert email.subject == "Welcome, <Ann>"
    assert email.text == "Hello <Ann>, your code is 42."
    assert email.html == "<p>Hello &lt;Ann&gt;, your code is <b>42</b>.</p>"
    [received] = smtp_sink.received
    assert received.message["Subject"] == "Welcome, <Ann>"


def test_a_missing_variable_is_named_and_nothing_is_stored(api, welcome, sink_provider):
    answer = api.post("/api/v1/emails", SEND | {"variables": {"name": "Ann"}})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["variables.code"]
    assert not Email.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (SEND | {"template": "nope"}, "template"),
        (SEND | {"subject": "Hi", "variables": {"name": "A", "code": 1}}, "template"),
        (
            {k: v for k, v in SEND.items() if k != "template"}
            | {"text": "x", "variables": {"a": 1}},
            "variables",
        ),
    ],
)
def test_a_template_send_that_cannot_be_is_a_422_naming_why(api, welcome, body, field):
    answer = api.post("/api/v1/emails", body)
    assert answer.status_code == 422
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert not Email.objects.exists()


def test_another_accounts_template_is_unknown(welcome, other_account, client, sink_provider):
    theirs = ApiClient.django(client, make_token(other_account))
    answer = theirs.post("/api/v1/emails", SEND | {"variables": {"name": "A", "code": 1}})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["template"]


def test_an_idempotent_repeat_after_the_template_changed_replays(
    api, account, welcome, sink_provider
):
    body = SEND | {"variables": {"name": "Ann", "code": 1}}
    headers = {"Idempotency-Key": "welcome-ann"}
    first = api.post("/api/v1/emails", body, headers=headers)
    template_update(template=welcome, subject="Hi again, {{ name }}")
    again = api.post("/api/v1/emails", body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = api.post("/api/v1/emails", body | {"variables": {"name": "Bo", "code": 1}},
                     headers=headers)  # fmt: skip
    assert other.status_code == 422 and "different request" in other.json()["detail"]
