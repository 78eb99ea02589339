"""One Redis round trip for several cache users at once.

An API list request needs three things from Redis: its account's rate-limit count, the list's
version and the cached page (bench item 2). Asked one after the other they were four round trips,
and on a cached list a round trip costs more than the work. A *rider* is one user's share of a
round trip: it queues its commands on a redis-py pipeline, then takes its replies. `run` sends
every rider's commands in one pipeline: one write, one read. There is no MULTI: each rider's
commands are chosen to be correct without it (see mailer.ratelimit and mailer.listcache).

Keys and values go through django-redis' own key function and codec (`codec()`: its
make_key, encode and decode), so what a rider reads or writes is what the django cache API reads
and writes elsewhere (an int stays a plain Redis integer, anything else is django-redis' pickle).

Only with django-redis (REDIS_URL): `codec()` is None for the local-memory cache, whose users
make plain cache calls instead. Failures go through mailer.cacheguard like every cache call:
when Redis can't answer, `run` tells each rider (`failed`) and returns False.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from django.core.cache import cache

from mailer import cacheguard


class Rider(Protocol):
    """One cache user's share of a round trip."""

    def queue(self, pipe: Any, codec: Any) -> None:
        """Queue commands on `pipe` (keys through codec.make_key, values through encode)."""

    def take(self, replies: list[Any], codec: Any) -> None:
        """The replies to the commands queued, in order (values still encoded)."""

    def failed(self) -> None:
        """The round trip did not happen: the cache is unreachable (cacheguard logged it)."""


def codec() -> Any | None:
    """django-redis' client of the default cache, or None when that cache is not django-redis.
    (Looked up on every call: tests switch caches.)"""
    client = getattr(cache, "client", None)
    return client if hasattr(client, "get_client") else None


def run(what: str, riders: Sequence[Rider]) -> bool:
    """Every rider's commands in one pipeline, each rider given its replies. False, with each
    rider told, when the cache can't answer; `what` names it in the outage's log line."""
    found = codec()
    if found is None:
        raise RuntimeError("roundtrip.run needs django-redis; check roundtrip.codec() first")

    def trip() -> bool:
        pipe = found.get_client(write=True).pipeline(transaction=False)
        shares = []
        for rider in riders:
            start = len(pipe)
            rider.queue(pipe, found)
            shares.append((rider, start, len(pipe)))
        replies = pipe.execute()
        for rider, start, end in shares:
            rider.take(replies[start:end], found)
        return True

    if cacheguard.call(what, trip, False):
        return True
    for rider in riders:
        rider.failed()
    return False
