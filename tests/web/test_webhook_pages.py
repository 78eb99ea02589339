"""The webhooks page through the Django test client: add (the secret shown once), enable and
disable, rotate, delete, each endpoint's recent deliveries and "Send again" (POST with CSRF),
with the same look and rules as the tokens page."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from mailer import services
from mailer.models import WebhookEndpoint, WebhookMessage
from mailer.services.webhooks_out import webhook_endpoint_create, webhooks_sweep
from tests.fakes.webhook_receiver import receiver_fixture  # noqa: F401 (a fixture)
from tests.web.test_emails_pages import PageAudit
from tests.web.test_provider_pages import error_of, web_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def shown_secret(response) -> str:
    field = re.search(r'<input[^>]*id="new-secret"[^>]*>', response.content.decode()).group(0)
    assert "readonly" in field
    return re.search(r'value="(whsec_[^"]+)"', field).group(1)


def form_id(web) -> str:
    page = web("get", "/webhooks/").content.decode()
    return re.search(r'name="form_id" value="([^"]+)"', page).group(1)


def test_add_shows_the_secret_once_and_a_reload_adds_nothing(web, account):
    fields = {"url": "http://127.0.0.1:9/in", "event_types": ["email.sent", "email.bounced"],
              "form_id": form_id(web)}  # fmt: skip
    shown = web("post", "/webhooks/", fields)
    assert shown.status_code == 200 and "no-store" in shown["Cache-Control"]
    secret = shown_secret(shown)
    assert "won't be shown again" in shown.content.decode()
    endpoint = WebhookEndpoint.objects.get(account=account)
    assert endpoint.event_types == ["email.sent", "email.bounced"]
    assert endpoint.signing_secret() == secret and secret not in endpoint.secret_encrypted
    again = web("post", "/webhooks/", fields)  # the browser's reload of that answer
    assert secret not in again.content.decode() and "shown only once" in again.content.decode()
    assert WebhookEndpoint.objects.count() == 1
    listing = web("get", "/webhooks/").content.decode()
    assert "http://127.0.0.1:9/in" in listing and "Email sent · Email bounced" in listing
    assert all(secret not in body for body in web.bodies[2:])  # only the POST's answer had it


def test_a_bad_url_is_shown_beside_its_field(web, settings):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    response = web("post", "/webhooks/", {"url": "https://127.0.0.1/in"})
    assert response.status_code == 200 and "loopback" in error_of(response, "url")
    response = web("post", "/webhooks/", {"url": ""})
    assert "This field is required" in error_of(response, "url")
    assert not WebhookEndpoint.objects.exists()


def test_disable_enable_rotate_and_delete(web, account):
    endpoint, secret = webhook_endpoint_create(account=account, url="http://127.0.0.1:9/in")
    assert web("post", f"/webhooks/{endpoint.pk}/enabled/", {"enabled": "0"}).status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "disabled</span>" in web("get", "/webhooks/").content.decode()
    web("post", f"/webhooks/{endpoint.pk}/enabled/", {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled

    confirm = web("get", f"/webhooks/{endpoint.pk}/rotate/").content.decode()
    assert "new signing secret?" in confirm
    assert WebhookEndpoint.objects.get().signing_secret() == secret  # GET changed nothing
    rotated = web("post", f"/webhooks/{endpoint.pk}/rotate/")
    new = shown_secret(rotated)
    assert new != secret and WebhookEndpoint.objects.get().signing_secret() == new
    assert "no-store" in rotated["Cache-Control"]

    assert (
        "Delete this webhook endpoint?"
        in web("get", f"/webhooks/{endpoint.pk}/delete/").content.decode()
    )
    assert WebhookEndpoint.objects.exists()
    assert web("post", f"/webhooks/{endpoint.pk}/delete/").status_code == 302
    assert not WebhookEndpoint.objects.exists()


def test_deliveries_show_status_answer_and_tries_and_send_again(web, account, receiver):
    hook = receiver(status=500)
    endpoint, hook.secret = webhook_endpoint_create(account=account, url=hook.url)
    [message] = services.webhooks_emit(account, "email.sent", {"email_id": 1})
    webhooks_sweep(inline=True)
    page = web("get", f"/webhooks/{endpoint.pk}/deliveries/").content.decode()
    row = re.search(rf'<tr id="delivery-{message.pk}">(.*?)</tr>', page, re.S).group(1)
    assert message.msg_id in row and "pending</span>" in row and ">1<" in row
    assert "500" in row and "HTTP 500" in row
    hook.status = 200
    sent = web("post", f"/webhooks/{endpoint.pk}/deliveries/{message.pk}/retry/")
    assert sent.status_code == 302 and sent["Location"].endswith(f"#delivery-{message.pk}")
    webhooks_sweep(inline=True)
    page = web("get", f"/webhooks/{endpoint.pk}/deliveries/").content.decode()
    row = re.search(rf'<tr id="delivery-{message.pk}">(.*?)</tr>', page, re.S).group(1)
    assert "delivered</span>" in row and ">2<" in row and "200" in row
    assert [a.webhook_id for a in hook.arrivals] == [message.msg_id] * 2


def test_send_again_needs_a_post_with_the_csrf_token(account):
    endpoint, _ = webhook_endpoint_create(account=account, url="http://127.0.0.1:9/in")
    [message] = services.webhooks_emit(account, "email.sent", {"email_id": 1})
    WebhookMessage.objects.filter(pk=message.pk).update(status="failed", next_attempt_at=None)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(account)
    path = f"/webhooks/{endpoint.pk}/deliveries/{message.pk}/retry/"
    assert browser.get(path).status_code == 405
    assert browser.post(path).status_code == 403
    page = browser.get(f"/webhooks/{endpoint.pk}/deliveries/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post(path, {"csrfmiddlewaretoken": token}).status_code == 302
    assert WebhookMessage.objects.get().status == "pending"


def test_another_accounts_endpoints_are_not_found(web, other_account):
    theirs, _ = webhook_endpoint_create(account=other_account, url="http://127.0.0.1:9/theirs")
    [message] = services.webhooks_emit(other_account, "email.sent", {"email_id": 1})
    for method, path in [("get", "deliveries/"), ("get", "rotate/"), ("post", "rotate/"),
                         ("get", "delete/"), ("post", "delete/"), ("post", "enabled/"),
                         ("post", f"deliveries/{message.pk}/retry/")]:  # fmt: skip
        assert web(method, f"/webhooks/{theirs.pk}/{path}").status_code == 404, (method, path)
    assert "theirs" not in web("get", "/webhooks/").content.decode()
    theirs.refresh_from_db()
    assert theirs.enabled and theirs.signing_secret()


@pytest.mark.parametrize(
    "path", ["/webhooks/", "/webhooks/{id}/deliveries/", "/webhooks/{id}/rotate/",
             "/webhooks/{id}/delete/"],
)  # fmt: skip
def test_pages_have_a_title_a_heading_labels_and_no_inline_code(web, account, path):
    endpoint, _ = webhook_endpoint_create(account=account, url="http://127.0.0.1:9/in")
    services.webhooks_emit(account, "email.sent", {"email_id": 1})
    response = web("get", path.format(id=endpoint.pk))
    assert response.status_code == 200
    audit = PageAudit()
    audit.feed(response.content.decode())
    assert audit.problems == []
    assert [f for f in audit.fields if f not in audit.labels] == []
    assert audit.title and audit.headings[0] == 1
    assert all(b - a <= 1 for a, b in zip(audit.headings, audit.headings[1:], strict=False))
    assert re.search(r"<title>[^<]+ · emailservice</title>", response.content.decode())
    assert 'href="/webhooks/"' in response.content.decode()  # the nav link


def test_pages_need_a_signed_in_person(client):
    for path in ["/webhooks/", "/webhooks/1/deliveries/", "/webhooks/1/rotate/"]:
        response = client.get(path)
        assert response.status_code == 302 and "login" in response["Location"]
