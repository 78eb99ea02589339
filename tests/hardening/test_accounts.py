"""Issue 9, item 8: accounts and throttling, each attack reproduced and refused.

Log-in and admin log-in throttles (per account name and address with a growing backoff, per
address across names), the trusted-proxy client address, sign-up and password change throttles,
sign-up that tells nobody whether an account exists, new API tokens never stored, no-store on
authenticated answers, the API rate limit per account and the token cap, and credentials kept
out of every log. The log-in throttle and the access log also run against the real stack:
gunicorn with production settings and its -c config, and the test run's Redis.
"""

from __future__ import annotations

import http.cookiejar
import importlib.util
import json
import logging
import re
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core import mail
from django.test import RequestFactory

from harness.waiting import wait_until
from mailer.models import ApiToken
from mailer.ratelimit import client_address, client_ip
from mailer.services import accounts as account_services
from mailer.services import token_create, token_revoke
from mailer.services.tokens import TokenLimitReached
from tests.appserver import AppServer, create_account, start_app_server

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "emailservice" / "gunicorn.conf.py"
GOOD_PASSWORD = "correct horse battery 42"
ATTACKER, OWNER, ELSEWHERE = "203.0.113.5", "198.51.100.7", "192.0.2.44"


@pytest.fixture
def clock(monkeypatch):
    """The backoffs' clock, moved by the test instead of waiting."""
    now = SimpleNamespace(t=time.time())

    def advance(seconds: float) -> None:
        now.t += seconds

    monkeypatch.setattr(account_services, "_now", lambda: now.t)
    return advance


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(
        username="olga", email="olga@example.com", password=GOOD_PASSWORD
    )


def log_in(client, password: str, ip: str, username: str = "olga", **extra):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, **extra
    )


# Log-in: per account name and address, with a growing backoff ----------------------------------


@pytest.mark.django_db
def test_failures_from_elsewhere_do_not_lock_the_owner_out(client, owner):
    """Before: five failures from anyone locked the account for everyone."""
    for _ in range(5):
        assert log_in(client, "wrong", ATTACKER).status_code == 200
    locked = log_in(client, GOOD_PASSWORD, ATTACKER)  # the right password, from the attacker
    assert locked.status_code == 429 and "Too many failed log-ins" in locked.content.decode()
    assert 1 <= int(locked["Retry-After"]) <= 60
    assert "_auth_user_id" not in client.session
    # Case and spaces make no other name.
    assert log_in(client, GOOD_PASSWORD, ATTACKER, username=" OLGA ").status_code == 429
    # The owner, from their own address, gets in.
    response = log_in(client, GOOD_PASSWORD, OWNER)
    assert response.status_code == 302 and response.url == "/emails/"


@pytest.mark.django_db
def test_the_backoff_grows_with_each_failure_and_a_success_clears_it(
    client, owner, clock, settings
):
    settings.LOGIN_BACKOFF_MAX_SECONDS = 500
    for _ in range(5):  # free
        assert log_in(client, "wrong", ATTACKER).status_code == 200
    waits = []
    for _ in range(4):
        refused = log_in(client, GOOD_PASSWORD, ATTACKER)
        assert refused.status_code == 429
        waits.append(int(refused["Retry-After"]))
        clock(waits[-1])  # the lock has passed: one more try is allowed, and fails
        assert log_in(client, "wrong", ATTACKER).status_code == 200
    assert waits == [60, 120, 240, 480]
    assert int(log_in(client, GOOD_PASSWORD, ATTACKER)["Retry-After"]) == 500  # the cap
    clock(500)
    assert log_in(client, GOOD_PASSWORD, ATTACKER).status_code == 302
    client.post("/accounts/logout/")
    for _ in range(5):  # the success forgot the failures: five free ones again
        assert log_in(client, "wrong", ATTACKER).status_code == 200
    assert log_in(client, "wrong", ATTACKER).status_code == 429


@pytest.mark.django_db
def test_one_address_failing_across_many_names_is_throttled(client, owner, settings):
    """Credential stuffing: one try per name, many names, from one address."""
    settings.LOGIN_FAILURES_PER_IP = "8/7d"
    for number in range(8):  # names with and without an account count alike
        assert log_in(client, "wrong", ATTACKER, username=f"user{number}").status_code == 200
    assert log_in(client, GOOD_PASSWORD, ATTACKER).status_code == 429
    assert log_in(client, GOOD_PASSWORD, OWNER).status_code == 302


@pytest.mark.django_db
def test_admin_login_is_throttled_like_the_site_login(client, owner):
    """Before: /admin/login/ took 30 wrong passwords, then the right one."""
    owner.is_staff = owner.is_superuser = True
    owner.save()
    statuses = [
        client.post(
            "/admin/login/", {"username": "olga", "password": f"guess {n}"}, REMOTE_ADDR=ATTACKER
        ).status_code
        for n in range(30)
    ]
    assert statuses == [200] * 5 + [429] * 25
    right = client.post(
        "/admin/login/", {"username": "olga", "password": GOOD_PASSWORD}, REMOTE_ADDR=ATTACKER
    )
    assert right.status_code == 429 and int(right["Retry-After"]) >= 1
    assert "Too many failed log-ins" in right.content.decode()
    assert "_auth_user_id" not in client.session
    # The site's log-in shares the counters; the owner elsewhere gets into the admin.
    assert log_in(client, GOOD_PASSWORD, ATTACKER).status_code == 429
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "olga", "password": GOOD_PASSWORD, "next": "/admin/"},
        REMOTE_ADDR=OWNER,
    )
    assert response.status_code == 302 and response.url == "/admin/"


# The client's address behind proxies ----------------------------------------------------------


def meta(remote: str, forwarded: str | None = None):
    request = RequestFactory().get("/", REMOTE_ADDR=remote)
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return request


def test_forwarded_for_is_believed_only_from_trusted_proxies(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip(meta("10.0.0.2", "1.2.3.4")) == "10.0.0.2"  # default: trust none
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8:ff::1"]
    assert client_ip(meta("10.0.0.2", "1.2.3.4")) == "1.2.3.4"
    # A client's own X-Forwarded-For is left of what our proxies appended: never believed.
    assert client_ip(meta("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.1.1.1")) == "1.2.3.4"
    assert client_ip(meta("2001:db8:ff::1", "1.2.3.4:5678")) == "1.2.3.4"
    assert client_ip(meta("10.0.0.2", "[2001:db8::7]:443")) == "2001:db8::7"
    assert client_ip(meta("10.0.0.2", "::ffff:1.2.3.4")) == "1.2.3.4"
    assert client_ip(meta("10.0.0.2", "")) == "10.0.0.2"
    assert client_ip(meta("10.0.0.2", "nonsense, 10.1.1.1")) == "10.1.1.1"
    assert client_ip(meta("10.0.0.2", "10.1.1.1, 10.2.2.2")) == "10.1.1.1"
    # Anyone else sending the header is just REMOTE_ADDR.
    assert client_ip(meta("8.8.8.8", "1.2.3.4")) == "8.8.8.8"
    # Throttles count an IPv6 client by its /64.
    assert client_address(meta("2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"
    assert client_address(meta("192.0.2.1")) == "192.0.2.1"


@pytest.mark.django_db
def test_behind_a_proxy_clients_are_told_apart_and_cannot_spoof(client, owner, settings):
    """Before: behind a proxy every client shared REMOTE_ADDR, so one attacker's failures were
    everyone's."""
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    for _ in range(5):
        assert log_in(client, "wrong", "10.0.0.2", HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 200
    assert (
        log_in(client, GOOD_PASSWORD, "10.0.0.2", HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 429
    )
    # The attacker writing another address in front changes nothing: the proxy appended theirs.
    spoofed = f"{OWNER}, {ATTACKER}"
    assert (
        log_in(client, GOOD_PASSWORD, "10.0.0.2", HTTP_X_FORWARDED_FOR=spoofed).status_code == 429
    )
    # The owner through the same proxy gets in.
    assert log_in(client, GOOD_PASSWORD, "10.0.0.3", HTTP_X_FORWARDED_FOR=OWNER).status_code == 302
    # Without trusted proxies the header means nothing: the attacker can't rotate addresses.
    settings.TRUSTED_PROXIES = []
    client.post("/accounts/logout/")
    for number in range(5):
        forged = f"198.18.0.{number}"
        assert log_in(client, "wrong", ELSEWHERE, HTTP_X_FORWARDED_FOR=forged).status_code == 200
    assert (
        log_in(client, GOOD_PASSWORD, ELSEWHERE, HTTP_X_FORWARDED_FOR="1.1.1.1").status_code == 429
    )


# Password change -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_old_password_check_is_throttled(client, owner, clock):
    """Before: a stolen session could guess the current password without limit."""
    client.force_login(owner)

    def change(old: str):
        return client.post(
            "/accounts/password/change/",
            {
                "old_password": old,
                "new_password1": "a new one 4242",
                "new_password2": "a new one 4242",
            },
        )

    for number in range(5):
        assert "old_password" in change(f"guess {number}").context["form"].errors
    refused = change(GOOD_PASSWORD)
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    assert "Too many wrong passwords" in refused.content.decode()
    owner.refresh_from_db()
    assert owner.check_password(GOOD_PASSWORD)
    clock(61)
    assert change(GOOD_PASSWORD).url == "/accounts/password/change/done/"


# Sign-up -------------------------------------------------------------------------------------


def sign_up(client, ip: str = ELSEWHERE, **overrides):
    data = {
        "username": "carol",
        "email": "carol@example.com",
        "password1": GOOD_PASSWORD,
        "password2": GOOD_PASSWORD,
    }
    return client.post("/accounts/signup/", {**data, **overrides}, REMOTE_ADDR=ip)


def link_in(message) -> str:
    return re.search(r"http://testserver(/accounts/signup/confirm/\S+/)", message.body).group(1)


@pytest.mark.django_db
def test_sign_up_does_not_tell_whether_an_account_exists(client, owner):
    """Before: "An account with this email already exists" / "A user with that username
    already exists" told anyone which addresses and names have accounts."""
    answers = {
        "new": sign_up(client, ip="192.0.2.1"),
        "taken email": sign_up(client, ip="192.0.2.2", email="OLGA@example.com"),
        "taken username": sign_up(client, ip="192.0.2.3", username="Olga"),
        "both taken": sign_up(client, ip="192.0.2.4", username="olga", email="olga@example.com"),
    }
    seen = {(r.status_code, r.get("Location"), r.content) for r in answers.values()}
    assert seen == {(302, "/accounts/signup/sent/", b"")}
    sent = client.get("/accounts/signup/sent/").content.decode()
    assert "Check your email" in sent and "already" not in sent
    assert get_user_model().objects.count() == 1  # nothing created yet
    new, taken_email, taken_name, both = mail.outbox
    assert new.to == ["carol@example.com"] and link_in(new)
    assert GOOD_PASSWORD not in new.body
    # The owner of the address hears about it; nobody else does.
    for message in (taken_email, both):
        assert message.to == ["olga@example.com"]
        assert message.subject == "Someone tried to sign up with your address"
        assert (
            "/accounts/signup/confirm/" not in message.body and "/accounts/login/" in message.body
        )
    assert (
        taken_name.to == ["carol@example.com"]
        and "username Olga, which is taken" in taken_name.body
    )


@pytest.mark.django_db
def test_the_emailed_link_creates_the_account_once(client):
    sign_up(client)
    [message] = mail.outbox
    link = link_in(message)
    assert "carol" not in link and GOOD_PASSWORD not in link  # encrypted, not just signed
    page = client.get(link)
    assert page.status_code == 200 and "Create my account" in page.content.decode()
    assert get_user_model().objects.count() == 0  # a mail scanner's GET creates nothing
    response = client.post(link)
    assert response.status_code == 302 and response.url == "/emails/"
    user = get_user_model().objects.get(username="carol")
    assert user.email == "carol@example.com" and user.check_password(GOOD_PASSWORD)
    assert client.get("/emails/").context["user"] == user
    client.post("/accounts/logout/")
    assert client.post(link).status_code == 409  # used
    assert client.get(link[:-5] + "AAAA/").status_code == 400  # not ours


@pytest.mark.django_db
def test_an_expired_link_creates_nothing(client, settings):
    sign_up(client)
    settings.SIGNUP_LINK_SECONDS = -1
    assert client.post(link_in(mail.outbox[0])).status_code == 400
    assert get_user_model().objects.count() == 0


@pytest.mark.django_db
def test_sign_up_is_throttled_per_address_and_mail_per_mailbox(client, settings):
    """Before: sign-up took any number of requests (and now each one sends an email)."""
    settings.SIGNUPS_PER_IP = "4/7d"
    settings.SIGNUP_EMAILS_PER_ADDRESS = "2/7d"
    answers = [sign_up(client, username=f"carol{n}", ip=ATTACKER).status_code for n in range(4)]
    assert answers == [302] * 4
    assert len(mail.outbox) == 2  # the mailbox got no more than its share, silently
    refused = sign_up(client, username="carol9", ip=ATTACKER)
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Too many sign-ups" in refused.content.decode()
    assert sign_up(client, username="dora", email="dora@example.com").status_code == 302


# API tokens: never stored raw; a cap per account ---------------------------------------------


def session_texts() -> list[str]:
    return [json.dumps(session.get_decoded()) for session in Session.objects.all()]


@pytest.mark.django_db
def test_a_new_token_is_shown_in_the_answer_and_never_stored(client, account):
    """Before: the raw token waited in the session until the "created" page was viewed."""
    client.force_login(account)
    form_id = re.search(r'name="form_id" value="([^"]+)"', client.get("/tokens/").content.decode())[
        1
    ]
    response = client.post("/tokens/", {"name": "deploy", "form_id": form_id})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = re.search(r'id="new-token"[^>]*value="([^"]+)"', response.content.decode())[1]
    assert raw.startswith("es_")
    assert all(raw not in text for text in session_texts())
    assert all(raw not in morsel.value for morsel in response.cookies.values())
    assert raw not in client.get("/tokens/created/").content.decode()
    # Posting the same form again (a reload) creates no second token and shows none.
    again = client.post("/tokens/", {"name": "deploy", "form_id": form_id})
    assert again.status_code == 200 and "shown only once" in again.content.decode()
    assert 'id="new-token"' not in again.content.decode()
    assert ApiToken.objects.filter(account=account).count() == 1
    assert all(raw not in text for text in session_texts())
    token = ApiToken.objects.get(account=account)
    assert raw not in (token.digest, token.prefix, token.name)
    assert client.get("/api/v1/emails", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


@pytest.mark.django_db
def test_active_tokens_are_capped_per_account(client, account, other_account, settings):
    """Before: an account could make any number of tokens (and each had its own rate limit)."""
    settings.MAX_API_TOKENS_PER_ACCOUNT = 3
    first = [token_create(account=account, name=f"t{n}")[0] for n in range(3)]
    with pytest.raises(TokenLimitReached, match="already has 3 active API tokens"):
        token_create(account=account, name="one too many")
    client.force_login(account)
    page = client.post("/tokens/", {"name": "one too many"})
    assert page.status_code == 200 and 'id="new-token"' not in page.content.decode()
    assert "already has 3 active API tokens" in page.content.decode()
    assert "Revoke one" in page.content.decode()
    assert account.api_tokens.count() == 3
    token_create(account=other_account, name="theirs")  # each account has its own cap
    token_revoke(token=first[0])  # revoked tokens don't count
    assert client.post("/tokens/", {"name": "replacement"}).status_code == 200
    assert account.api_tokens.filter(revoked_at__isnull=True).count() == 3


@pytest.mark.django_db
def test_all_tokens_of_an_account_share_its_rate_limit(client, account, other_account, settings):
    """Before: each token had API_RATE_LIMIT, so more tokens were more requests."""
    settings.API_RATE_LIMIT = "4/7d"
    raws = [token_create(account=account, name=f"t{n}")[1] for n in range(4)]

    def get(raw: str):
        return client.get("/api/v1/emails", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert [get(raw).status_code for raw in raws] == [200] * 4
    limited = get(token_create(account=account, name="fresh")[1])
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert "per account" in limited.json()["detail"]
    legacy = client.get("/view_sent_emails/", {"TOKEN": raws[0]})
    assert legacy.status_code == 429
    assert get(token_create(account=other_account, name="theirs")[1]).status_code == 200


# Cache-Control: no-store -----------------------------------------------------------------------


@pytest.mark.django_db
def test_authenticated_answers_are_never_cached(client, account):
    """Before: signed-in pages came without Cache-Control, so a shared computer's browser (or
    a proxy) kept copies of the account's emails."""
    anonymous = client.get("/accounts/signup/")
    assert "no-store" not in anonymous.get("Cache-Control", "")
    login = log_in(client, "pw-alice-123", OWNER, username="alice")
    assert login.status_code == 302 and "no-store" in login["Cache-Control"]
    for path in ["/emails/", "/send/", "/providers/", "/tokens/", "/health/", "/emails/999999/"]:
        response = client.get(path)
        assert "no-store" in response["Cache-Control"], path
        assert "private" in response["Cache-Control"], path
    static = client.get("/static/img/favicon.svg")
    assert static.status_code == 200 and "no-store" not in static.get("Cache-Control", "")
    client.post("/accounts/logout/")
    raw = token_create(account=account)[1]
    api = client.get("/api/v1/emails", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.status_code == 200 and "no-store" in api["Cache-Control"]
    legacy = client.get("/view_sent_emails/", {"TOKEN": raw})
    assert legacy.status_code == 200 and "no-store" in legacy["Cache-Control"]


# Logs ----------------------------------------------------------------------------------------


def gunicorn_conf():
    spec = importlib.util.spec_from_file_location("emailservice_gunicorn_conf", GUNICORN_CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorns_logger_redacts_credentials(tmp_path):
    """Unit check of the logger gunicorn is configured with (the live test below runs it)."""
    from gunicorn.config import Config

    from emailservice.logredact import RedactingLogger

    conf = gunicorn_conf()
    assert conf.logger_class == "emailservice.logredact.RedactingLogger"
    assert conf.timeout and conf.graceful_timeout
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    cfg.set("access_log_format", "%(r)s|%(U)s|%(q)s|%(f)s|%({authorization}i)s|%({raw_uri}e)s")
    logger = RedactingLogger(cfg)
    raw = "es_" + "A1b2C3d4" * 5
    uri = f"/view_sent_emails/?page=2&ToKeN={raw}&api_key=k3y&%74oken=t0k&x=1"
    environ = {
        "REQUEST_METHOD": "GET", "RAW_URI": uri, "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/view_sent_emails/", "QUERY_STRING": uri.partition("?")[2],
        "HTTP_REFERER": f"https://example.com/x?token={raw}",
    }  # fmt: skip
    request = SimpleNamespace(headers=[("AUTHORIZATION", f"Bearer {raw}")])
    response = SimpleNamespace(status="200 OK", headers=[], sent=10)
    logger.access(response, request, environ, timedelta(milliseconds=5))
    logger.exception("Error handling request %s", f"/accounts/password/reset/MQ/{raw[3:20]}/")
    logger.error("Error handling request %s", f"/accounts/signup/confirm/{raw}/")
    for log in (logger.access_log, logger.error_log):  # gunicorn's loggers are global: detach
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
    access = (tmp_path / "access.log").read_text()
    errors = (tmp_path / "error.log").read_text()
    for secret in (raw, raw[3:20], "k3y", "t0k"):
        assert secret not in access and secret not in errors, secret
    request_line, path, query, referer, authorization, raw_uri = access.strip().split("|")
    assert request_line == (
        "GET /view_sent_emails/?page=2&ToKeN=[redacted]&api_key=[redacted]&%74oken=[redacted]"
        "&x=1 HTTP/1.1"
    )
    assert path == "/view_sent_emails/" and query.startswith("page=2&ToKeN=[redacted]&")
    assert referer == "https://example.com/x?token=[redacted]"
    assert authorization == "[redacted]" and "ToKeN=[redacted]" in raw_uri
    assert "/accounts/password/reset/MQ/[redacted]/" in errors
    assert "/accounts/signup/confirm/[redacted]/" in errors


@pytest.mark.django_db
def test_djangos_own_logs_carry_the_path_only(client, account, caplog):
    """django.request logs 4xx/5xx with request.path: no query string, no headers."""
    raw = token_create(account=account)[1]
    with caplog.at_level(logging.DEBUG):
        client.get("/view_sent_emails/", {"TOKEN": raw, "page": "nope"})
        client.get("/view_sent_emails/", {"TOKEN": raw[:-2], "page": "1"})  # 403
        client.get("/api/v1/emails", {"token": raw})  # 401: tokens go in a header
        client.get("/api/v1/nowhere", {"token": raw}, HTTP_AUTHORIZATION=f"Bearer {raw}")
    logged = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("Forbidden: /view_sent_emails/") for message in logged)
    assert all(raw[3:-2] not in message for message in logged), logged


# The real stack: gunicorn (production settings, -c gunicorn.conf.py) and Redis ----------------


class Browser:
    """A cookie-keeping HTTP client that does not follow redirects; each request may claim an
    address in X-Forwarded-For (the app trusts 127.0.0.1 as its proxy here)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, server: AppServer, address: str) -> None:
        self.server, self.address = server, address
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), self._NoRedirect
        )

    def request(self, path: str, data: dict | None = None, headers: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.server.url + path, data=body)
        request.add_header("X-Forwarded-For", self.address)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def log_in(self, path: str, username: str, password: str):
        _, _, page = self.request(path)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        return self.request(
            path, {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening")
    access_log = tmp / "access.log"
    server = start_app_server(
        tmp,
        workers=2,
        # gunicorn reads GUNICORN_CMD_ARGS too: its config (the redacting logger) and an access
        # log to read, whether or not tests/appserver.py passes -c itself.
        GUNICORN_CMD_ARGS=(
            f"-c {shlex.quote(str(GUNICORN_CONF))} --access-logfile {shlex.quote(str(access_log))}"
        ),
        TRUSTED_PROXIES="127.0.0.1",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        LOG_LEVEL="WARNING",
        # Far longer than the test: a slow machine can't see a lock run out halfway.
        LOGIN_BACKOFF_SECONDS="3600",
    )
    server.access_log = access_log
    server.error_log = tmp / "gunicorn.log"
    yield server
    server.stop()


def wait_for_lines(path: Path, markers: list[str], timeout: float = 60) -> str:
    """The file's text once every marker is in it (gunicorn logs a request after answering)."""

    def logged() -> str | None:
        text = path.read_text() if path.exists() else ""
        return text if all(marker in text for marker in markers) else None

    try:
        return wait_until(logged, timeout=timeout, every=0.05, what=f"{markers} in {path.name}")
    except AssertionError:
        text = path.read_text() if path.exists() else ""
        missing = [marker for marker in markers if marker not in text]
        raise AssertionError(f"not logged: {missing}\n{text[-3000:]}") from None


def test_live_login_throttle_locks_the_attacker_not_the_owner(live):
    live.factory("account", "olga", "--password", GOOD_PASSWORD, "--staff")
    attacker = Browser(live, ATTACKER)
    statuses = [attacker.log_in("/accounts/login/", "olga", f"guess {n}")[0] for n in range(5)]
    assert statuses == [200] * 5
    status, headers, page = attacker.log_in("/accounts/login/", "olga", GOOD_PASSWORD)
    assert status == 429 and int(headers["Retry-After"]) > 60
    assert "Too many failed log-ins" in page
    # Before: that locked the account for everyone. The owner, from their address, gets in.
    owner = Browser(live, OWNER)
    status, headers, _ = owner.log_in("/accounts/login/", "olga", GOOD_PASSWORD)
    assert status == 302 and headers["Location"] == "/emails/"
    status, headers, _ = owner.request("/emails/")
    assert status == 200 and "no-store" in headers["Cache-Control"]
    # The admin's log-in: 30 wrong passwords from another address, then the right one.
    stuffer = Browser(live, "203.0.113.99")
    statuses = [stuffer.log_in("/admin/login/", "olga", f"guess {n}")[0] for n in range(30)]
    assert statuses == [200] * 5 + [429] * 25
    assert stuffer.log_in("/admin/login/", "olga", GOOD_PASSWORD)[0] == 429
    admin = Browser(live, "198.51.100.8")
    status, headers, _ = admin.log_in("/admin/login/?next=/admin/", "olga", GOOD_PASSWORD)
    assert status == 302 and headers["Location"] == "/admin/"


def test_live_logs_never_hold_a_token(live):
    raw = create_account(live, "ivan")
    client = Browser(live, ELSEWHERE)
    requests = [
        (f"/view_sent_emails/?TOKEN={raw}&page=1&n=1", {}),
        (f"/view_sent_emails/?page=1&token={raw}&n=2", {}),  # 403: not the original's name
        (f"/view_sent_emails/?TOKEN={raw}&page=zz&n=3", {}),
        (f"/api/v1/emails?api_key={raw}&n=4", {}),  # 401
        ("/api/v1/emails?n=5", {"Authorization": f"Bearer {raw}", "Referer": f"/x?TOKEN={raw}"}),
        (f"/view_sent_emails/?tOkEn={raw}&n=6", {}),
    ]
    statuses = [client.request(path, headers=headers)[0] for path, headers in requests]
    assert statuses[0] == 200 and statuses[1] == 403 and statuses[3] == 401 and statuses[4] == 200
    access = wait_for_lines(live.access_log, [f"n={n} HTTP/1.1" for n in range(1, 7)])
    assert "TOKEN=[redacted]&page=1&n=1" in access and "api_key=[redacted]&n=4" in access
    assert "TOKEN=[redacted]" in access and "/x?TOKEN=[redacted]" in access
    # Django's own warnings went to the error log, with the path only.
    errors = wait_for_lines(live.error_log, ["Forbidden: /view_sent_emails/"])
    secret = raw[3:]  # not even without the prefix
    assert secret not in access, access
    assert secret not in errors, errors
