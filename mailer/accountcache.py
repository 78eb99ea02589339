"""What every try reads of its account, kept per process: the enabled providers in failover
order, the subscribed webhook endpoints, and the suppression list's answers for addresses.

Without it a sync send or a worker's try made three queries for things that change far less
often than mail goes out (bench item 1 and item 4: about 1.8 ms of a send). With it, a unit of
work (a send, one worker try: `pinned`) reads its account's two *stamps* from Redis in one round
trip, and answers from this process's memory what it read before under the same stamps.

A stamp is the time (ns) of the account's last change of one kind, written to the shared cache
after the change commits (`changed`, called by the model signals below and by the services'
bulk writes, which send no signals): "config" for providers and webhook endpoints,
"suppressions" for the suppression list. An entry is used only while the stamp it was read
under is still the account's, so:

- with Redis up, every process sees a change at its next unit of work: the stamp is read before
  the database, and set after the commit, so an entry read before a change always carries an
  older stamp;
- while Redis can't answer, nothing is cached: every read goes to the database (cacheguard);
- if a stamp's write was lost (Redis away at the change, then back), an entry still lives at
  most ACCOUNT_CACHE_SECONDS, the bound of what can be stale; a stamp key outlives every entry.

Suppressions are kept as per-address answers (an account's list can be long; a send asks about
a few addresses): present with its expiry, or absent. An expiry is compared with the clock at
each use, so an entry that lapses stops suppressing on time without a write.

Only with django-redis (REDIS_URL): with the embedded default's local-memory cache other
processes could not see a stamp, so every read goes to the database.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from mailer import cacheguard, roundtrip

CONFIG = "config"  # providers and webhook endpoints
SUPPRESSIONS = "suppressions"
PARTS = (CONFIG, SUPPRESSIONS)
ACCOUNT_CACHE_SECONDS = 5.0  # the default; the setting of that name overrides it
_STAMP_SECONDS = 120  # a stamp outlives every entry it could concern
_MAX_ENTRIES = 4096  # per kind: accounts' configs; (account, address) suppression answers
_ABSENT = "absent"  # a suppression answer: the address is not on the list


def _key(account_id: int, part: str) -> str:
    return f"account:{part}:{account_id}"


def _max_age() -> float:
    return float(getattr(settings, "ACCOUNT_CACHE_SECONDS", ACCOUNT_CACHE_SECONDS))


# Writes: stamps -------------------------------------------------------------------------------


# Changes made by this process, by (account, part): its own entries are dropped at once, even
# before the commit, so it reads its own writes whatever happens to the stamp.
_local: dict[tuple[int, str], int] = {}


def changed(account_id: int, part: str) -> None:
    """Every process's entries of this account's `part` read before now are stale: this
    process's at once, the others' once the current transaction commits (at once outside one)."""
    _local[(account_id, part)] = _local.get((account_id, part), 0) + 1

    def stamp() -> None:
        cacheguard.run(
            f"announcing a change of an account's {part} (other processes see it within "
            "ACCOUNT_CACHE_SECONDS)",
            lambda: cache.set(_key(account_id, part), time.time_ns(), timeout=_STAMP_SECONDS),
        )

    transaction.on_commit(stamp)


def _saved(part: str) -> Callable[..., None]:
    def receiver(sender, instance, **kwargs) -> None:
        changed(instance.account_id, part)

    return receiver


def connect_signals(part: str, *models: type, deletes: bool = True) -> None:
    """Stamp `part` whenever one of `models` is saved one by one (pages, API, admin), and
    deleted unless `deletes` is False (a delete receiver makes Django delete row by row what it
    would delete in one statement: the caller then stamps its deletes itself, as bulk writes
    do). Called once per part, by the app's ready()."""
    for model in models:
        uid = f"accountcache-{part}-{model.__name__}"
        post_save.connect(_saved(part), sender=model, weak=False, dispatch_uid=uid)
        if deletes:
            post_delete.connect(_saved(part), sender=model, weak=False, dispatch_uid=uid + "-d")


# Reads: one unit of work's stamps ------------------------------------------------------------


@dataclass(frozen=True)
class _Pin:
    account_id: int
    stamps: dict[str, Any]


_pin: ContextVar[_Pin | None] = ContextVar("accountcache_pin", default=None)


@dataclass
class Stamps:
    """A mailer.roundtrip rider: the account's stamps, one GET each. An API request reads them
    in its rate limit's round trip (mailer.api.auth prefetch) and hands them to `pinned`."""

    account_id: int
    state: str = "unread"  # "read", or "failed" when Redis could not answer
    found: dict[str, Any] | None = None

    def queue(self, pipe: Any, codec: Any) -> None:
        for part in PARTS:
            pipe.get(codec.make_key(_key(self.account_id, part)))

    def take(self, replies: list[Any], codec: Any) -> None:
        self.state = "read"
        self.found = {
            part: None if reply is None else codec.decode(reply)
            for part, reply in zip(PARTS, replies, strict=True)
        }

    def failed(self) -> None:
        self.state = "failed"


@contextmanager
def pinned(account_id: int, read: Stamps | None = None) -> Iterator[None]:
    """Within: the account's reads below may come from this process's memory, checked against
    its stamps, read once here (or given: `read`, read by this request before anything else of
    the account). Without django-redis, or when Redis can't answer, they all go to the
    database."""
    stamps = read if read is not None and read.account_id == account_id else Stamps(account_id)
    if stamps.state == "unread" and roundtrip.codec() is not None:
        roundtrip.run("reading an account's change stamps", [stamps])
    pin = _Pin(account_id, stamps.found) if stamps.state == "read" and stamps.found else None
    token = _pin.set(pin)
    try:
        yield
    finally:
        _pin.reset(token)


def _stamp(account_id: int, part: str) -> tuple[bool, Any]:
    """(pinned, stamp) for this account's `part` in the current unit of work: the shared
    stamp with this process's own count of changes."""
    pin = _pin.get()
    if pin is None or pin.account_id != account_id:
        return False, None
    return True, (pin.stamps[part], _local.get((account_id, part), 0))


class _Entries:
    """Bounded (least recently used out), each entry with the stamp and the time it was read."""

    def __init__(self) -> None:
        self._items: OrderedDict[Any, tuple[Any, float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, stamp: Any) -> tuple[bool, Any]:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            if item[0] != stamp or time.monotonic() - item[1] >= _max_age():
                del self._items[key]
                return False, None
            self._items.move_to_end(key)
            return True, item[2]

    def put(self, key: Any, stamp: Any, value: Any, read_at: float) -> None:
        with self._lock:
            self._items[key] = (stamp, read_at, value)
            self._items.move_to_end(key)
            while len(self._items) > _MAX_ENTRIES:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_configs = _Entries()
_suppressions = _Entries()


def clear() -> None:
    """Forget everything this process remembers (tests; an operator's shell)."""
    _configs.clear()
    _suppressions.clear()
    _local.clear()


def config(account_id: int, what: str, load: Callable[[], list]) -> list:
    """The account's `what` ("providers", "endpoints"): load() from the database unless this
    unit of work can answer it from memory. A new list each call (callers may change it)."""
    pinned_here, stamp = _stamp(account_id, CONFIG)
    if not pinned_here:
        return load()
    key = (account_id, what)
    hit, value = _configs.get(key, stamp)
    if not hit:
        read_at = time.monotonic()
        value = load()
        _configs.put(key, stamp, value, read_at)
    return list(value)


def suppressed(
    account_id: int,
    addresses: Iterable[str],
    load: Callable[[list[str]], dict[str, datetime | None]],
) -> set[str]:
    """Which of `addresses` (bare) are suppressed now. load(missing) answers {address:
    expires_at} for those on the list, lapsed or not (None: no expiry)."""
    wanted = list(dict.fromkeys(addresses))
    pinned_here, stamp = _stamp(account_id, SUPPRESSIONS)
    answers: dict[str, Any] = {}
    missing = wanted
    if pinned_here:
        missing = []
        for address in wanted:
            hit, value = _suppressions.get((account_id, address), stamp)
            if hit:
                answers[address] = value
            else:
                missing.append(address)
    if missing:
        read_at = time.monotonic()
        found = load(missing)
        for address in missing:
            answers[address] = found.get(address, _ABSENT)
            if pinned_here:
                _suppressions.put((account_id, address), stamp, answers[address], read_at)
    now = timezone.now()
    return {a for a, v in answers.items() if v != _ABSENT and (v is None or v > now)}
