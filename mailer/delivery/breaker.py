"""A circuit breaker per provider whose state lives in the Django cache, shared by all processes.

Besides the circuit, a provider can be *paused*: it answered that we send too fast (a throttle,
with how long to wait). A pause is not a failure: it counts nothing towards opening the circuit,
only keeps the provider out of failover until it ends (breaker:<key>:paused_until).

Why not pybreaker: its half-open state lets every caller through at once (with N workers, N
probes hit a provider that just failed), and its shared storage is Redis-only, while the embedded
default runs on a local-memory cache. This one needs only `add`, `incr`, `get_many`, `set_many`
and `delete_many`, which every Django cache backend provides atomically enough for the purpose:
`add` elects a single probe, `incr` counts consecutive failures.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from django.dispatch import Signal

from mailer import cacheguard
from mailer.vocabulary import CircuitState

logger = logging.getLogger("mailer.delivery")


# Counters of a provider that stops being used should not live forever.
_STATE_TTL = 7 * 24 * 3600

# Sent (sender=CircuitBreaker, key=..., error=..., open_until=..., reopened=...) when a failure
# opens a circuit, or opens it again (reopened=True) after a failed probe; mailer.metrics counts
# these, and webhooks out tell the provider's account (mailer.services.webhooks_out).
circuit_opened = Signal()
# Sent (sender=CircuitBreaker, key=..., reason="success" | "reset") by whoever closes an open
# circuit: a send through it that succeeded, or a reset (the provider was changed). Deleting the
# open mark is what elects that one caller, so it is sent once.
circuit_closed = Signal()


# How a cache call that may fail is run: guard(what, operation, fallback) returns operation()'s
# result, or `fallback` when the cache can't answer (breaker() below passes mailer.cacheguard.call,
# which fails fast during an outage and logs it once).
Guard = Callable[[str, Callable[[], Any], Any], Any]


def plain_guard(what: str, operation: Callable[[], Any], fallback: Any) -> Any:
    try:
        return operation()
    except Exception:
        logger.warning("%s: cache unreachable, skipped", what, exc_info=True)
        return fallback


def _fail_open(fallback: Callable[..., Any]) -> Callable:
    """If the cache is unreachable, answer as if the circuit were closed: mail must still go out
    when Redis is down, only without the breaker's protection."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self, key: str, *args: Any, **kwargs: Any) -> Any:
            return self.guard(
                f"circuit {key}: {method.__name__}",
                lambda: method(self, key, *args, **kwargs),
                fallback(key),
            )

        return wrapper

    return decorate


@dataclass(frozen=True)
class Pause:
    """A throttled provider is left alone `until` (a time.time()), for `seconds`; `reason` says
    where the length came from (the provider's Retry-After, capped, or the default)."""

    until: float
    seconds: float
    reason: str

    def describe(self) -> str:
        at = time.strftime("%H:%M:%S", time.gmtime(self.until))
        return f"paused until {at} UTC after a throttling answer ({self.reason})"


@dataclass(frozen=True)
class Admission:
    allowed: bool  # may the request go to this provider now
    clean: bool  # closed, no failure counted: a success has nothing to reset
    paused: Pause | None = None  # not allowed because the provider is paused (not its circuit)


@dataclass(frozen=True)
class Circuit:
    state: CircuitState
    failures: int
    open_until: float | None
    last_error: str
    last_error_at: float | None
    paused_until: float | None = None  # a throttled provider's pause, while it lasts


class CircuitBreaker:
    def __init__(
        self,
        cache: BaseCache,
        *,
        threshold: int = 3,
        reset_seconds: float = 60.0,
        probe_seconds: float = 30.0,
        guard: Guard = plain_guard,
        throttle_default_seconds: float = 5.0,
        throttle_max_seconds: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.guard = guard
        self.clock = clock  # time.time(); tests pass their own to move time without sleeping
        # A throttled provider's pause: its Retry-After, or the default when it named none,
        # never longer than the cap (a broken or hostile header must not park it for days).
        self.throttle_max_seconds = max(1.0, float(throttle_max_seconds))
        self.throttle_default_seconds = min(
            max(1.0, float(throttle_default_seconds)), self.throttle_max_seconds
        )
        self.threshold = max(1, int(threshold))
        self.reset_seconds = float(reset_seconds)
        # How long one elected probe may take before another process may probe instead.
        self.probe_seconds = max(1.0, float(probe_seconds))

    @staticmethod
    def _keys(key: str) -> tuple[str, str, str, str]:
        base = f"breaker:{key}"
        return f"{base}:fails", f"{base}:open_until", f"{base}:probe", f"{base}:last_error"

    @staticmethod
    def _paused_key(key: str) -> str:
        return f"breaker:{key}:paused_until"

    @staticmethod
    def _pause_in(value: Any, now: float) -> Pause | None:
        """The pause stored as (until, seconds, reason), if it has not ended by `now`."""
        try:
            pause = Pause(*value)
        except TypeError:  # nothing stored, or not ours
            return None
        return pause if now < pause.until else None

    @_fail_open(
        lambda key: Circuit(
            CircuitState.UNKNOWN,
            0,
            None,
            "circuit state unavailable: the cache is unreachable",
            None,
        )
    )
    def state(self, key: str, *, now: float | None = None) -> Circuit:
        fails_key, open_key, _, error_key = self._keys(key)
        paused_key = self._paused_key(key)
        values = self.cache.get_many([fails_key, open_key, error_key, paused_key])
        now = self.clock() if now is None else now
        pause = self._pause_in(values.get(paused_key), now)
        open_until = values.get(open_key)
        last_error, last_error_at = values.get(error_key) or ("", None)
        if open_until is None:
            state = CircuitState.CLOSED
        elif now < open_until:
            state = CircuitState.OPEN
        else:
            state = CircuitState.HALF_OPEN
        return Circuit(
            state,
            int(values.get(fails_key) or 0),
            open_until,
            last_error,
            last_error_at,
            pause.until if pause else None,
        )

    def allow(self, key: str) -> bool:
        """May a request go to this provider now? In half-open state only one caller gets True."""
        return self.admit(key).allowed

    @_fail_open(lambda key: Admission(allowed=True, clean=True))
    def admit(self, key: str) -> Admission:
        """allow(), and whether the circuit was closed with no failure counted (`clean`): then
        a success has nothing to reset, and record_success(clean=True) skips its writes. A
        paused provider is not allowed (`paused` says until when) and elects no probe. One
        cache round trip for a healthy provider."""
        fails_key, open_key, probe_key, _ = self._keys(key)
        paused_key = self._paused_key(key)
        values = self.cache.get_many([open_key, fails_key, paused_key])
        open_until = values.get(open_key)
        now = self.clock()
        if open_until is not None and now < open_until:
            return Admission(allowed=False, clean=False)
        pause = self._pause_in(values.get(paused_key), now)
        if pause is not None:
            return Admission(allowed=False, clean=False, paused=pause)
        if open_until is None:
            return Admission(
                allowed=True, clean=not values.get(fails_key) and paused_key not in values
            )
        probe = bool(self.cache.add(probe_key, now, timeout=self.probe_seconds))
        return Admission(allowed=probe, clean=False)

    def pause_for(self, retry_after: float | None) -> Pause:
        """The pause a throttling answer earns from now: the wait it asked for, at least 1 s and
        at most the cap; the default when it named none."""
        if retry_after is None or not math.isfinite(retry_after) or retry_after <= 0:
            seconds, reason = self.throttle_default_seconds, "no usable Retry-After"
            reason = f"{reason}: default {seconds:g} s"
        elif retry_after > self.throttle_max_seconds:
            seconds = self.throttle_max_seconds
            reason = f"Retry-After {retry_after:.0f} s, capped at {seconds:g} s"
        else:
            seconds = max(1.0, float(math.ceil(retry_after)))
            reason = f"Retry-After {seconds:g} s"
        return Pause(self.clock() + seconds, seconds, reason)

    @_fail_open(lambda key: False)
    def pause(self, key: str, pause: Pause) -> bool:
        """Keep the provider out of failover until `pause.until`, counting no failure; False if
        the cache can't remember it (the throttle still fails over, only unremembered)."""
        ttl = max(1, math.ceil(pause.until - self.clock()) + 1)
        value = (pause.until, pause.seconds, pause.reason)
        self.cache.set(self._paused_key(key), value, timeout=ttl)
        # A throttled probe proved nothing: free its slot, so one may probe after the pause.
        self.cache.delete(self._keys(key)[2])
        logger.warning("provider %s %s", key, pause.describe())
        return True

    @_fail_open(lambda key: None)
    def record_success(self, key: str, *, clean: bool = False) -> None:
        """Close the circuit and forget its failures; nothing to write when the admission that
        let this request through found it `clean` (a failure counted meanwhile by another
        request stays counted: it came after the state this success was admitted on)."""
        if clean:
            return
        fails_key, open_key, probe_key, _ = self._keys(key)
        was_open = self.cache.delete(open_key)
        self.cache.delete_many([fails_key, probe_key, self._paused_key(key)])
        if was_open:
            circuit_closed.send(sender=CircuitBreaker, key=key, reason="success")

    @_fail_open(lambda key: False)
    def record_failure(self, key: str, *, error: str, trip_now: bool = False) -> bool:
        """Count one failure; return True if this failure opened the circuit."""
        fails_key, open_key, probe_key, error_key = self._keys(key)
        now = self.clock()
        self.cache.set(error_key, (error[:500], now), timeout=_STATE_TTL)
        self.cache.add(fails_key, 0, timeout=_STATE_TTL)
        try:
            failures = self.cache.incr(fails_key)
        except ValueError:  # expired between add and incr
            failures = 1
            self.cache.set(fails_key, 1, timeout=_STATE_TTL)
        was_tripped = self.cache.get(open_key) is not None
        if not (trip_now or was_tripped or failures >= self.threshold):
            return False
        open_until = now + self.reset_seconds
        self.cache.set(open_key, open_until, timeout=_STATE_TTL)
        self.cache.delete(probe_key)
        logger.warning(
            "circuit %s opened until %.0f after %d consecutive failure(s): %s",
            key,
            open_until,
            failures,
            error,
        )
        circuit_opened.send(
            sender=CircuitBreaker, key=key, error=error, open_until=open_until, reopened=was_tripped
        )
        return True

    def states(self, keys: list[str], *, now: float | None = None) -> dict[str, str]:
        """The state (closed, open or half-open) of many circuits in one cache read; every one
        unknown if the cache can't answer. For reports: it elects no probe."""
        open_keys = {self._keys(key)[1]: key for key in keys}
        values = self.guard("circuit states", lambda: self.cache.get_many(list(open_keys)), None)
        if values is None:
            return dict.fromkeys(keys, CircuitState.UNKNOWN)
        now = self.clock() if now is None else now
        states = dict.fromkeys(keys, CircuitState.CLOSED)
        for open_key, open_until in values.items():
            states[open_keys[open_key]] = (
                CircuitState.OPEN if now < open_until else CircuitState.HALF_OPEN
            )
        return states

    @_fail_open(lambda key: None)
    def reset(self, key: str) -> None:
        fails_key, open_key, probe_key, error_key = self._keys(key)
        was_open = self.cache.delete(open_key)
        self.cache.delete_many([fails_key, probe_key, error_key, self._paused_key(key)])
        if was_open:
            circuit_closed.send(sender=CircuitBreaker, key=key, reason="reset")


def breaker() -> CircuitBreaker:
    """The breaker every process shares through the default cache (Redis in production)."""
    return CircuitBreaker(
        cache,
        threshold=settings.BREAKER_THRESHOLD,
        reset_seconds=settings.BREAKER_RESET_SECONDS,
        probe_seconds=settings.PROVIDER_TIMEOUT * 3,
        guard=cacheguard.call,
        throttle_default_seconds=settings.THROTTLE_DEFAULT_SECONDS,
        throttle_max_seconds=settings.THROTTLE_MAX_SECONDS,
    )
