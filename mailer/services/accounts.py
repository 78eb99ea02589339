"""Writes for people's accounts: sign-up by emailed link, and the throttles on log-ins, sign-ups,
password changes and password resets (README: Accounts and throttling).

Every count lives in the shared cache (Redis), so all web processes agree; when the cache can't
count, nobody is locked out and that is logged. Every throttle keys the client on
mailer.ratelimit.client_address (TRUSTED_PROXIES decides whether X-Forwarded-For is believed).
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django_ratelimit.core import get_usage

from mailer import cacheguard
from mailer.crypto import fernet
from mailer.errors import Conflict
from mailer.ratelimit import client_address

logger = logging.getLogger("mailer.services")

# Defaults; settings (README: Accounts and throttling) may override each. Rates are in
# django-ratelimit's syntax ("20/15m": 20 per 15 minutes, in a fixed window).
LOGIN_FAILURES_BEFORE_BACKOFF = 5
LOGIN_BACKOFF_SECONDS = 60
LOGIN_BACKOFF_MAX_SECONDS = 3600
LOGIN_FAILURES_FORGET_SECONDS = 24 * 3600
LOGIN_FAILURES_PER_IP = "20/15m"
PASSWORD_RESETS_PER_EMAIL = "3/h"  # noqa: S105 (a rate, not a password)
PASSWORD_RESETS_PER_IP = "10/h"  # noqa: S105
SIGNUPS_PER_IP = "10/h"
SIGNUP_EMAILS_PER_ADDRESS = "3/h"
SIGNUP_LINK_SECONDS = 3 * 24 * 3600


def _setting(name: str):
    return getattr(settings, name, globals()[name])


def _now() -> float:
    """The clock of the backoffs (tests move it instead of waiting)."""
    return time.time()


# Fixed windows (django-ratelimit) ------------------------------------------------------------


@dataclass(frozen=True)
class _Counter:
    group: str
    rate: str
    value: str  # whose count: an address, an email address


def _usage(request: HttpRequest, counter: _Counter, *, increment: bool) -> dict | None:
    """django-ratelimit's fixed-window count (atomic add/incr in the shared cache), or None
    when the cache can't count: then nobody is locked out, and that is logged."""
    usage = cacheguard.call(
        f"{counter.group} (not counted)",
        lambda: get_usage(
            request,
            group=counter.group,
            key=lambda group, request: counter.value,
            rate=counter.rate,
            increment=increment,
        ),
        None,
    )
    if usage is None or usage["limit"] == 0:  # 0: the cache failed to count
        return None
    return usage


def _wait(request: HttpRequest, counters: list[_Counter]) -> int:
    """Seconds until every counter is under its limit again; 0 when none is at its limit."""
    waits = []
    for counter in counters:
        usage = _usage(request, counter, increment=False)
        if usage is not None and usage["count"] >= usage["limit"]:
            waits.append(max(1, usage["time_left"]))
    return max(waits, default=0)


def _count(request: HttpRequest, counters: list[_Counter]) -> None:
    for counter in counters:
        _usage(request, counter, increment=True)


# Growing backoff ---------------------------------------------------------------------------


class _Backoff:
    """Failures of one kind for one key (an account name with a client address, an account):
    the first LOGIN_FAILURES_BEFORE_BACKOFF are free, each one after that locks the key for
    twice as long as the one before (LOGIN_BACKOFF_SECONDS, then 2x, 4x ... at most
    LOGIN_BACKOFF_MAX_SECONDS). A success clears the key; failures are forgotten
    LOGIN_FAILURES_FORGET_SECONDS after the last one."""

    def __init__(self, scope: str, *parts: str) -> None:
        digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]
        self.count_key = f"backoff:{scope}:{digest}:n"
        self.until_key = f"backoff:{scope}:{digest}:until"

    def wait(self) -> int:
        """Seconds until the next try is allowed; 0 when it is allowed now."""
        until = cacheguard.call(
            "login backoff (not checked)", lambda: cache.get(self.until_key), None
        )
        if until is None:
            return 0
        return max(0, math.ceil(float(until) - _now()))

    def failure(self) -> int:
        """Count one failure; return the lock it earned in seconds (0: still free)."""
        forget = int(_setting("LOGIN_FAILURES_FORGET_SECONDS"))

        def count() -> int:
            cache.add(self.count_key, 0, timeout=forget)
            failures = cache.incr(self.count_key)
            cache.touch(self.count_key, timeout=forget)
            return failures

        failures = cacheguard.call("login failure (not counted)", count, None)
        if failures is None:
            return 0
        excess = failures - int(_setting("LOGIN_FAILURES_BEFORE_BACKOFF"))
        if excess < 0:
            return 0
        lock = min(
            float(_setting("LOGIN_BACKOFF_MAX_SECONDS")),
            float(_setting("LOGIN_BACKOFF_SECONDS")) * 2 ** min(excess, 32),
        )
        cacheguard.run(
            "login backoff (not stored)",
            lambda: cache.set(self.until_key, _now() + lock, timeout=math.ceil(lock) + 5),
        )
        return math.ceil(lock)

    def clear(self) -> None:
        cacheguard.run(
            "login backoff (not cleared)",
            lambda: cache.delete_many([self.count_key, self.until_key]),
        )


# Log-in ------------------------------------------------------------------------------------


def _login_name(username: str) -> str:
    # Counted for names without an account too: the answer must not tell them apart.
    return (username or "").strip().casefold()


def _login_backoff(request: HttpRequest, username: str) -> _Backoff:
    """The account name together with the client's address: someone else failing from
    elsewhere never locks the owner out."""
    return _Backoff("login", _login_name(username), client_address(request))


def _login_ip_counter(request: HttpRequest) -> _Counter:
    """Failures from one address across every account name (credential stuffing)."""
    return _Counter("login-failures-ip", _setting("LOGIN_FAILURES_PER_IP"), client_address(request))


def login_throttle_check(*, request: HttpRequest, username: str) -> int:
    """Seconds this log-in must wait (this name failed too often from this address, or this
    address failed too often across names), else 0. Checked before the password is."""
    return max(
        _login_backoff(request, username).wait(), _wait(request, [_login_ip_counter(request)])
    )


def login_failure_record(*, request: HttpRequest, username: str) -> None:
    """Count one failed log-in against the name at this address, and against the address."""
    _login_backoff(request, username).failure()
    _count(request, [_login_ip_counter(request)])


def login_success_record(*, request: HttpRequest, username: str) -> None:
    """The right password: this name's failures at this address are forgotten."""
    _login_backoff(request, username).clear()


# Password change ---------------------------------------------------------------------------


def _password_check_backoff(account: AbstractBaseUser) -> _Backoff:
    # Per account: only someone holding its session can fail here.
    return _Backoff("password-check", str(account.pk))


def password_check_throttle(*, account: AbstractBaseUser) -> int:
    """Seconds before this account's current password may be checked again (password change),
    else 0. The same backoff as log-ins, so a stolen session can't guess the password."""
    return _password_check_backoff(account).wait()


def password_check_record(*, account: AbstractBaseUser, correct: bool) -> None:
    backoff = _password_check_backoff(account)
    if correct:
        backoff.clear()
    else:
        backoff.failure()


# Password reset ----------------------------------------------------------------------------


def password_reset_throttle(*, request: HttpRequest, email: str) -> tuple[int, bool]:
    """Count one reset request; return (seconds the IP must wait, whether to send the mail).

    An IP over its limit is told to wait. An address over its limit gets no more mail, but the
    answer stays the same, so nobody learns whether the address has an account, and nobody can
    flood a mailbox through our providers.
    """
    ip = _Counter("password-reset-ip", _setting("PASSWORD_RESETS_PER_IP"), client_address(request))
    address = _Counter(
        "password-reset-email", _setting("PASSWORD_RESETS_PER_EMAIL"), email.strip().casefold()
    )
    wait = _wait(request, [ip])
    if wait:
        return wait, False
    send = _wait(request, [address]) == 0
    _count(request, [ip, address])
    return 0, send


# Sign-up -----------------------------------------------------------------------------------


class SignUpMail(enum.Enum):
    """Which message a sign-up request sent (the page answers the same for each)."""

    CONFIRM = "confirm"  # a new account: the link that creates it
    EMAIL_TAKEN = "email_taken"  # to the owner of the address: someone tried to sign up
    USERNAME_TAKEN = "username_taken"  # to the address given: pick another username
    NONE = "none"  # the address had its share of sign-up mail this hour


def sign_up_throttle(*, request: HttpRequest) -> int:
    """Count one sign-up from the client's address; seconds it must wait, else 0."""
    ip = _Counter("signup-ip", _setting("SIGNUPS_PER_IP"), client_address(request))
    wait = _wait(request, [ip])
    if not wait:
        _count(request, [ip])
    return wait


def _taken(*, username: str = "", email: str = "") -> AbstractBaseUser | None:
    users = get_user_model().objects
    if email:
        return users.filter(email__iexact=email).order_by("pk").first()
    return users.filter(username__iexact=username).order_by("pk").first()


def _send(request: HttpRequest, *, to: str, subject: str, template: str, context: dict) -> None:
    """One message through the site's failover mailer; a failure is logged (never the link)."""
    context = {
        "site": request.get_host(),
        "login_url": request.build_absolute_uri(reverse("login")),
        "signup_url": request.build_absolute_uri(reverse("signup")),
        "reset_url": request.build_absolute_uri(reverse("password_reset")),
        **context,
    }
    body = render_to_string(template, context)
    try:
        EmailMessage(subject, body, None, [to]).send()
    except Exception:
        logger.exception("sign-up mail (%s) not sent", template)


def sign_up_request(
    *, request: HttpRequest, username: str, email: str, password: str
) -> SignUpMail:
    """Answer a valid sign-up form by email only, so the page never says whether the username
    or the address has an account:

    - both free: a link that creates the account (nothing is stored until it is opened; the
      link carries the details, encrypted with ENCRYPTION_KEYS, for SIGNUP_LINK_SECONDS);
    - the address has an account: its owner is told someone tried to sign up with it;
    - only the username is taken: the address given is told to pick another.

    Each address gets at most SIGNUP_EMAILS_PER_ADDRESS of these (silently: the page is the
    same), so nobody floods a mailbox through our providers.
    """
    address = _Counter(
        "signup-email", _setting("SIGNUP_EMAILS_PER_ADDRESS"), email.strip().casefold()
    )
    if _wait(request, [address]):
        return SignUpMail.NONE
    _count(request, [address])
    owner = _taken(email=email)
    if owner is not None:
        _send(
            request,
            to=owner.email,
            subject="Someone tried to sign up with your address",
            template="registration/signup_email_taken.txt",
            context={"user": owner},
        )
        return SignUpMail.EMAIL_TAKEN
    if _taken(username=username) is not None:
        _send(
            request,
            to=email,
            subject="Choose another username for emailservice",
            template="registration/signup_email_username_taken.txt",
            context={"username": username},
        )
        return SignUpMail.USERNAME_TAKEN
    details = {"v": 1, "username": username, "email": email, "password": make_password(password)}
    link = fernet().encrypt(json.dumps(details).encode()).decode()
    _send(
        request,
        to=email,
        subject="Confirm your emailservice account",
        template="registration/signup_email_confirm.txt",
        context={
            "username": username,
            "confirm_url": request.build_absolute_uri(reverse("signup-confirm", args=[link])),
            "days": max(1, round(int(_setting("SIGNUP_LINK_SECONDS")) / 86400)),
        },
    )
    return SignUpMail.CONFIRM


def sign_up_link_read(link: str) -> dict | None:
    """The details a sign-up link carries, or None when it is not ours or has expired."""
    try:
        details = json.loads(
            fernet().decrypt(link.encode(), ttl=int(_setting("SIGNUP_LINK_SECONDS")))
        )
    except (InvalidToken, ValueError, TypeError):
        return None
    if not isinstance(details, dict) or details.get("v") != 1:
        return None
    return details


class SignUpConflict(Conflict):
    """The username or the address got an account since the link was sent."""


def account_sign_up(*, username: str, email: str, password_hash: str) -> AbstractBaseUser:
    """Create the account a sign-up link describes (the password is already hashed)."""
    users = get_user_model().objects
    try:
        with transaction.atomic():
            if _taken(email=email) is not None or _taken(username=username) is not None:
                raise SignUpConflict
            user = users.create_user(username=username, email=email)
            user.password = password_hash
            user.save(update_fields=["password"])
    except IntegrityError:  # the same username, at the same moment
        raise SignUpConflict from None
    return user
