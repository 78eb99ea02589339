"""Writes for API tokens: create (raw value shown once), revoke, authenticate."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from time import monotonic as _monotonic
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_save
from django.utils import timezone

from mailer import cacheguard
from mailer.errors import Conflict
from mailer.models import ApiToken

TOKEN_PREFIX = "es_"  # noqa: S105 (a marker that makes leaked tokens easy to scan for)
MAX_API_TOKENS_PER_ACCOUNT = 20  # the default; the setting of that name overrides it
# Each process keeps the tokens it authenticated for TOKEN_CACHE_SECONDS (the default here), at
# most _CACHED_TOKENS of them. A revocation (or a change to the account) is also stamped in the
# shared cache, which each request reads in its rate limit's round trip (RevocationCheck): with
# Redis up a revoked token stops at once everywhere, and within TOKEN_CACHE_SECONDS whatever
# happens to Redis.
TOKEN_CACHE_SECONDS = 1.0
_CACHED_TOKENS = 1024
_STAMP_SECONDS = 60  # at least; a stamp outlives every entry it could concern


class TokenLimitReached(Conflict):
    """The account has as many active tokens as it may have."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This account already has {limit} active API tokens, the most it may have "
            f"(MAX_API_TOKENS_PER_ACCOUNT). Revoke one it no longer uses, then create another."
        )
        self.limit = limit


# API tokens ---------------------------------------------------------------------------------


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, account, name: str = "default") -> tuple[ApiToken, str]:
    """Create a token; return it with the raw value, which is never stored and shown once.

    TokenLimitReached when the account already has MAX_API_TOKENS_PER_ACCOUNT active tokens
    (0: no limit). The account's row is locked meanwhile, so two creations at once can't both
    take the last place.
    """
    limit = int(getattr(settings, "MAX_API_TOKENS_PER_ACCOUNT", MAX_API_TOKENS_PER_ACCOUNT))
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        if limit > 0:
            users = get_user_model().objects.select_for_update().filter(pk=account.pk)
            list(users.values_list("pk", flat=True))  # take the lock
            active = ApiToken.objects.filter(account=account, revoked_at__isnull=True).count()
            if active >= limit:
                raise TokenLimitReached(limit)
        token = ApiToken.objects.create(
            account=account, name=name, prefix=raw[:10], digest=_digest(raw)
        )
    return token, raw


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    _recent.forget(token.digest)
    _stamp(token.account_id)


def _stamp_key(account_id: int) -> str:
    return f"tokens:changed:{account_id}"


def _stamp_seconds() -> int:
    seconds = float(getattr(settings, "TOKEN_CACHE_SECONDS", TOKEN_CACHE_SECONDS))
    return max(_STAMP_SECONDS, int(seconds) + 5)


def _stamp(account_id: int) -> None:
    """Tell every process that tokens of this account read before now must be read again."""
    cacheguard.run(
        "announcing a token revocation (other processes see it within TOKEN_CACHE_SECONDS)",
        lambda: cache.set(_stamp_key(account_id), time.time_ns(), timeout=_stamp_seconds()),
    )


@dataclass
class RevocationCheck:
    """A mailer.roundtrip rider: was a token of this account revoked (or the account changed)
    since this process read `token` from the database? Then `stale`: read it again."""

    token: ApiToken
    stale: bool = False

    def queue(self, pipe: Any, codec: Any) -> None:
        pipe.get(codec.make_key(_stamp_key(self.token.account_id)))

    def take(self, replies: list[Any], codec: Any) -> None:
        stamp = None if replies[0] is None else codec.decode(replies[0])
        self.stale = isinstance(stamp, int) and stamp >= self.token.read_at_ns

    def failed(self) -> None:
        """Redis is away: the entry's age (TOKEN_CACHE_SECONDS) is the bound left."""


def token_revocation_check(token: ApiToken, *, asked_at_ns: int) -> RevocationCheck | None:
    """The check a request should make for a token token_authenticate answered from this
    process's memory (read before `asked_at_ns`, when the request asked); None when the
    request's own read came from the database."""
    return None if token.read_at_ns >= asked_at_ns else RevocationCheck(token)


def token_reread(*, raw: str) -> ApiToken | None:
    """token_authenticate from the database, whatever this process remembers."""
    _recent.forget(_digest(raw))
    return token_authenticate(raw=raw)


class _RecentTokens:
    """Tokens this process authenticated in the last TOKEN_CACHE_SECONDS, by digest: every API
    request authenticates, and this spares most of them the query. Bounded (least recently used
    goes first); only active tokens are kept, so guessing fills nothing."""

    def __init__(self) -> None:
        self._tokens: OrderedDict[str, tuple[float, ApiToken]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiToken | None:
        """The token remembered under digest if it was read less than TOKEN_CACHE_SECONDS ago."""
        seconds = float(getattr(settings, "TOKEN_CACHE_SECONDS", TOKEN_CACHE_SECONDS))
        with self._lock:
            found = self._tokens.get(digest)
            if found is None or _monotonic() - found[0] >= seconds:
                self._tokens.pop(digest, None)
                return None
            self._tokens.move_to_end(digest)
            return found[1]

    def put(self, token: ApiToken) -> None:
        with self._lock:
            self._tokens[token.digest] = (_monotonic(), token)
            self._tokens.move_to_end(token.digest)
            while len(self._tokens) > _CACHED_TOKENS:
                self._tokens.popitem(last=False)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._tokens.pop(digest, None)

    def forget_account(self, account_id: int) -> None:
        with self._lock:
            for digest in [d for d, (_, t) in self._tokens.items() if t.account_id == account_id]:
                del self._tokens[digest]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


_recent = _RecentTokens()


def token_cache_clear() -> None:
    """Forget every token this process remembers (tests; an operator's shell)."""
    _recent.clear()


def _account_saved(sender, instance, **kwargs) -> None:
    """An account changed (its email, deactivated): this process's requests see it at once,
    the others at their next request (TOKEN_CACHE_SECONDS if Redis is away)."""
    _recent.forget_account(instance.pk)
    _stamp(instance.pk)


post_save.connect(_account_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="tokens-account")


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The active token matching raw, with its account; records when it was last used (at most
    once a minute). A revoked token, or one of a deactivated account, is refused within
    TOKEN_CACHE_SECONDS."""
    if not raw or len(raw) > 200:
        return None
    digest = _digest(raw)
    token = _recent.get(digest)
    if token is None:
        read_at_ns = time.time_ns()  # before the read: a stamp from during it counts
        token = (
            ApiToken.objects.select_related("account")
            .filter(digest=digest, revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.account.is_active:
            return None
        token.read_at_ns = read_at_ns
        _recent.put(token)
    now = timezone.now()
    # Write at most once a minute per token: authentication is on every request's hot path.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
