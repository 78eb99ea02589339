"""Cache calls the service can do without: fail fast while the cache is away, log once per outage.

Everything we keep in Redis is an optimisation or a best effort (list pages, counts, circuit
state, rate limits), never the source of truth, so a cache outage must cost neither requests
nor the log. `call(what, operation, fallback)` runs one cache operation and returns `fallback`
when the cache can't answer. Per process, and per cache location:

- The first failure starts an outage and logs ONE warning ("cache unreachable: ..."), without
  a traceback. From then on calls return their fallback at once, without touching the
  network; one call per CACHE_RETRY_SECONDS is let through as a probe. So during an outage a
  request waits for at most one socket timeout (CACHE_TIMEOUT, CACHE_CONNECT_TIMEOUT), and
  most wait for none.
- After a probe succeeds, calls go to the cache again. The outage ends, with ONE warning
  ("cache reachable again ..."), once the cache has answered for 3 x CACHE_RETRY_SECONDS
  without a failure: a cache that fails only some calls (writes refused when it is out of
  memory, a flapping link) stays one outage, not a pair of lines per probe.

"Can't answer" is a connection error, a timeout or an error reply (redis.RedisError,
django-redis' ConnectionInterrupted, OSError). Anything else is a bug and propagates.

Why not django-redis' IGNORE_EXCEPTIONS: it applies to every cache user and turns a failed
`add` into False and a failed `incr` into None, which callers can't tell from real answers (the
breaker would read "another process holds the probe"). Callers here choose their fallback.

Users: the list cache (mailer.listcache), the large-count cache (mailer.selectors.email_lists) and
the health checks (`check`). Any other cache user adopts it by wrapping its call and dropping
its own per-call logging, e.g. the breaker's fail-open wrapper:
    return cacheguard.call(f"circuit {key}: {method.__name__}",
                           lambda: method(self, key, *args, **kwargs), fallback(key))
and the API rate limit:
    usage = cacheguard.call("counting a request", lambda: get_usage(...), None)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

logger = logging.getLogger("mailer.cache")

CACHE_ERRORS: tuple[type[BaseException], ...] = (RedisError, ConnectionInterrupted, OSError)
HEALTH_KEY = "healthz"
_FELL_BACK = object()


@dataclass
class _Outage:
    started: float  # time.time() of the first failed call
    error: str  # the last failure, as "ExceptionName: message"
    retry_at: float  # time.monotonic(): until then calls fall back without trying
    answering_since: float | None = None  # monotonic: the first success after failures
    fallbacks: int = 0  # calls that returned their fallback

    def describe(self) -> str:
        return f"unreachable for {time.time() - self.started:.0f} s ({self.error})"


_lock = threading.Lock()
_outages: dict[str, _Outage] = {}


def _location() -> str:
    """The default cache's location: outages are tracked per server (tests switch caches)."""
    return str(settings.CACHES.get("default", {}).get("LOCATION", ""))


def _retry_seconds() -> float:
    return max(0.05, float(getattr(settings, "CACHE_RETRY_SECONDS", 2.0)))


def _let_through(outage: _Outage) -> bool:
    """During an outage: may this call try the cache? Yes while it is answering again, and
    for one call (the probe) per CACHE_RETRY_SECONDS while it is not."""
    if outage.answering_since is not None:
        return True
    with _lock:
        now = time.monotonic()
        if now < outage.retry_at:
            outage.fallbacks += 1
            return False
        outage.retry_at = now + _retry_seconds()
        return True


def _failed(where: str, what: str, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"[:300]
    with _lock:
        outage = _outages.get(where)
        retry_at = time.monotonic() + _retry_seconds()
        if outage is not None:
            outage.error, outage.retry_at, outage.answering_since = error, retry_at, None
            outage.fallbacks += 1
            return
        _outages[where] = _Outage(started=time.time(), error=error, retry_at=retry_at, fallbacks=1)
    logger.warning(
        "cache unreachable: %s failed (%s); going on without the cache (lists and counts from "
        "the database) and trying it again every %.1f s; one more line when it is back",
        what,
        error,
        _retry_seconds(),
    )


def _answered(where: str, outage: _Outage) -> None:
    now = time.monotonic()
    with _lock:
        if _outages.get(where) is not outage:
            return
        if outage.answering_since is None:
            outage.answering_since = now
            return
        if now - outage.answering_since < 3 * _retry_seconds():
            return
        del _outages[where]
    logger.warning(
        "cache reachable again after an outage of %.1f s; %d cache calls went without it",
        time.time() - outage.started - (now - outage.answering_since),
        outage.fallbacks,
    )


def call[T, F](what: str, operation: Callable[[], T], fallback: F) -> T | F:
    """operation() against the cache, or `fallback` when the cache can't answer (see above).
    `what` names the operation in the outage's log line, e.g. "reading a list page"."""
    where = _location()
    outage = _outages.get(where)
    if outage is not None and not _let_through(outage):
        return fallback
    try:
        result = operation()
    except CACHE_ERRORS as exc:
        _failed(where, what, exc)
        return fallback
    if outage is not None:
        _answered(where, outage)
    return result


def run(what: str, operation: Callable[[], object]) -> bool:
    """call() for operations whose result doesn't matter: True if it ran, False if not."""

    def ran() -> bool:
        operation()
        return True

    return call(what, ran, False)


def outage() -> str | None:
    """What this process knows of a current outage ("unreachable for 12 s (TimeoutError: ...)"),
    or None when the cache last answered."""
    current = _outages.get(_location())
    return None if current is None or current.answering_since is not None else current.describe()


def check() -> str:
    """The cache's health for /healthz and /readyz: "ok" or "error: ...". It writes and reads a
    key; while a known outage waits for its next probe it answers from memory, so a load
    balancer polling it costs the hung cache nothing."""

    def round_trip() -> bool:
        cache.set(HEALTH_KEY, "1", timeout=10)
        return cache.get(HEALTH_KEY) == "1"

    try:
        answer = call("checking health", round_trip, _FELL_BACK)
    except Exception as exc:  # not an outage (a misconfigured cache?): report, never raise
        return f"error: {type(exc).__name__}"
    if answer is _FELL_BACK:
        return f"error: {outage() or 'unreachable'}"
    return "ok" if answer else "error: value not read back"
