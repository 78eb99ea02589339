"""Account pages through the Django test client: sign-up, log-in and its throttle, log-out,
password change and reset, CSRF, and the original contract's browser redirects."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.core import mail
from django.test import Client

from mailer.services import token_create

pytestmark = pytest.mark.django_db

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
GOOD_PASSWORD = "correct horse battery 42"


def sign_up(client, **overrides):
    data = {
        "username": "carol",
        "email": "carol@example.com",
        "password1": GOOD_PASSWORD,
        "password2": GOOD_PASSWORD,
    }
    return client.post("/accounts/signup/", {**data, **overrides})


def log_in(client, username="alice", password="pw-alice-123", ip="10.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_root_sends_people_to_log_in_and_members_to_their_emails(client, account):
    assert client.get("/").url == "/accounts/login/"
    client.force_login(account)
    assert client.get("/").url == "/emails/"


def test_sign_up_creates_the_account_from_the_emailed_link_and_logs_in(client):
    page = client.get("/accounts/signup/")
    assert page.status_code == 200 and b"<h1" in page.content
    response = sign_up(client)
    assert response.status_code == 302 and response.url == "/accounts/signup/sent/"
    assert "Check your email" in client.get(response.url).content.decode()
    [message] = mail.outbox
    assert message.to == ["carol@example.com"]
    link = re.search(r"http://testserver(/accounts/signup/confirm/\S+/)", message.body).group(1)
    assert not get_user_model().objects.filter(username="carol").exists()
    response = client.post(link)
    assert response.status_code == 302 and response.url == "/emails/"
    user = get_user_model().objects.get(username="carol")
    assert user.email == "carol@example.com" and user.check_password(GOOD_PASSWORD)
    assert client.get("/emails/").context["user"] == user


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password2": "something else 42"}, "password2", "didn’t match"),
        ({"password1": "password", "password2": "password"}, "password2", "too common"),
        ({"password1": "carol1234", "password2": "carol1234"}, "password2", "similar"),
        ({"email": "not an email"}, "email", "valid email"),
        # A taken username or address is not an error on the page: the answer is by email
        # (tests/hardening/test_accounts.py), so the page tells nobody which accounts exist.
    ],
)
def test_sign_up_errors_are_beside_their_fields_and_keep_input(
    client, account, overrides, field, message
):
    account.email = "alice@example.com"
    account.save()
    response = sign_up(client, **overrides)
    assert response.status_code == 200
    form = response.context["form"]
    assert message in " ".join(form.errors[field])
    html = response.content.decode()
    assert f'id="id_{field}_error"' in html and 'role="alert"' in html
    assert re.search(rf'aria-describedby="[^"]*id_{field}_error', html)
    if field != "email":
        assert f'value="{overrides.get("email", "carol@example.com")}"' in html
    assert get_user_model().objects.count() == 1


def test_log_in_and_out(client, account):
    assert client.get("/accounts/login/").status_code == 200
    response = log_in(client)
    assert response.status_code == 302 and response.url == "/emails/"
    assert client.get("/accounts/logout/").status_code == 405  # log-out is a POST only
    response = client.post("/accounts/logout/")
    assert response.url == "/accounts/login/"
    assert client.get("/emails/").status_code == 302


def test_log_in_goes_back_to_next(client, account):
    assert client.get("/send/").url == "/accounts/login/?next=/send/"
    response = client.post(
        "/accounts/login/?next=/send/",
        {"username": "alice", "password": "pw-alice-123", "next": "/send/"},
    )
    assert response.url == "/send/"


def test_wrong_password_is_an_error_announced_to_screen_readers(client, account):
    response = log_in(client, password="nope")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'role="alert"' in html and "correct username and password" in html


def test_failed_logins_are_throttled_per_account_and_ip_without_checking_the_password(
    client, account, settings
):
    settings.LOGIN_FAILURES_BEFORE_BACKOFF = 5
    checked = []

    def count(sender, credentials, **kwargs):
        checked.append(credentials["username"])

    user_login_failed.connect(count)
    try:
        for _ in range(5):  # from one IP: this account at this IP waits
            assert log_in(client, password="wrong", ip="10.0.1.1").status_code == 200
        response = log_in(client, ip="10.0.1.1")  # the right password, too late
    finally:
        user_login_failed.disconnect(count)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "Too many failed log-ins" in response.content.decode()
    assert len(checked) == 5  # the sixth never reached authenticate()
    assert "_auth_user_id" not in client.session
    # Names differing in case are one account; from another IP the owner still gets in.
    assert log_in(client, username="ALICE", ip="10.0.1.1").status_code == 429
    assert log_in(client, ip="10.0.2.2").status_code == 302


def test_failed_logins_are_throttled_per_ip(client, account, settings):
    settings.LOGIN_FAILURES_PER_IP = "3/15m"
    for name in ("x", "y", "z"):  # unknown names count too: they look the same as real ones
        assert log_in(client, username=name, password="wrong").status_code == 200
    assert log_in(client).status_code == 429
    assert log_in(client, ip="10.9.9.9").status_code == 302


def test_password_change(client, account):
    assert client.get("/accounts/password/change/").status_code == 302
    client.force_login(account)
    assert client.get("/accounts/password/change/").status_code == 200
    wrong = client.post(
        "/accounts/password/change/",
        {"old_password": "nope", "new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD},
    )
    assert "old_password" in wrong.context["form"].errors
    response = client.post(
        "/accounts/password/change/",
        {
            "old_password": "pw-alice-123",
            "new_password1": GOOD_PASSWORD,
            "new_password2": GOOD_PASSWORD,
        },
    )
    assert response.url == "/accounts/password/change/done/"
    assert client.get(response.url).status_code == 200  # still logged in
    account.refresh_from_db()
    assert account.check_password(GOOD_PASSWORD)


def reset_link(message) -> str:
    return re.search(r"http://testserver(/accounts/password/reset/\S+/)", message.body).group(1)


def test_password_reset_by_email(client, account):
    account.email = "alice@example.com"
    account.save()
    response = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.url == "/accounts/password/reset/sent/"
    [message] = mail.outbox
    assert message.to == ["alice@example.com"] and "password" in message.subject.lower()
    confirm = client.get(reset_link(message), follow=True)
    assert confirm.status_code == 200 and confirm.context["validlink"]
    done = client.post(
        confirm.redirect_chain[-1][0],
        {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD},
    )
    assert done.url == "/accounts/password/reset/done/"
    assert log_in(client, password=GOOD_PASSWORD).status_code == 302
    # The link works once.
    assert not client.get(reset_link(message), follow=True).context["validlink"]


def test_password_reset_for_an_unknown_address_looks_the_same(client, account):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.url == "/accounts/password/reset/sent/" and mail.outbox == []


def test_password_reset_is_throttled_per_address_and_per_ip(client, account, settings):
    settings.PASSWORD_RESETS_PER_EMAIL = "2/h"
    settings.PASSWORD_RESETS_PER_IP = "3/h"
    account.email = "alice@example.com"
    account.save()
    for _ in range(3):
        response = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
        assert response.url == "/accounts/password/reset/sent/"  # the same answer each time
    assert len(mail.outbox) == 2  # the address got no more than its limit
    response = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 429 and "Too many reset requests" in response.content.decode()


def test_csrf_is_enforced_on_forms(account):
    client = Client(enforce_csrf_checks=True)
    data = {"username": "alice", "password": "pw-alice-123"}
    assert client.post("/accounts/login/", data).status_code == 403
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = client.post("/accounts/login/", {**data, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert client.post("/accounts/logout/").status_code == 403  # log-out needs it too


# The original contract opened in a browser ---------------------------------------------------


def test_original_send_page_leads_to_the_send_form(client, account):
    response = client.get("/send_email/", headers=HTML)
    assert response.url == "/accounts/login/?next=/send/"
    assert response["Vary"] == "Accept" or "Accept" in response["Vary"]
    client.force_login(account)
    assert client.get("/send_email/", headers=HTML).url == "/send/"
    # An API client still gets the original's answer: only POST.
    assert client.get("/send_email/").status_code == 405


def test_original_list_leads_to_the_sent_emails_page_in_a_browser(client, account):
    raw = token_create(account=account)[1]
    response = client.get("/view_sent_emails/", {"TOKEN": raw, "page": "2"}, headers=HTML)
    assert response.status_code == 302 and response.url == "/emails/?page=2"
    assert client.get("/view_sent_emails/", headers=HTML).url == "/emails/"
    json_client = client.get("/view_sent_emails/", {"TOKEN": raw})
    assert json_client.status_code == 200 and json_client.json()["count"] == 0
