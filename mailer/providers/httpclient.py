"""HTTP for providers over mailer.providers.net: keep-alive connections pinned to a checked
address, the attempt's deadline over each exchange, no redirects followed, answers read up to a
small cap. Errors are the provider errors of base.py, split by whether the request can have been
acted on."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import AmbiguousDelivery, ConfigurationError, ProviderUnavailable
from .net import BlockedHost, Deadline, connect, enforced, sanitize, shutdown

MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes  # at most MAX_ANSWER_BYTES: a provider's answer is small, an endless one is cut


class HttpClient:
    """Keep-alive HTTP(S) connections to one origin, each pinned to a checked address.

    Never follows a redirect (a 3xx is the caller's to judge), never reads more than
    MAX_ANSWER_BYTES of an answer, and raises ProviderUnavailable when nothing of the request can
    have been acted on, AmbiguousDelivery when it was sent and no full answer came.
    """

    def __init__(
        self,
        base_url: str,
        *,
        label: str,
        timeout: float,
        connect_timeout: float,
        allow_private: bool,
        max_idle: int = 4,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{label}: {base_url!r} is not an http(s) URL", setting="host")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.label = label
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.allow_private = allow_private
        self._idle: list[http.client.HTTPConnection] = []
        self._max_idle = max_idle
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)

        def pinned(address, timeout=None, source_address=None):
            return connect(
                address[0],
                address[1],
                timeout=self.connect_timeout,
                allow_private=self.allow_private,
                deadline=conn.deadline,  # the deadline of the exchange that connects it
            )

        conn._create_connection = pinned  # type: ignore[attr-defined]
        return conn

    def _checkout(self, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            with self._lock:
                if self._idle:
                    return self._idle.pop(), True
        return self._new(), False

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(
        self, method: str, path: str, *, body: bytes, headers: dict[str, str], deadline: Deadline
    ) -> HttpAnswer:
        # A reused connection the server closed while idle fails before any answer: that request
        # can't have been acted on, so it is sent once more on a fresh connection.
        for fresh in (False, True):
            conn, reused = self._checkout(fresh)
            conn.deadline = deadline
            try:
                with enforced(deadline, lambda conn=conn: shutdown(conn.sock)) as cut:
                    answer = self._exchange(conn, method, path, body, headers, deadline, reused)
                if cut.fired:  # an answer cut short may be any answer: only the provider knows
                    raise AmbiguousDelivery(
                        f"{self.label} did not finish answering by the deadline", code="deadline"
                    )
            except _Stale:
                conn.close()
                continue
            except BaseException:
                conn.close()
                raise
            return answer
        raise AssertionError("unreachable: a fresh connection is never stale")

    def _exchange(self, conn, method, path, body, headers, deadline, reused) -> HttpAnswer:
        try:
            if conn.sock is None:
                conn.connect()
            conn.sock.settimeout(deadline.cap(self.timeout))
        except BlockedHost as exc:
            raise ConfigurationError(f"{self.label}: {exc}", setting="host") from exc
        except TimeoutError as exc:
            raise ProviderUnavailable(
                f"timed out connecting to {self.label}", code="timeout"
            ) from exc
        except OSError as exc:
            raise ProviderUnavailable(
                f"cannot connect to {self.label}: {sanitize(str(exc))}", code="connect"
            ) from exc
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            if reused:
                raise _Stale from exc
            raise ProviderUnavailable(
                f"{self.label} closed the connection before the request was sent", code="connect"
            ) from exc
        try:
            response = conn.getresponse()
        except http.client.RemoteDisconnected as exc:
            if reused:
                raise _Stale from exc
            raise AmbiguousDelivery(
                f"{self.label} closed the connection without an answer", code="disconnected"
            ) from exc
        except TimeoutError as exc:
            raise AmbiguousDelivery(
                f"{self.label} gave no answer within {self.timeout:g} s after the request was sent",
                code="timeout",
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise AmbiguousDelivery(
                f"{self.label} dropped the connection after the request was sent",
                code="disconnected",
            ) from exc
        try:
            data = response.read(MAX_ANSWER_BYTES + 1)
            complete = len(data) <= MAX_ANSWER_BYTES and response.isclosed()
        except (OSError, http.client.HTTPException):
            # The status line came, so the provider's decision is known; only its detail is lost.
            data, complete = b"", False
        answer = HttpAnswer(response.status, response.headers, data[:MAX_ANSWER_BYTES])
        if complete and not response.will_close:
            self._checkin(conn)
        else:
            conn.close()
        return answer


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before it took the request."""


def fetch(
    url: str, *, label: str, timeout: float, allow_private: bool, max_bytes: int = MAX_ANSWER_BYTES
) -> bytes:
    """GET one small document (a provider's signing certificate, a subscription link) over a
    pinned connection, within `timeout` in all: its body, or ProviderUnavailable when it can't
    be had (an answer that is not 200, cut short, or over `max_bytes`). No redirects."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    client = HttpClient(
        origin, label=label, timeout=timeout, connect_timeout=timeout, allow_private=allow_private
    )
    try:
        answer = client.request(
            "GET",
            path,
            body=b"",
            headers={"User-Agent": "emailservice"},
            deadline=Deadline(timeout),
        )
    except AmbiguousDelivery as exc:  # for a GET, no answer is just no answer
        raise ProviderUnavailable(exc.message, code=exc.code) from exc
    finally:
        client.close()
    if answer.status != 200:
        raise ProviderUnavailable(f"{label} answered HTTP {answer.status}", code=str(answer.status))
    if len(answer.body) > max_bytes or len(answer.body) >= MAX_ANSWER_BYTES:
        raise ProviderUnavailable(f"{label} sent more than {max_bytes} bytes", code="too_large")
    return answer.body
