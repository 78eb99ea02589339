"""Writes for people's accounts: sign-up, and throttles on failed log-ins and password resets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django_ratelimit.core import get_usage

logger = logging.getLogger("mailer.services")

# Defaults in django-ratelimit's syntax ("5/15m": 5 per 15 minutes); settings may override them.
LOGIN_FAILURES_PER_ACCOUNT = "5/15m"
LOGIN_FAILURES_PER_IP = "20/15m"
PASSWORD_RESETS_PER_EMAIL = "3/h"  # noqa: S105 (a rate, not a password)
PASSWORD_RESETS_PER_IP = "10/h"  # noqa: S105


def account_sign_up(*, username: str, email: str, password: str) -> AbstractBaseUser:
    """Create a person's account; the caller has validated the fields (the sign-up form)."""
    return get_user_model().objects.create_user(username=username, email=email, password=password)


@dataclass(frozen=True)
class _Counter:
    group: str
    rate: str
    value: str  # whose count: a username, an address, an IP


def _usage(request: HttpRequest, counter: _Counter, *, increment: bool) -> dict | None:
    """django-ratelimit's fixed-window count (atomic add/incr in the shared cache), or None
    when the cache can't count: then nobody is locked out, and that is logged."""
    try:
        usage = get_usage(
            request,
            group=counter.group,
            key=lambda group, request: counter.value,
            rate=counter.rate,
            increment=increment,
        )
    except Exception:
        logger.warning("cache unreachable: %s not counted", counter.group, exc_info=True)
        return None
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


def _ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _login_counters(request: HttpRequest, username: str) -> list[_Counter]:
    return [
        _Counter(
            "login-failures-account",
            getattr(settings, "LOGIN_FAILURES_PER_ACCOUNT", LOGIN_FAILURES_PER_ACCOUNT),
            # Counted for names without an account too: the answer must not tell them apart.
            username.strip().casefold(),
        ),
        _Counter(
            "login-failures-ip",
            getattr(settings, "LOGIN_FAILURES_PER_IP", LOGIN_FAILURES_PER_IP),
            _ip(request),
        ),
    ]


def login_throttle_check(*, request: HttpRequest, username: str) -> int:
    """Seconds this log-in must wait (its account or IP failed too often), else 0."""
    return _wait(request, _login_counters(request, username))


def login_failure_record(*, request: HttpRequest, username: str) -> None:
    """Count one failed log-in against the account name and the client's IP."""
    _count(request, _login_counters(request, username))


def password_reset_throttle(*, request: HttpRequest, email: str) -> tuple[int, bool]:
    """Count one reset request; return (seconds the IP must wait, whether to send the mail).

    An IP over its limit is told to wait. An address over its limit gets no more mail, but the
    answer stays the same, so nobody learns whether the address has an account, and nobody can
    flood a mailbox through our providers.
    """
    ip = _Counter(
        "password-reset-ip",
        getattr(settings, "PASSWORD_RESETS_PER_IP", PASSWORD_RESETS_PER_IP),
        _ip(request),
    )
    address = _Counter(
        "password-reset-email",
        getattr(settings, "PASSWORD_RESETS_PER_EMAIL", PASSWORD_RESETS_PER_EMAIL),
        email.strip().casefold(),
    )
    wait = _wait(request, [ip])
    if wait:
        return wait, False
    send = _wait(request, [address]) == 0
    _count(request, [ip, address])
    return 0, send
