"""The list cache: per-account versions, bounded staleness, pages of capped size, and one round
trip per read.

Pages of an account's email list are cached per query (`emails:list:<account>:<query>`), each
stored with the account's *version* it was read under: a page is served only while that is still
the account's current version (`emails:version:<account>`). Every write the account would see
bumps the version (`bump`, after commit), so the next read misses, reads the database and stores
the page again over the old one.

Staleness is bounded even when a bump is lost (README: Caching). A bump is one Redis write; if
Redis hangs or the network drops it, the old version would otherwise serve the old pages for as
long as they live. So the version key itself expires LIST_CACHE_STALE_SECONDS (T) after it was
set: by a bump, or by the first read after it expired, which starts a new version from the
clock (never from a counter: a version that expired must not come back). Reads never extend
it. A page is only served under the version it carries, so:

- a page computed before a write is never served more than T after that write, whatever
  happened to the write's bump, in every process (gunicorn and Celery workers share the key);
- a page stored with a version created after the write was read from the database after the
  write (its reader fetched the version first), so it is not stale.

Redis' expiry is by wall clock: a Redis that hung through the deadline drops the key as soon
as it answers again. While it does not answer, lists come from the database (cacheguard).

Besides that guarantee, each process remembers the bumps it failed and retries them before its
next cached read, reading that account from the database meanwhile (so the process that wrote
sees its own write). That usually ends the staleness as soon as Redis answers; the expiry is
what holds when the writer died or never talks to Redis again. After T a failed bump needs no
retry: the version it meant to replace has expired.

One round trip. A read (`Lookup`) needs the version, the page and the list's large count
(mailer.selectors.email_lists); with Redis they are one round trip: SET the version NX with its
expiry (a no-op while one is live, so reads never extend it), GET it, GET the page, GET the
count. The API sends those commands together with its rate-limit count (mailer.roundtrip,
mailer.api.auth), so a cached API list costs one round trip and no SQL. Without Redis (the
local-memory cache) the same reads are plain cache calls.

The price of the expiry: an account's pages are recomputed at least once per T even without
writes (one page query per T per account and query), instead of living LIST_CACHE_SECONDS.

Pages hold summaries, not bodies: the text is cut to LIST_TEXT_PREVIEW_CHARS (in SQL, so a
10 MB body isn't even fetched), and a page whose pickle is over LIST_CACHE_MAX_BYTES isn't
cached at all (it is served from the database each time). Pages expire after
min(LIST_CACHE_SECONDS, T): past T their version is gone, and with it any use.
"""

from __future__ import annotations

import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from mailer import cacheguard, roundtrip

# Accounts whose bump failed in this process -> time.monotonic() of the failure.
_pending: dict[int, float] = {}
_pending_lock = threading.Lock()


def stale_seconds() -> int:
    """T: the most a list may lag a write whose invalidation was lost."""
    return max(1, int(settings.LIST_CACHE_STALE_SECONDS))


def page_seconds() -> int:
    return max(1, min(int(settings.LIST_CACHE_SECONDS), stale_seconds()))


def _key(account_id: int) -> str:
    return f"emails:version:{account_id}"


def _new_version(account_id: int) -> None:
    cache.set(_key(account_id), time.time_ns(), timeout=stale_seconds())


def _current_version(account_id: int) -> int:
    current = cache.get(_key(account_id))
    if current is None:
        # From the clock, never a counter: a version that expired must not come back.
        current = time.time_ns()
        if not cache.add(_key(account_id), current, timeout=stale_seconds()):
            current = cache.get(_key(account_id), current)
    return int(current)


def _retry_failed_bumps(account_id: int) -> bool:
    """Retry this process's failed bumps; False while account_id's is still owed (read it from
    the database)."""
    now = time.monotonic()
    with _pending_lock:
        owed = list(_pending.items())
    reachable = True
    for other, failed_at in owed:
        if now - failed_at < stale_seconds():  # else its old version has expired: nothing owed
            reachable = reachable and cacheguard.run(
                "invalidating lists", lambda other=other: _new_version(other)
            )
            if not reachable:
                continue  # still away: try again on the next read or write
        with _pending_lock:
            if _pending.get(other) == failed_at:
                del _pending[other]
    return account_id not in _pending


def _owed(account_id: int) -> bool:
    """Whether this process still owes the account a bump (retrying what it owes first)."""
    return bool(_pending) and not _retry_failed_bumps(account_id)


def version(account_id: int) -> int | None:
    """The account's current version, or None: read the database (the cache is unreachable, or
    this process owes the account a bump)."""
    if _owed(account_id):
        return None
    return cacheguard.call("reading a list version", lambda: _current_version(account_id), None)


def bump(account_id: int) -> None:
    """Invalidate the account's cached lists. Never raises: a write must not fail for the cache.
    If the cache can't take it, the lists still catch up within stale_seconds() (see above)."""
    if not cacheguard.run("invalidating lists", lambda: _new_version(account_id)):
        with _pending_lock:
            _pending[account_id] = time.monotonic()
        return
    if _pending:  # this one is paid; pay (or drop, past their horizon) any owed from before
        with _pending_lock:
            _pending.pop(account_id, None)
        _retry_failed_bumps(account_id)


def page_key(account_id: int, *query: object) -> str:
    """Where the page of this query of the account is cached, whatever the version (the value
    carries the version it was read under)."""
    return f"emails:list:{account_id}:" + ":".join(str(part) for part in query)


@dataclass
class Lookup:
    """What one list read needs from the cache, filled by `read` or, riding along with the API's
    rate limit, by mailer.roundtrip: the account's current version, the page cached for this
    query if it carries that version, and the list's cached count.

    state: "unread"; "read"; or "database" (the cache is unreachable, or this process owes the
    account a bump: read the list from the database and don't store it).
    """

    account_id: int
    page_key: str
    count_key: str
    state: str = "unread"
    version: int | None = None
    page: dict[str, Any] | None = None
    count: int | None = None  # None: not cached

    def __post_init__(self) -> None:
        if _owed(self.account_id):
            self.state = "database"

    def queue(self, pipe, codec) -> None:
        if self.state != "unread":
            return
        key = codec.make_key(_key(self.account_id))
        pipe.set(key, codec.encode(time.time_ns()), nx=True, ex=stale_seconds())
        pipe.get(key)
        pipe.get(codec.make_key(self.page_key))
        pipe.get(codec.make_key(self.count_key))

    def take(self, replies: list, codec) -> None:
        if self.state != "unread":
            return
        _, version, page, count = (None if r is None else codec.decode(r) for r in replies)
        self._found(version, page, count)

    def failed(self) -> None:
        if self.state == "unread":
            self.state = "database"

    def read_plain(self) -> None:
        """The same reads through the django cache API (the local-memory cache)."""
        version = _current_version(self.account_id)
        found = cache.get_many([self.page_key, self.count_key])
        self._found(version, found.get(self.page_key), found.get(self.count_key))

    def _found(self, version: Any, page: Any, count: Any) -> None:
        self.state = "read" if version is not None else "database"
        self.version = None if version is None else int(version)
        valid = isinstance(page, tuple) and len(page) == 2 and page[0] == self.version
        self.page = page[1] if valid and self.version is not None else None
        self.count = count if isinstance(count, int) else None


def read(lookup: Lookup) -> None:
    """Fill `lookup` unless that is done: one round trip with Redis, plain calls without."""
    if lookup.state != "unread":
        return
    if roundtrip.codec() is not None:
        roundtrip.run("reading a list page", [lookup])
    elif not cacheguard.run("reading a list page", lookup.read_plain):
        lookup.failed()


def store_page(key: str, version: int, page: dict[str, Any]) -> bool:
    """Cache a page with its version, unless what Redis would hold (its pickle) is over
    LIST_CACHE_MAX_BYTES. True if it was sent to be stored. With django-redis it is encoded
    once, what was measured is what is stored, and the store does not wait for Redis' reply
    (mailer.roundtrip.put: a page it failed to keep is read from the database again)."""
    found = roundtrip.codec()
    if found is not None:
        encoded = found.encode((version, page))
        if len(encoded) > settings.LIST_CACHE_MAX_BYTES:
            return False
        return roundtrip.put("storing a list page", key, encoded, page_seconds())
    if len(pickle.dumps(page, pickle.HIGHEST_PROTOCOL)) > settings.LIST_CACHE_MAX_BYTES:
        return False
    return cacheguard.run(
        "storing a list page", lambda: cache.set(key, (version, page), timeout=page_seconds())
    )
