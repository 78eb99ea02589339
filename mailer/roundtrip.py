"""One Redis round trip for several cache users at once.

An API list request needs three things from Redis: its account's rate-limit count, the list's
version and the cached page (bench item 2). Asked one after the other they were four round trips,
and on a cached list a round trip costs more than the work. A *rider* is one user's share of a
round trip: it queues its commands (on `Commands`), then takes its replies. `run` sends every
rider's commands as one Lua script: one command, one reply. The script is made from the
commands' shapes (GET, INCR, SET NX EX: all the riders need), once per sequence of shapes, and
run by its SHA; each rider's commands are chosen to be correct without atomicity (see
mailer.ratelimit and mailer.listcache), which the script gives them anyway. A pipeline of the
same commands cost a reply to parse per command: on a cached list, 7 of them took ~80 us more
than one script call (bench item 2).

Keys and values go through django-redis' own key function and codec (`codec()`: its
make_key, encode and decode), so what a rider reads or writes is what the django cache API reads
and writes elsewhere (an int stays a plain Redis integer, anything else is django-redis' pickle).

A write whose reply no one reads (a cache fill: a list page just read from the database) need not
wait for it: `put` sends it after CLIENT REPLY SKIP, so it costs a socket write instead of a
round trip (~0.1 ms, a tenth of an uncached list page in process; bench item 2). Redis then
sends no reply, not even an error: a refused write is a cache miss later, never a wrong answer.
Writes whose failure must be known (the list's version bump, mailer.listcache) wait for their
reply as before. A server that refuses CLIENT REPLY (a proxy in front of Redis) is asked once
per connection pool, and then written to the usual way.

Only with django-redis (REDIS_URL): `codec()` is None for the local-memory cache, whose users
make plain cache calls instead. Failures go through mailer.cacheguard like every cache call:
when Redis can't answer, `run` tells each rider (`failed`) and returns False.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from django.core.cache import cache
from redis.exceptions import NoScriptError, ResponseError

from mailer import cacheguard


class Rider(Protocol):
    """One cache user's share of a round trip."""

    def queue(self, pipe: Commands, codec: Any) -> None:
        """Queue commands on `pipe` (keys through codec.make_key, values through encode)."""

    def take(self, replies: list[Any], codec: Any) -> None:
        """The replies to the commands queued, in order (values still encoded)."""

    def failed(self) -> None:
        """The round trip did not happen: the cache is unreachable (cacheguard logged it)."""


class Commands:
    """The commands of a round trip, recorded as a redis-py pipeline would take them (the few a
    rider may queue), then run as one script (`execute`)."""

    def __init__(self) -> None:
        self.shapes: list[str] = []
        self.sets: list[bool] = []  # which commands are SETs (their replies are True or None)
        self.keys: list[Any] = []
        self.args: list[Any] = []

    def __len__(self) -> int:
        return len(self.shapes)

    def get(self, key: Any) -> None:
        self._add(f"redis.call('GET', KEYS[{len(self.keys) + 1}])", key)

    def incr(self, key: Any) -> None:
        self._add(f"redis.call('INCR', KEYS[{len(self.keys) + 1}])", key)

    def set(self, key: Any, value: Any, *, nx: bool, ex: int) -> None:
        if not nx:
            raise ValueError("a rider's SET is NX (create, never overwrite)")
        at = len(self.args)
        self._add(f"redis.call('SET', KEYS[{len(self.keys) + 1}], ARGV[{at + 1}], 'NX', 'EX', "
                  f"ARGV[{at + 2}])", key, value, int(ex))  # fmt: skip

    def _add(self, call: str, key: Any, *args: Any) -> None:
        self.shapes.append(call)
        self.sets.append(call.startswith("redis.call('SET'"))
        self.keys.append(key)
        self.args.extend(args)

    def execute(self, client: Any) -> list[Any]:
        """Run them as one script on `client`: the replies in order (a GET of nothing: None).
        A script this process has not run yet goes as its text (EVAL, which also leaves it in
        Redis' script cache), then by its SHA; one Redis no longer knows (restarted, SCRIPT
        FLUSH) is sent as text again. One round trip either way but that last."""
        if not self.shapes:
            return []
        body = "\n".join(f"r[{i}] = {call}" for i, call in enumerate(self.shapes, 1))
        text = f"local r = {{}}\n{body}\nreturn r"
        sha = _known.get(text)
        if sha is not None:
            try:
                return self._as_pipeline(
                    client.evalsha(sha, len(self.keys), *self.keys, *self.args)
                )
            except NoScriptError:
                pass
        replies = client.eval(text, len(self.keys), *self.keys, *self.args)
        _known[text] = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis' own name)
        return self._as_pipeline(replies)

    def _as_pipeline(self, replies: list[Any]) -> list[Any]:
        """The replies as a redis-py pipeline gives them: a SET's "OK" is True (None: not set)."""
        return [True if is_set and reply is not None else reply
                for is_set, reply in zip(self.sets, replies, strict=True)]  # fmt: skip


# The scripts this process has run: text -> SHA1 (a handful: one per kind of request).
_known: dict[str, str] = {}


def codec() -> Any | None:
    """django-redis' client of the default cache, or None when that cache is not django-redis.
    (Looked up on every call: tests switch caches.)"""
    client = getattr(cache, "client", None)
    return client if hasattr(client, "get_client") else None


def run(what: str, riders: Sequence[Rider]) -> bool:
    """Every rider's commands in one script call, each rider given its replies. False, with each
    rider told, when the cache can't answer; `what` names it in the outage's log line."""
    found = codec()
    if found is None:
        raise RuntimeError("roundtrip.run needs django-redis; check roundtrip.codec() first")

    def trip() -> bool:
        commands = Commands()
        shares = []
        for rider in riders:
            start = len(commands)
            rider.queue(commands, found)
            shares.append((rider, start, len(commands)))
        replies = commands.execute(found.get_client(write=True))
        for rider, start, end in shares:
            rider.take(replies[start:end], found)
        return True

    if cacheguard.call(what, trip, False):
        return True
    for rider in riders:
        rider.failed()
    return False


def _takes_skip(client: Any) -> bool:
    """Whether the client's server takes CLIENT REPLY SKIP: asked once per connection pool."""
    pool = client.connection_pool
    known = getattr(pool, "_mailer_skips_replies", None)
    if known is None:
        try:
            client.execute_command("CLIENT", "REPLY", "ON")  # a no-op that answers OK
            known = True
        except ResponseError:
            known = False
        pool._mailer_skips_replies = known
    return known


def put(what: str, key: str, value: bytes, seconds: int) -> bool:
    """SET `key` (through the codec's make_key) to `value` (already encoded) for `seconds`,
    without waiting for Redis' reply (see above). False when the cache can't take it (the
    write could not be sent); True does not say Redis kept it."""
    found = codec()
    if found is None:
        raise RuntimeError("roundtrip.put needs django-redis; check roundtrip.codec() first")
    where = found.make_key(key)

    def send() -> bool:
        client = found.get_client(write=True)
        if not _takes_skip(client):
            return bool(client.set(where, value, ex=seconds))
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_commands(
                [("CLIENT", "REPLY", "SKIP"), ("SET", where, value, "EX", int(seconds))]
            ))  # fmt: skip
        finally:
            pool.release(connection)
        return True

    return cacheguard.call(what, send, False)
