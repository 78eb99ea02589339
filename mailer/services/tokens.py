"""Writes for API tokens: create (raw value shown once), revoke, authenticate."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from mailer.errors import Conflict
from mailer.models import ApiToken

TOKEN_PREFIX = "es_"  # noqa: S105 (a marker that makes leaked tokens easy to scan for)
MAX_API_TOKENS_PER_ACCOUNT = 20  # the default; the setting of that name overrides it


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


def token_authenticate(*, raw: str) -> ApiToken | None:
    """The active token matching raw, with its account; records when it was last used."""
    if not raw or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("account")
        .filter(digest=_digest(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.account.is_active:
        return None
    now = timezone.now()
    # Write at most once a minute per token: authentication is on every request's hot path.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
