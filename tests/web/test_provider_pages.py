"""Provider, health and API token pages through the Django test client, with real SMTP sinks."""

from __future__ import annotations

import html
import re

import pytest

from harness.factories import loopback_smtp
from mailer import crypto
from mailer.delivery.breaker import breaker
from mailer.models import ProviderConfig
from mailer.providers import specs
from mailer.services import provider_config_create
from mailer.web.provider_forms import PROVIDER_FORMS

pytestmark = pytest.mark.django_db

PASSWORD = "pw-never-rendered-7f3a"
API_KEY = "SG.never-rendered-key-42"
AWS_SECRET = "aws-secret-never-rendered-9"
SECRETS = (PASSWORD, API_KEY, AWS_SECRET)


# Named apart from its function: tests/web/test_token_pages.py imports it.
@pytest.fixture(name="web")
def web_fixture(client, account):
    """The test client signed in as `account`; remembers every page body it received."""
    client.force_login(account)
    bodies: list[str] = []

    def call(method: str, path: str, data: dict | None = None, **kwargs):
        response = getattr(client, method)(path, data or {}, **kwargs)
        bodies.append(response.content.decode())
        return response

    call.bodies = bodies
    return call


def smtp(port: int = 2525, **extra) -> dict:
    """The smtp add form's fields for a server on loopback."""
    return {"name": "relay", "enabled": "on", "host": "127.0.0.1", "port": port,
            "security": "none", "username": "mailer", "password": PASSWORD, **extra}  # fmt: skip


def add(account, kind: str = "smtp", name: str = "relay", **fields) -> ProviderConfig:
    settings = fields.pop("settings", loopback_smtp(2525))
    return provider_config_create(
        account=account, kind=kind, name=name, settings=settings, trusted=True, **fields
    )


def error_of(response, field: str) -> str:
    """The error text shown beside a field (the element its input's aria-describedby names)."""
    page = response.content.decode()
    assert re.search(rf'<[^>]*aria-invalid="true"[^>]*id="id_{field}"', page), field
    found = re.search(rf'id="id_{field}_error">(.*?)</div>', page, re.S)
    assert found, f"no error beside {field}"
    return html.unescape(found.group(1))


def input_tag(response, name: str) -> str:
    found = re.search(rf'<(?:input|select)[^>]*name="{name}"[^>]*>', response.content.decode())
    assert found, name
    return found.group(0)


def names_in_order(response) -> list[str]:
    return re.findall(
        r'<h2 class="h5 mb-0" id="provider-\d+-name">(.*?)</h2>', response.content.decode()
    )


def stored(config: ProviderConfig) -> dict:
    config.refresh_from_db()
    return crypto.decrypt_json(config.secrets_encrypted)


# Access ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/providers/", "/providers/add/", "/providers/add/smtp/", "/health/", "/tokens/",
             "/tokens/created/", "/providers/1/edit/", "/tokens/1/revoke/"],
)  # fmt: skip
def test_pages_need_a_signed_in_person(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "login" in response["Location"]


def test_pages_follow_the_content_security_policy(web, account):
    add(account)
    for path in ["/providers/", "/providers/add/", "/providers/add/ses/", "/health/", "/tokens/"]:
        page = web("get", path).content.decode()
        assert "style=" not in page and "<style" not in page, path
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert re.search(r"<title>[^<]+ · emailservice</title>", page) and "<h1" in page


# Add, per kind --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(specs()))
def test_each_kind_has_exactly_its_fields_and_secrets_are_password_inputs(web, kind):
    form = PROVIDER_FORMS[kind]()
    spec = specs()[kind]
    common = {"name", "enabled", "max_per_second", "max_per_day"}
    assert set(form.fields) == common | {o.name for o in spec.settings + spec.secrets}
    response = web("get", f"/providers/add/{kind}/")
    for option in spec.secrets:
        tag = input_tag(response, option.name)
        assert 'type="password"' in tag and "value=" not in tag
        assert f'<label class="form-label" for="id_{option.name}">' in response.content.decode()


def test_add_smtp_stores_settings_and_encrypted_secrets(web, account):
    response = web("post", "/providers/add/smtp/", smtp())
    config = ProviderConfig.objects.get(account=account)
    assert (
        response.status_code == 302 and response["Location"] == f"/providers/#provider-{config.pk}"
    )
    assert config.settings == loopback_smtp(2525)
    assert stored(config) == {"username": "mailer", "password": PASSWORD}
    page = web("get", "/providers/").content.decode()
    assert (
        "Added the provider relay." in page
        and 'Password: <span class="text-success-emphasis">set' in page
    )


def test_add_ses_and_sendgrid(web, account):
    web("post", "/providers/add/ses/", {"name": "aws", "region": "eu-west-1",
        "access_key_id": "AKIAEXAMPLE", "secret_access_key": AWS_SECRET})  # fmt: skip
    web("post", "/providers/add/sendgrid/", {"name": "grid", "api_key": API_KEY,
        "host": "https://api.eu.sendgrid.com"})  # fmt: skip
    ses, grid = ProviderConfig.objects.filter(account=account).order_by("priority")
    assert (ses.kind, ses.settings) == ("ses", {"region": "eu-west-1"})
    assert stored(ses)["secret_access_key"] == AWS_SECRET
    assert grid.settings == {"host": "https://api.eu.sendgrid.com"} and stored(grid) == {
        "api_key": API_KEY
    }
    assert names_in_order(web("get", "/providers/")) == ["aws", "grid"]
    assert not ses.enabled  # an unticked checkbox is not sent: the person chose "disabled"


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("smtp", {"name": "s", "host": "not a host!", "security": "ssl", "username": "typed-77"},
         {"host": "is not a host name", "password": "Is required when secrets.username"}),
        ("smtp", {"name": "", "host": "", "security": "none"},
         {"name": "Must not be empty", "host": "Is required for smtp"}),
        ("ses", {"name": "a", "region": "mars", "endpoint_url": "ftp://x",
                 "secret_access_key": AWS_SECRET},
         {"region": "is not an AWS region", "endpoint_url": "is not an http(s) URL",
          "access_key_id": "Is required for ses"}),
        ("sendgrid", {"name": "123", "host": "https://u:p@api.example.com"},
         {"name": "Must not be only digits", "host": "Must not contain credentials",
          "api_key": "Is required for sendgrid"}),
    ],
)  # fmt: skip
def test_validation_errors_show_beside_their_fields_and_keep_input(web, kind, data, expected):
    response = web("post", f"/providers/add/{kind}/", data)
    assert response.status_code == 200 and not ProviderConfig.objects.exists()
    for field, message in expected.items():
        assert message in error_of(response, field)
    page = response.content.decode()
    assert 'role="alert"' in page
    for name, value in data.items():
        if name in {o.name for o in specs()[kind].secrets}:
            assert value not in page  # a secret is never echoed back
        elif value and name != "security":
            assert f'value="{html.escape(value)}"' in page.replace("&#x27;", "'"), name


def test_a_name_already_used_is_refused_beside_the_name(web, account):
    add(account)
    response = web("post", "/providers/add/smtp/", smtp())
    assert "already exists" in error_of(response, "name")


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [("smtp", {"host": "10.1.2.3", "security": "none"}, "host"),
     ("smtp", {"host": "localhost", "security": "none"}, "host"),
     ("ses", {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:4566",
              "access_key_id": "a", "secret_access_key": "b"}, "endpoint_url"),
     ("sendgrid", {"host": "http://[::1]:8080", "api_key": "k"}, "host")],
)  # fmt: skip
def test_private_hosts_are_refused_when_not_allowed(web, settings, kind, data, field):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    response = web("post", f"/providers/add/{kind}/", {"name": "p", **data})
    assert "give a public host" in error_of(response, field)
    assert not ProviderConfig.objects.exists()


def test_gmail_preset_fills_the_smtp_form(web):
    page = web("get", "/providers/add/")
    assert 'href="/providers/add/smtp/?preset=gmail"' in page.content.decode()
    response = web("get", "/providers/add/smtp/?preset=gmail")
    assert 'value="smtp.gmail.com"' in input_tag(response, "host")
    assert 'value="587"' in input_tag(response, "port")
    assert re.search(r'<option value="starttls" selected>', response.content.decode())
    assert (
        'value="Gmail"' in input_tag(response, "name")
        and "app password" in response.content.decode()
    )


@pytest.mark.parametrize("path", ["/providers/add/gopher/", "/providers/add/ses/?preset=gmail",
                                  "/providers/add/smtp/?preset=nope"])  # fmt: skip
def test_unknown_kinds_and_presets_are_not_found(web, path):
    assert web("get", path).status_code == 404


# Edit: secrets are write-only ----------------------------------------------------------------


def test_edit_shows_secret_state_never_values_and_blank_keeps_them(web, account):
    config = add(account, secrets={"username": "mailer", "password": PASSWORD})
    response = web("get", f"/providers/{config.pk}/edit/")
    page = response.content.decode()
    assert PASSWORD not in page and "value=" not in input_tag(response, "password")
    assert page.count('<span class="badge text-bg-success ms-1">set</span>') == 2
    assert 'value="relay"' in input_tag(response, "name")
    data = smtp(name="renamed", port=2526, username="", password="")
    assert web("post", f"/providers/{config.pk}/edit/", data).status_code == 302
    config.refresh_from_db()
    assert (config.name, config.settings["port"]) == ("renamed", 2526)
    assert stored(config) == {"username": "mailer", "password": PASSWORD}


def test_edit_replaces_or_clears_a_secret(web, account):
    config = add(account, secrets={"username": "mailer", "password": PASSWORD})
    web("post", f"/providers/{config.pk}/edit/", smtp(username="", password="new-pass"))
    assert stored(config) == {"username": "mailer", "password": "new-pass"}
    both = smtp(username="", password="x", clear_password="on")
    assert "not both" in error_of(web("post", f"/providers/{config.pk}/edit/", both), "password")
    # The password can't go while the username needs it; clearing both is fine.
    response = web(
        "post", f"/providers/{config.pk}/edit/", smtp(username="", password="", clear_password="on")
    )
    assert "Is required when secrets.username is set" in error_of(response, "password")
    web("post", f"/providers/{config.pk}/edit/", smtp(username="", password="", clear_password="on",
        clear_username="on"))  # fmt: skip
    assert stored(config) == {}
    page = web("get", f"/providers/{config.pk}/edit/").content.decode()
    assert page.count("not set</span>") == 2 and "clear_password" not in page


def test_a_required_secret_can_be_replaced_but_not_cleared(web, account):
    config = add(account, "ses", "aws", settings={"region": "eu-west-1"},
                 secrets={"access_key_id": "AKIA", "secret_access_key": AWS_SECRET})  # fmt: skip
    response = web("get", f"/providers/{config.pk}/edit/")
    assert "clear_secret_access_key" not in response.content.decode()
    assert "required" not in input_tag(response, "secret_access_key")
    web(
        "post",
        f"/providers/{config.pk}/edit/",
        {"name": "aws", "enabled": "on", "region": "us-east-1"},
    )
    config.refresh_from_db()
    assert (
        config.settings == {"region": "us-east-1"}
        and stored(config)["secret_access_key"] == AWS_SECRET
    )


def test_edit_errors_keep_input_and_never_show_secrets(web, account, settings):
    settings.ALLOW_PRIVATE_PROVIDER_HOSTS = False
    config = add(account, secrets={"username": "mailer", "password": PASSWORD})
    response = web(
        "post", f"/providers/{config.pk}/edit/", smtp(host="192.168.1.5", password="typed-secret")
    )
    assert "private address" in error_of(response, "host")
    page = response.content.decode()
    assert 'value="192.168.1.5"' in page and "typed-secret" not in page
    config.refresh_from_db()
    assert config.settings["host"] == "127.0.0.1"


# The list: order, default, circuit, enable, delete ------------------------------------------


def test_list_shows_order_default_circuit_and_last_error(web, account):
    first = add(account, name="off", enabled=False)
    second = add(account, name="main")
    add(account, name="spare")
    breaker().record_failure(
        second.breaker_key, error="SMTP 535 at AUTH: bad credentials", trip_now=True
    )
    page = web("get", "/providers/").content.decode()
    assert names_in_order(web("get", "/providers/")) == ["off", "main", "spare"]
    card = page[page.index(f'id="provider-{second.pk}"') :]
    card = card[: card.index("</li>")]
    assert "default</span>" in card and "circuit open" in card
    assert "SMTP 535 at AUTH: bad credentials" in card
    off = page[page.index(f'id="provider-{first.pk}"') :]
    assert "default</span>" not in off[: off.index("</li>")] and "disabled</span>" in off


def test_enable_and_disable(web, account):
    config = add(account)
    assert web("post", f"/providers/{config.pk}/enabled/", {"enabled": "0"}).status_code == 302
    config.refresh_from_db()
    assert not config.enabled
    web("post", f"/providers/{config.pk}/enabled/", {"enabled": "1"})
    config.refresh_from_db()
    assert config.enabled
    assert web("get", f"/providers/{config.pk}/enabled/").status_code == 405


def test_arrows_reorder_and_make_default_moves_first(web, account):
    a, b, c = (add(account, name=n, priority=50) for n in "abc")  # equal priorities: id decides
    assert web("post", f"/providers/{c.pk}/move/", {"direction": "up"}).status_code == 302
    assert names_in_order(web("get", "/providers/")) == ["a", "c", "b"]
    web("post", f"/providers/{a.pk}/move/", {"direction": "down"})
    assert names_in_order(web("get", "/providers/")) == ["c", "a", "b"]
    web("post", f"/providers/{b.pk}/move/", {"direction": "down"})  # already last: stays
    web("post", f"/providers/{b.pk}/move/", {"direction": "first"})
    page = web("get", "/providers/")
    assert names_in_order(page) == ["b", "c", "a"]
    assert list(ProviderConfig.objects.order_by("priority").values_list("priority", flat=True)) == [
        10,
        20,
        30,
    ]
    card = page.content.decode().split(f'id="provider-{b.pk}"')[1].split("</li>")[0]
    assert "default</span>" in card and "Make default" not in card
    assert web("post", f"/providers/{b.pk}/move/", {"direction": "sideways"}).status_code == 302
    assert names_in_order(web("get", "/providers/")) == ["b", "c", "a"]


def test_delete_asks_then_deletes(web, account):
    config = add(account)
    assert (
        "Delete the provider relay?"
        in web("get", f"/providers/{config.pk}/delete/").content.decode()
    )
    assert ProviderConfig.objects.filter(pk=config.pk).exists()
    assert web("post", f"/providers/{config.pk}/delete/").status_code == 302
    assert not ProviderConfig.objects.filter(pk=config.pk).exists()


# Send test ------------------------------------------------------------------------------------


def test_send_test_through_a_real_smtp_server_shows_the_result(web, account, smtp_server):
    sink = smtp_server(credentials=("mailer", PASSWORD))
    account.email = "alice@example.org"
    account.save()
    config = add(account, settings=loopback_smtp(sink.port),
                 secrets={"username": "mailer", "password": PASSWORD})  # fmt: skip
    response = web("post", f"/providers/{config.pk}/test/")
    assert response["Location"] == f"/providers/#provider-{config.pk}"
    assert sink.received[0].rcpt_tos == ["alice@example.org"]
    page = web("get", "/providers/").content.decode()
    result = re.search(
        r'<div class="alert alert-success[^"]*test-result" role="status">(.*?)</div>', page, re.S
    )
    assert result and "Test message sent" in result.group(1)
    assert re.search(r"to alice@example.org in \d+ ms", result.group(1))
    assert "test-result" not in web("get", "/providers/").content.decode()  # shown once


def test_send_test_to_a_closed_port_shows_the_error(web, account, closed_port):
    config = add(account, settings=loopback_smtp(closed_port))
    web("post", f"/providers/{config.pk}/test/", {"to": "me@example.org"})
    page = web("get", "/providers/").content.decode()
    result = page[page.index("test-result") :]
    result = result[: result.index("</div>")]
    assert "not sent: provider_error" in result and "ms." in result and "Error" in result
    assert "circuit closed" in page  # one failure counts; the circuit opens after three


def test_send_test_needs_an_address(web, account):
    config = add(account)
    response = web("post", f"/providers/{config.pk}/test/")  # the account has no email
    assert response.status_code == 200 and "This field is required" in error_of(response, "to")
    response = web("post", f"/providers/{config.pk}/test/", {"to": "not an address"})
    assert "is not a valid email address" in error_of(response, "to")


# Account isolation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [("get", "edit/", None), ("post", "edit/", smtp(name="stolen")), ("get", "delete/", None),
     ("post", "delete/", None), ("get", "test/", None), ("post", "test/", {"to": "x@example.org"}),
     ("post", "move/", {"direction": "first"}), ("post", "enabled/", {"enabled": "0"})],
)  # fmt: skip
def test_another_accounts_provider_is_not_found(web, account, other_account, method, path, data):
    add(account, name="mine")
    theirs = add(other_account, name="theirs")
    before = ProviderConfig.objects.values().get(pk=theirs.pk)
    assert web(method, f"/providers/{theirs.pk}/{path}", data).status_code == 404
    assert ProviderConfig.objects.values().get(pk=theirs.pk) == before
    assert web("get", f"/providers/{2**64}/edit/").status_code == 404


def test_secrets_are_never_rendered_on_any_page(web, account, smtp_sink):
    web("post", "/providers/add/smtp/", smtp(port=smtp_sink.port))
    web("post", "/providers/add/ses/", {"name": "aws", "region": "eu-west-1",
        "access_key_id": "AKIAEXAMPLE", "secret_access_key": AWS_SECRET})  # fmt: skip
    web("post", "/providers/add/sendgrid/", {"name": "grid", "api_key": API_KEY})
    for config in ProviderConfig.objects.all():
        for path in ["edit/", "delete/", "test/"]:
            web("get", f"/providers/{config.pk}/{path}")
        web(
            "post",
            f"/providers/{config.pk}/edit/",
            {"name": config.name, "region": "bad", "host": "bad host"},
        )
    for path in ["/providers/", "/health/", "/tokens/"]:
        web("get", path)
    assert len(web.bodies) > 15
    for secret in SECRETS:
        assert all(secret not in body for body in web.bodies), secret


def test_each_provider_that_posts_events_shows_its_webhook_url_and_how_to_set_it_up(web, account):
    from harness.factories import make_provider

    gun = make_provider(account, "mailgun", name="gun", settings={"domain": "mg.example.com"},
                        secrets={"api_key": "key-1"})  # fmt: skip
    add(account)  # SMTP posts no webhooks
    page = web("get", "/providers/").content.decode()
    url = f"http://testserver/webhooks/in/{gun.webhook_token}/"
    assert page.count("<dt>Events webhook</dt>") == 1
    assert f"<code>{url}</code>" in page
    assert f"Sending &gt; Webhooks for the sending domain: add {url}" in page
