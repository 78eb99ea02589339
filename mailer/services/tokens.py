"""Writes for API tokens: create (raw value shown once), revoke, authenticate."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from mailer.models import ApiToken

TOKEN_PREFIX = "es_"  # noqa: S105 (a marker that makes leaked tokens easy to scan for)


# API tokens ---------------------------------------------------------------------------------


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, account, name: str = "default") -> tuple[ApiToken, str]:
    """Create a token; return it with the raw value, which is never stored and shown once."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
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
