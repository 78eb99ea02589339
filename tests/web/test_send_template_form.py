"""The send page with a stored template: offered by name, rendered with the JSON variables in
place of the subject and bodies, its problems shown beside the template's fields."""

from __future__ import annotations

import pytest

from harness.factories import loopback_smtp
from mailer.models import Email
from mailer.services.templates import template_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client, account, add_provider, smtp_sink):
    add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    template_create(account=account, name="welcome", subject="Hi {{ name }}",
                    html="<p>Hi {{ name }}</p>")  # fmt: skip
    client.force_login(account)
    return account


def send(client, account, **fields):
    data = {"from_email": "Shop <shop@example.com>", "to": "ann@example.org", "cc": "",
            "bcc": "", "reply_to": "", "subject": "", "text": "", "html": "",
            "template": "", "variables": "", "submission": "s-1",
            "provider": str(account.provider_configs.get().pk)}  # fmt: skip
    return client.post("/send/", data | fields)


def errors(response) -> dict[str, list[str]]:
    return {name: list(found) for name, found in response.context["form"].errors.items()}


def test_the_page_offers_the_accounts_templates(client, member, other_account):
    template_create(account=other_account, name="theirs", subject="x", text="x")
    page = client.get("/send/").content.decode()
    assert '<option value="welcome">welcome</option>' in page
    assert "theirs" not in page


def test_a_template_is_rendered_escaped_and_sent(client, member, smtp_sink):
    response = send(client, member, template="welcome", variables='{"name": "<Ann>"}')
    email = Email.objects.get()
    assert response.status_code == 302 and response.url == f"/emails/{email.pk}/"
    assert (email.subject, email.html) == ("Hi <Ann>", "<p>Hi &lt;Ann&gt;</p>")
    assert smtp_sink.received[0].message["Subject"] == "Hi <Ann>"


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"template": "welcome", "variables": "{}"}, "variables", "name"),
        ({"template": "welcome", "variables": "{nope"}, "variables", "not valid JSON"),
        ({"template": "welcome", "variables": "[" * 60_000}, "variables", "deep"),
        ({"template": "welcome", "variables": "[1]"}, "variables", "JSON object"),
        ({"template": "welcome", "subject": "Mine"}, "template", "replaces"),
        ({"template": "gone"}, "template", "not one of the available choices"),
        ({"variables": '{"name": "A"}', "text": "x"}, "subject", "required"),
    ],
)
def test_what_cannot_be_sent_is_said_beside_its_field(client, member, fields, field, fragment):
    response = send(client, member, **fields)
    assert response.status_code == 200
    found = errors(response)
    assert any(fragment in message for message in found.get(field, [])), found
    assert not Email.objects.exists()
