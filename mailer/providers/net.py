"""Every outbound connection a provider makes: its host resolved once, the private-address rule
checked on the very address connected to (no DNS rebinding between a check and a connect), and a
deadline over the whole attempt. HTTP on top of it: httpclient.py.

SMTP, SES (through botocore's before-send hook) and SendGrid all connect through here, and so
will the webhooks the service posts.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# Deadlines ---------------------------------------------------------------------------------


class Deadline:
    """A point in time (monotonic) by which something must be over."""

    __slots__ = ("end", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def cap(self, timeout: float) -> float:
        """`timeout`, shortened to what is left; raises TimeoutError when nothing is."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return min(timeout, left)

    def within(self, seconds: float) -> Deadline:
        """A deadline `seconds` from now, or this one if it comes sooner."""
        sub = Deadline(seconds)
        if self.end < sub.end:
            sub.end, sub.seconds = self.end, self.remaining()
        return sub


class _Watchdog:
    """One daemon thread that calls a callback when its deadline passes, unless cancelled first.

    A socket timeout bounds one read; a server that trickles a byte just before each timeout
    (an endless multi-line SMTP greeting, an HTTP body) is only stopped by this: the callback
    shuts the socket down, so the blocked read in the sending thread returns at once.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list]] = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, callback: Callable[[], None]) -> list:
        entry = [callback]  # entry[0] = None cancels it
        with self._wake:
            heapq.heappush(self._heap, (when, next(self._counter), entry))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="provider-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is entry:
                # Only a new earliest deadline changes when the thread must wake: waking it for
                # every send would hand it the GIL once per message.
                self._wake.notify()
        return entry

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                when, _, entry = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0 and entry[0] is not None:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                callback, entry[0] = entry[0], None
            if callback is not None:
                try:
                    callback()
                except Exception:  # noqa: S110 (an abort that fails leaves the socket timeout)
                    pass


_watchdog = _Watchdog()


class Cut:
    """Whether the watchdog cut the connection: then whatever was read is incomplete."""

    fired = False


@contextmanager
def enforced(deadline: Deadline, abort: Callable[[], None]) -> Iterator[Cut]:
    """Run the block; if the deadline passes while it runs, call `abort` (from another thread)."""
    cut = Cut()

    def fire() -> None:
        cut.fired = True
        abort()

    entry = _watchdog.schedule(deadline.end, fire)
    try:
        yield cut
    finally:
        entry[0] = None


def shutdown(sock: socket.socket | None) -> None:
    """Shut a socket down from another thread: its blocked reads and writes return at once.
    socket.socket.shutdown, not SSLSocket's, which would tear down TLS state under the reader."""
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


# The private-address rule -------------------------------------------------------------------


class BlockedHost(OSError):
    """The host is, or resolves to, an address the private-address rule refuses."""


_ADDRESS_KINDS = (
    ("is_unspecified", "an unspecified"),
    ("is_loopback", "a loopback"),
    ("is_link_local", "a link-local"),
    ("is_multicast", "a multicast"),
    ("is_private", "a private"),
    ("is_reserved", "a reserved"),
)


def address_problem(address: Address, host: str) -> str | None:
    """Why `host` (which reaches `address`) may not be connected to, or None if it is public."""
    # An IPv6 address can carry an IPv4 one that is what the connection really reaches.
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and (problem := address_problem(embedded, host)):
            return problem
    via = "" if host.strip("[]") == str(address) else f" (it reaches {address})"
    for attribute, what in _ADDRESS_KINDS:
        if getattr(address, attribute):
            return f"{host} is {what} address{via}; give a public host."
    if not address.is_global:  # shared (CGNAT), documentation and other special ranges
        return f"{host} is not a public address{via}; give a public host."
    return None


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


# getaddrinfo has no timeout of its own; a few threads bound how many stuck lookups pile up.
_lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="provider-resolve")


def _nameservers() -> list[tuple[str, int]]:
    """DNS_NAMESERVERS ("host[:port]", ...): ask these with dnspython instead of the system."""
    servers = []
    for item in settings.DNS_NAMESERVERS:
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "53")
        servers.append((host, int(port or 53)))
    return servers


def _resolve_dns(name: str, servers: list[tuple[str, int]], timeout: float) -> list[Address]:
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host for host, _ in servers]
    resolver.port = servers[0][1]
    resolver.lifetime = timeout
    found: list[Address] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise OSError(f"{name} could not be resolved: {exc}") from exc
        found += [ipaddress.ip_address(record.address) for record in answer]
    return found


def resolve(host: str, *, timeout: float) -> list[Address]:
    """Every address a host name stands for, looked up once, within `timeout` seconds."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    name = host.strip().rstrip(".").lower()
    servers = _nameservers()
    if servers:
        addresses = _resolve_dns(name, servers, timeout)
    else:
        future = _lookups.submit(socket.getaddrinfo, name, None, proto=socket.IPPROTO_TCP)
        try:
            infos = future.result(timeout=timeout)
        except FutureTimeout:
            raise TimeoutError(f"{name} did not resolve within {timeout:g} s") from None
        except UnicodeError as exc:
            raise OSError(f"{name} is not a valid host name: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise OSError(f"{name} does not resolve to any address")
    return list(dict.fromkeys(addresses))


def checked_addresses(host: str, *, allow_private: bool, timeout: float) -> list[Address]:
    """The host's addresses, each allowed by the private-address rule, else BlockedHost.

    One refused address refuses the host: a name that answers a public and a loopback address
    must not reach the loopback one on the second try."""
    bare = host.strip().strip("[]").rstrip(".").lower()
    if not allow_private and (bare == "localhost" or bare.endswith(".localhost")):
        raise BlockedHost(f"{host} is a loopback address; give a public host.")
    addresses = resolve(host, timeout=timeout)
    if not allow_private:
        for address in addresses:
            if problem := address_problem(address, host):
                raise BlockedHost(problem)
    return addresses


def connect(
    host: str,
    port: int,
    *,
    timeout: float,
    allow_private: bool,
    deadline: Deadline | None = None,
) -> socket.socket:
    """A TCP connection to `host`, made to an address that was checked in this very call."""
    deadline = deadline or Deadline(timeout)
    addresses = checked_addresses(host, allow_private=allow_private, timeout=deadline.cap(timeout))
    error: OSError = OSError(f"cannot connect to {host}")
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.cap(timeout))
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            error = exc
            if isinstance(exc, TimeoutError):
                break  # the time is spent: don't start another connect
            continue
        return sock
    raise error


# What a provider host says, safely -----------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]+")


def sanitize(text: str, limit: int = 300) -> str:
    """A provider's own words for people and logs: control characters out, length bounded."""
    text = _UNSAFE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
