"""Throttles' shared parts: the client's address (the one helper every throttle keys on, proxies
taken into account), and the API's request rate per account, counted in the shared cache (Redis)
so every worker agrees."""

from __future__ import annotations

import ipaddress
import logging
from functools import cache

from django.conf import settings
from django_ratelimit.core import get_usage

from . import cacheguard
from .errors import AppError
from .models import ApiToken

logger = logging.getLogger("mailer.ratelimit")

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# The client's address ----------------------------------------------------------------------


@cache
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


def check_rate(request, token: ApiToken) -> None:
    """Count this request against its token's account; raise RateLimited past API_RATE_LIMIT.

    Every token of an account shares the one limit: more tokens are not more requests.
    django-ratelimit keeps a fixed window per account with an atomic add/incr. If the cache is
    unreachable the request is let through (and logged): sending mail matters more than
    counting it.
    """
    if not settings.API_RATE_LIMIT:
        return
    usage = cacheguard.call(
        "counting an API request (rate limit not applied)",
        lambda: get_usage(
            request,
            group="api-account",
            key=lambda group, request: str(token.account_id),
            rate=settings.API_RATE_LIMIT,
            increment=True,
        ),
        None,
    )
    if usage is not None and usage["should_limit"]:
        if usage["limit"] == 0:  # the cache failed to count: fail open, as above
            logger.warning("cache could not count a request: rate limit not applied")
            return
        raise RateLimited(usage["time_left"], usage["limit"])
