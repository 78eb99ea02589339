"""Per-account cache versions: every write an account would see bumps its version, so cached
list pages of the old version are never read again (they expire on their own)."""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

logger = logging.getLogger("mailer.cache")


def _key(account_id: int) -> str:
    return f"emails:version:{account_id}"


def version(account_id: int) -> int:
    """The account's current version; raises if the cache is unreachable (callers fall back)."""
    current = cache.get(_key(account_id))
    if current is None:
        # Start from the clock, not 1: if the key was evicted, old pages must not match again.
        current = time.time_ns()
        if not cache.add(_key(account_id), current, timeout=None):
            current = cache.get(_key(account_id), current)
    return int(current)


def bump(account_id: int) -> None:
    """Invalidate the account's cached lists. Never raises: a write must not fail for the cache."""
    try:
        cache.set(_key(account_id), time.time_ns(), timeout=None)
    except Exception:
        logger.exception("cache unreachable: could not invalidate lists of account %s", account_id)
