"""Throttles' shared parts: the client's address (the one helper every throttle keys on, proxies
taken into account), and the API's request rate per account, counted in the shared cache (Redis)
so every worker agrees, in one round trip."""

from __future__ import annotations

import ipaddress
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache as memoize

from django.conf import settings
from django.core.cache import cache
from django_ratelimit.core import EXPIRATION_FUDGE, _split_rate

from . import cacheguard, roundtrip
from .errors import AppError
from .models import ApiToken
from .roundtrip import Rider

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# The client's address ----------------------------------------------------------------------


@memoize
def _trusted_networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _parse_address(text: str | None) -> _Address | None:
    """An address as REMOTE_ADDR or an X-Forwarded-For hop gives it ("1.2.3.4", "1.2.3.4:5678",
    "2001:db8::1", "[2001:db8::1]:443"); None for anything else."""
    text = (text or "").strip().strip('"')
    if not text or len(text) > 64:
        return None
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_ip(request) -> str:
    """The address of the client that sent this request, for throttles and only for them.

    REMOTE_ADDR, unless it is one of TRUSTED_PROXIES: then X-Forwarded-For is read from the
    right (each proxy appends the address it got the request from), skipping the trusted
    proxies, and the first address that is not one of them is the client. Whatever a client
    writes into X-Forwarded-For itself sits left of that and is never believed, and without
    TRUSTED_PROXIES (the default) the header is ignored altogether.
    """
    remote = _parse_address(request.META.get("REMOTE_ADDR"))
    if remote is None:
        return "unknown"
    networks = _trusted_networks(tuple(getattr(settings, "TRUSTED_PROXIES", ())))
    if not networks or not any(remote in network for network in networks):
        return str(remote)
    client = remote
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:  # a proxy of ours wrote nonsense: stop at the last one we know
            break
        client = address
        if not any(address in network for network in networks):
            break
    return str(client)


def client_address(request) -> str:
    """The client as throttles count it: its IPv4 address, or its IPv6 /64 network (one
    subscriber gets a whole /64, so counting single IPv6 addresses would count nothing)."""
    ip = client_ip(request)
    if ":" in ip:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return ip


# The API's rate limit ----------------------------------------------------------------------


class RateLimited(AppError):
    """Past API_RATE_LIMIT: `retry_after` seconds until the account may ask again."""

    def __init__(self, retry_after: int, limit: int) -> None:
        super().__init__(f"rate limit of {settings.API_RATE_LIMIT} per account exceeded")
        self.retry_after = max(1, retry_after)
        self.limit = limit


@dataclass
class _Window:
    """The account's current fixed window and its count: a rider of mailer.roundtrip.

    The window is django-ratelimit's (period-aligned, shifted per account by a crc32 jitter so
    that accounts' windows don't all end at once). Its count lives under a key of its own that
    expires EXPIRATION_FUDGE after the window ends. The commands are SET NX EX (create it at 0
    with its expiry) then INCR: no MULTI needed, because the key outlives its window, so no
    INCR can find it gone and create it without an expiry; and no Redis 7 needed (EXPIRE NX).
    """

    account_id: int
    limit: int
    period: int
    end: int  # time.time() at which the window ends
    count: int | None = None  # after the round trip; None if the cache couldn't count

    @classmethod
    def current(cls, account_id: int) -> _Window | None:
        """None when API_RATE_LIMIT is empty (or RATELIMIT_ENABLE false): no limit."""
        rate = settings.API_RATE_LIMIT
        if not rate or not getattr(settings, "RATELIMIT_ENABLE", True):
            return None
        limit, period = _split_rate(rate)
        now = int(time.time())
        end = now - now % period + zlib.crc32(str(account_id).encode()) % period
        return cls(account_id, limit, period, end + period if end < now else end)

    @property
    def key(self) -> str:
        return f"rl:api:{self.account_id}:{self.limit}/{self.period}s:{self.end}"

    @property
    def ttl(self) -> int:
        return self.period + EXPIRATION_FUDGE

    def queue(self, pipe, codec) -> None:
        key = codec.make_key(self.key)
        pipe.set(key, 0, nx=True, ex=self.ttl)
        pipe.incr(key)

    def take(self, replies: list, codec) -> None:
        self.count = int(replies[1])

    def failed(self) -> None:
        self.count = None

    def count_plain(self) -> int:
        """The same count through the django cache API (the local-memory cache)."""
        if cache.add(self.key, 1, timeout=self.ttl):
            return 1
        try:
            return cache.incr(self.key)
        except ValueError:  # expired between the two: this request starts it again
            cache.set(self.key, 1, timeout=self.ttl)
            return 1


def check_rate(request, token: ApiToken, *, along: Sequence[Rider] = ()) -> None:
    """Count this request against its token's account; raise RateLimited past API_RATE_LIMIT.

    Every token of an account shares the one limit: more tokens are not more requests. The
    count is a fixed window per account, one Redis round trip; `along` rides in that same
    round trip (the API list's cache reads and the token's revocation stamp, see
    mailer.authentication). Without Redis the count and
    `along` are plain cache calls (`along` is left for its owner to read). If the cache is
    unreachable the request is let through (logged by cacheguard, once per outage): sending
    mail matters more than counting it.
    """
    window = _Window.current(token.account_id)
    riders = [rider for rider in (window, *along) if rider is not None]
    if roundtrip.codec() is not None:
        if riders:
            roundtrip.run("counting an API request (rate limit not applied)", riders)
    elif window is not None:
        window.count = cacheguard.call(
            "counting an API request (rate limit not applied)", window.count_plain, None
        )
    if window is not None and window.count is not None and window.count > window.limit:
        raise RateLimited(window.end - int(time.time()), window.limit)
