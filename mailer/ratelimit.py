"""Requests per API token, counted in the shared cache (Redis) so every worker agrees."""

from __future__ import annotations

import logging

from django.conf import settings
from django_ratelimit.core import get_usage

from .models import ApiToken

logger = logging.getLogger("mailer.ratelimit")


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: int) -> None:
        super().__init__(f"rate limit of {settings.API_RATE_LIMIT} per token exceeded")
        self.retry_after = max(1, retry_after)
        self.limit = limit


def check_rate(request, token: ApiToken) -> None:
    """Count this request against its token; raise RateLimited past API_RATE_LIMIT.

    django-ratelimit keeps a fixed window per token with an atomic add/incr. If the cache is
    unreachable the request is let through (and logged): sending mail matters more than
    counting it.
    """
    if not settings.API_RATE_LIMIT:
        return
    try:
        usage = get_usage(
            request,
            group="api-token",
            key=lambda group, request: str(token.pk),
            rate=settings.API_RATE_LIMIT,
            increment=True,
        )
    except Exception:
        logger.warning("cache unreachable: rate limit not applied", exc_info=True)
        return
    if usage is not None and usage["should_limit"]:
        if usage["limit"] == 0:  # the cache failed to count: fail open, as above
            logger.warning("cache could not count a request: rate limit not applied")
            return
        raise RateLimited(usage["time_left"], usage["limit"])
