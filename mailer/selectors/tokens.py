"""Reads of API tokens for the tokens page: the account's tokens, one token by id."""

from __future__ import annotations

from mailer.models import MAX_ID, ApiToken


def token_list(*, account) -> list[ApiToken]:
    """The account's tokens, newest first, revoked ones included."""
    return list(ApiToken.objects.filter(account=account).order_by("-created_at", "-id"))


def token_get(*, account, token_id: int) -> ApiToken:
    """One token of this account; ApiToken.DoesNotExist for any other id."""
    if not 0 < token_id <= MAX_ID:
        raise ApiToken.DoesNotExist
    return ApiToken.objects.get(account=account, pk=token_id)


def token_active_count(*, account) -> int:
    """How many of the account's tokens the API still accepts."""
    return ApiToken.objects.filter(account=account, revoked_at__isnull=True).count()
