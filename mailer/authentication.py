"""Who is asking: an API token (Bearer, or the original contract's TOKEN field), checked and
counted against its account's rate limit in one Redis round trip.

token_authenticate answers most requests from the process's memory of recent tokens. So that a
token revoked in another process stops at once rather than after TOKEN_CACHE_SECONDS, the
request also reads the account's revocation stamp, riding in the rate limit's round trip with
whatever the operation prefetches (mailer.roundtrip): no extra round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from mailer.models import ApiToken
from mailer.ratelimit import RateLimited, check_rate
from mailer.roundtrip import Rider, codec
from mailer.services.tokens import token_authenticate, token_reread, token_revocation_check


def authenticate(
    request, raw: str, *, along: Callable[[ApiToken], Sequence[Rider]] | None = None
) -> ApiToken | None:
    """The active token `raw` names, its request counted (RateLimited past the limit); None
    for an unknown, revoked or deactivated one. `along(token)`: the caller's cache reads for
    the same round trip, once the token (its account) is known."""
    asked_at_ns = time.time_ns()
    token = token_authenticate(raw=raw)
    if token is None:
        return None
    check = token_revocation_check(token, asked_at_ns=asked_at_ns) if codec() else None
    riders = [*(along(token) if along else ()), *([check] if check else [])]
    try:
        check_rate(request, token, along=riders)
    except RateLimited:
        if check is not None and check.stale and token_reread(raw=raw) is None:
            return None  # revoked: say so, not "slow down"
        raise
    if check is not None and check.stale:
        return token_reread(raw=raw)
    return token
