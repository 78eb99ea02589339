"""Per-provider pacing: at most `max_per_second` and `max_per_day` units through a provider,
counted where every web and worker process sees the same counts.

A provider with a limit ("5 a second", "200 a day": SES' sending quota, a small relay's cap)
answers past it with a throttle, which pauses it (mailer.delivery.breaker). Pacing keeps us under
the limit instead, so the throttle stays the exception. Before each send, failover reserves
`units` (1 per message, or its recipient count for providers that count recipients, like SES);
a refused reservation says how long until they would fit.

- Shared counts: every gunicorn and Celery process sends through the same providers, so the
  counts live in Redis, and one Lua script checks and takes both limits atomically (both or
  neither), on Redis' clock (TIME), so hosts whose clocks differ still agree.
- The second is an exact sliding window: a sorted set with one member per unit, scored by the
  server time in microseconds; no 1-second span ever holds more than the limit (a fixed window
  lets twice the limit through across its boundary).
- The day is a rolling 24 hours in hourly buckets (INCRBY on pace:<key>:d:<epoch hour>, kept
  25 h): the current hour and the 23 before it. Exact to the hour, with 24 small keys instead of
  a member per message for a day's worth of mail.
- A request larger than a limit itself (a 60-recipient message on 5 a second) goes only when its
  window is empty: otherwise it never could.
- Fail open: the counts are a politeness, not a source of truth. When Redis can't answer
  (mailer.cacheguard), the send goes unpaced and the provider's own throttle answer pauses it.

The day buckets' names are built inside the script from a prefix passed in ARGV, because only
there is the server's hour known. Keys a script does not declare in KEYS are fine on the single
Redis node REDIS_URL names, not on Redis Cluster. The prefix comes from django-redis' default key
function (prefix:version:name), for which make_key(name) + suffix == make_key(name + suffix).

The embedded default (local-memory cache, one process) paces with LocalPacer: the same rules in
memory, under a lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mailer import cacheguard, roundtrip

HOUR = 3600
DAY_HOURS = 24  # the rolling day: the current hourly bucket and the 23 before it
UNREACHABLE = "not paced: the cache is unreachable"

# KEYS[1]: the second window. ARGV: per_second, per_day (0: no limit), units, the day buckets'
# key prefix, a token unique to this call. Times in microseconds of Redis' clock. Returns
# {granted (0/1), now, wait until the units fit, the limit that refused ('s' | 'd' | '')}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hour = math.floor(tonumber(t[1]) / 3600)
local per_second, per_day, units = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait_s, wait_d, buckets = 0, 0, {}
if per_second > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1000000)
  local held = redis.call('ZCARD', KEYS[1])
  if held > 0 and held + units > per_second then
    local leave = held
    if units <= per_second then leave = held + units - per_second end
    local last = redis.call('ZRANGE', KEYS[1], leave - 1, leave - 1, 'WITHSCORES')
    wait_s = tonumber(last[2]) + 1000000 - now
  end
end
if per_day > 0 then
  for age = 0, 23 do buckets[age + 1] = ARGV[4] .. (hour - age) end
  local counts = redis.call('MGET', unpack(buckets))
  local used = 0
  for age = 0, 23 do used = used + (tonumber(counts[age + 1]) or 0) end
  if used > 0 and used + units > per_day then
    for age = 23, 0, -1 do
      used = used - (tonumber(counts[age + 1]) or 0)
      if used == 0 or used + units <= per_day then
        wait_d = (hour - age + 24) * 3600000000 - now
        break
      end
    end
  end
end
if wait_d > wait_s then return {0, now, wait_d, 'd'} end
if wait_s > 0 then return {0, now, wait_s, 's'} end
if per_second > 0 then
  for first = 1, units, 500 do
    local members = {}
    for n = first, math.min(first + 499, units) do
      members[#members + 1] = now
      members[#members + 1] = ARGV[5] .. ':' .. n
    end
    redis.call('ZADD', KEYS[1], unpack(members))
  end
  redis.call('PEXPIRE', KEYS[1], 2000)
end
if per_day > 0 then
  redis.call('INCRBY', buckets[1], units)
  redis.call('EXPIRE', buckets[1], 90000)
end
return {1, now, 0, ''}
"""

# KEYS: second windows; ARGV: their day buckets' prefixes, in the same order. Returns
# {last second, last day} for each, flattened.
_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hour = math.floor(tonumber(t[1]) / 3600)
local out = {}
for i, window in ipairs(KEYS) do
  out[#out + 1] = redis.call('ZCOUNT', window, '(' .. string.format('%d', now - 1000000), '+inf')
  local buckets = {}
  for age = 0, 23 do buckets[age + 1] = ARGV[i] .. (hour - age) end
  local used = 0
  for _, count in ipairs(redis.call('MGET', unpack(buckets))) do
    used = used + (tonumber(count) or 0)
  end
  out[#out + 1] = used
end
return out
"""


@dataclass(frozen=True)
class Limits:
    """A provider's limits; None (or 0) is no limit of ours."""

    per_second: int | None = None
    per_day: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.per_second or self.per_day)


@dataclass(frozen=True)
class Slot:
    """A reservation's answer. `at` is when it was decided (epoch seconds, Redis' clock for the
    RedisPacer); when refused, `wait` is the seconds from `at` until the units would fit."""

    granted: bool
    at: float
    wait: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Usage:
    last_second: int
    last_day: int  # the rolling 24 h (the current hour and the 23 before it)


class Pacer(Protocol):
    def reserve(self, key: str, limits: Limits, units: int = 1) -> Slot:
        """Take `units` of the provider's limits, or say how long until they would fit."""

    def usage(self, keys: list[str]) -> dict[str, Usage]:
        """What each provider used; RedisPacer: one round trip, {} when Redis can't answer."""


def _reason(limits: Limits, which: str) -> str:
    if which == "d":
        return f"at its limit of {limits.per_day} a day (rolling 24 h)"
    return f"at its limit of {limits.per_second} a second"


class RedisPacer:
    """The counts in Redis (django-redis' client, `codec`), shared by every process."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    def _names(self, key: str) -> tuple[str, str]:
        return self.codec.make_key(f"pace:{key}:s"), self.codec.make_key(f"pace:{key}:d:")

    def reserve(self, key: str, limits: Limits, units: int = 1) -> Slot:
        if not limits.any:
            return Slot(True, time.time())
        units = max(1, int(units))
        window, day_prefix = self._names(key)
        args = [limits.per_second or 0, limits.per_day or 0, units, day_prefix, uuid.uuid4().hex]

        def run() -> Slot:
            client = self.codec.get_client(write=True)
            granted, now, wait, which = client.register_script(_RESERVE)([window], args)
            if granted:
                return Slot(True, now / 1e6)
            which = "d" if which in (b"d", "d") else "s"
            return Slot(False, now / 1e6, wait / 1e6, _reason(limits, which))

        slot = cacheguard.call(f"pacing {key}", run, None)
        return Slot(True, time.time(), reason=UNREACHABLE) if slot is None else slot

    def usage(self, keys: list[str]) -> dict[str, Usage]:
        if not keys:
            return {}
        windows, prefixes = zip(*(self._names(key) for key in keys), strict=True)

        def run() -> dict[str, Usage]:
            client = self.codec.get_client(write=False)
            counts = client.register_script(_USAGE)(list(windows), list(prefixes))
            return {key: Usage(*counts[2 * n : 2 * n + 2]) for n, key in enumerate(keys)}

        return cacheguard.call("reading pacing counts", run, {})


def _second_wait(
    window: deque[tuple[float, int]], limit: int | None, units: int, now: float
) -> float:
    """0 if `units` fit in the second window (pruned, oldest first) now; else the seconds until
    enough of its oldest entries have left it."""
    held = sum(count for _, count in window)
    if not limit or held == 0 or held + units <= limit:
        return 0.0
    for at, count in window:
        held -= count
        if held == 0 or held + units <= limit:
            return at + 1 - now
    return 0.0  # not reached: the loop ends with an empty window


def _day_wait(buckets: dict[int, int], limit: int | None, units: int, now: float) -> float:
    """0 if `units` fit in the rolling day (pruned buckets by epoch hour) now; else the seconds
    until the start of the hour at which enough of its oldest buckets have left it."""
    used = sum(buckets.values())
    if not limit or used == 0 or used + units <= limit:
        return 0.0
    hour = int(now // HOUR)
    for age in range(DAY_HOURS - 1, -1, -1):
        used -= buckets.get(hour - age, 0)
        if used == 0 or used + units <= limit:
            return (hour - age + DAY_HOURS) * HOUR - now
    return 0.0  # not reached


class LocalPacer:
    """The same rules in this process' memory, for the embedded default's single process.
    `clock` is time.time(); tests pass their own to move time without sleeping."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, deque[tuple[float, int]]] = {}  # (time, units), oldest first
        self._days: dict[str, dict[int, int]] = {}  # epoch hour -> units

    def _counts(self, key: str, now: float) -> tuple[deque[tuple[float, int]], dict[int, int]]:
        """The key's second window and day buckets, without what has left them by `now`."""
        window = self._windows.setdefault(key, deque())
        while window and window[0][0] <= now - 1:
            window.popleft()
        buckets = self._days.setdefault(key, {})
        first_hour = int(now // HOUR) - DAY_HOURS + 1
        for hour in [hour for hour in buckets if hour < first_hour]:
            del buckets[hour]
        return window, buckets

    def reserve(self, key: str, limits: Limits, units: int = 1) -> Slot:
        if not limits.any:
            return Slot(True, self.clock())
        units = max(1, int(units))
        with self._lock:
            now = self.clock()
            window, buckets = self._counts(key, now)
            wait_s = _second_wait(window, limits.per_second, units, now)
            wait_d = _day_wait(buckets, limits.per_day, units, now)
            if wait_s > 0 or wait_d > 0:
                which = "d" if wait_d > wait_s else "s"
                return Slot(False, now, max(wait_s, wait_d), _reason(limits, which))
            if limits.per_second:
                window.append((now, units))
            if limits.per_day:
                hour = int(now // HOUR)
                buckets[hour] = buckets.get(hour, 0) + units
            return Slot(True, now)

    def usage(self, keys: list[str]) -> dict[str, Usage]:
        with self._lock:
            now = self.clock()
            counted = {key: self._counts(key, now) for key in keys}
            return {
                key: Usage(sum(count for _, count in window), sum(buckets.values()))
                for key, (window, buckets) in counted.items()
            }

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
            self._days.clear()


_local = LocalPacer()


def pacer() -> Pacer:
    """The process's pacer: Redis' shared counts with django-redis, else this process' own
    (the embedded default runs the local-memory cache: one process)."""
    found = roundtrip.codec()
    return _local if found is None else RedisPacer(found)
