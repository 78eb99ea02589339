"""What every HTTP provider stand-in shares: a ThreadingHTTPServer on 127.0.0.1 and a free port,
served from a daemon thread; the switchable failure modes; the recording of what arrived; and
the pytest fixture that starts one for a test and stops it after.

A stand-in subclasses StubServer with only its provider's own part: `answer` (auth, the
documented validation, the success answer in the provider's shape), `failure` (the provider's
own 401, 429 and 500 bodies, and any failure modes of its own), where a redirect points, and
what else it keeps.

Modes, set with `server.mode = ...` (an unknown one raises ValueError):
- ok: `answer` the request.
- 401, 429, 500 and a stand-in's EXTRA_FAILURES: `failure(mode)` answers at once.
- redirect: answer REDIRECT_STATUS to REDIRECT_TO (formatted with the request's path).
- stall: the request arrived in full; answer nothing until `release` is set (stop() sets it),
  then close the connection.
- drop: the request arrived in full; close the connection without an answer.
Set `server.retry_after` to answer a 429 with that Retry-After header instead of the
stand-in's own ("" sends none; None, the default, keeps the stand-in's).
A stand-in with ANSWER_BEFORE_WITHHOLDING does everything `answer` does (it records the
message) before it stalls or drops: the provider sent it and only the answer was lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

import pytest

MODES = ("ok", "401", "429", "500", "stall", "drop", "redirect")
WITHHELD = ("stall", "drop")
# A stall that nothing released ends after this long, so a stand-in never outlives its test
# by much. Tests never wait for it: their client's timeout is far shorter, and stop() releases.
STALL_LIMIT = 10.0


@dataclass
class Request:
    """One POST as it arrived."""

    path: str
    headers: Message
    body: bytes
    peer: tuple[str, int]

    def content_type(self) -> str:
        return self.headers.get_content_type()


@dataclass
class Reply:
    """One answer: status, body and headers (Content-Length is added)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        headers = {"Content-Type": content_type, **(headers or {})}
        return cls(status, json.dumps(payload).encode(), headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Request(self.path, self.headers, body, self.client_address)
        server = self.server
        mode = server.arrived(request)
        if mode == "redirect":
            location = server.REDIRECT_TO.format(path=request.path)
            return self._send(Reply(server.REDIRECT_STATUS, headers={"Location": location}))
        if mode in WITHHELD and not server.ANSWER_BEFORE_WITHHOLDING:
            return self._withhold(mode)
        if mode in server.failure_modes():
            reply = server.failure(mode, request)
            if mode == "429" and server.retry_after is not None:
                reply = _with_retry_after(reply, server.retry_after)
        else:
            reply = server.answer(request, mode)
        if mode in WITHHELD:
            return self._withhold(mode)
        return self._send(reply)

    def _withhold(self, mode: str) -> None:
        if mode == "stall":
            self.server.release.wait(STALL_LIMIT)
        self.close_connection = True

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


def _with_retry_after(reply: Reply, value: str) -> Reply:
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "retry-after"}
    if value:
        headers["Retry-After"] = value
    return Reply(reply.status, reply.body, headers)


class StubServer(ThreadingHTTPServer):
    """A provider's HTTP API on 127.0.0.1 and a free port; `url` is its base URL (with URL_PATH).

    Records, under `lock`: `requests`, every raw body that arrived, answered or not; `peers`,
    the client address of each (one per kept-alive connection); `messages`, what `record` was
    given, with `_headers` and, when the provider names one, its id under ID_FIELD."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops a burst of connects (a test's 8 threads), whose
    # retried SYN comes after the client's 1 s connect timeout.
    request_queue_size = 64
    EXTRA_MODES: ClassVar[tuple[str, ...]] = ()  # the stand-in's own; `answer` sees them
    EXTRA_FAILURES: ClassVar[tuple[str, ...]] = ()  # the stand-in's own; `failure` answers them
    REDIRECT_STATUS: ClassVar[int] = 307
    REDIRECT_TO: ClassVar[str] = "https://elsewhere.example{path}"
    URL_PATH: ClassVar[str] = ""
    ANSWER_BEFORE_WITHHOLDING: ClassVar[bool] = False
    ID_FIELD: ClassVar[str] = "_message_id"  # where a recorded message keeps its id

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._mode = "ok"
        self.retry_after: str | None = None  # a 429's Retry-After instead of the stand-in's
        self.messages: list[dict[str, Any]] = []
        self.requests: list[bytes] = []
        self.peers: list[tuple[str, int]] = []
        self.lock = threading.RLock()
        self.release = threading.Event()  # ends every stall
        self.url = f"http://127.0.0.1:{self.server_port}{self.URL_PATH}"

    # What a stand-in fills in ---------------------------------------------------------------

    def answer(self, request: Request, mode: str) -> Reply:
        """The answer in mode "ok" (or one of EXTRA_MODES)."""
        raise NotImplementedError

    def failure(self, mode: str, request: Request) -> Reply:
        """The provider's own answer for "401", "429", "500" and EXTRA_FAILURES."""
        raise NotImplementedError

    def accepted_ids(self) -> list[str]:
        """The message id of each message accepted, as the provider names it to the sender."""
        with self.lock:
            return [m[self.ID_FIELD] for m in self.messages]

    # Shared ---------------------------------------------------------------------------------

    @classmethod
    def modes(cls) -> tuple[str, ...]:
        return (*MODES, *cls.EXTRA_FAILURES, *cls.EXTRA_MODES)

    @classmethod
    def failure_modes(cls) -> tuple[str, ...]:
        return ("401", "429", "500", *cls.EXTRA_FAILURES)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in self.modes():
            raise ValueError(f"{type(self).__name__} has no mode {value!r}: {self.modes()}")
        self._mode = value

    def arrived(self, request: Request) -> str:
        """Record a request read in full; the mode it is answered in."""
        with self.lock:
            self.requests.append(request.body)
            self.peers.append(request.peer)
            return self._mode

    def record(self, entry: dict[str, Any], request: Request, message_id: str | None = None):
        """Keep an accepted message, with the request's headers and the id it is answered with."""
        extra: dict[str, Any] = {"_headers": dict(request.headers.items())}
        if message_id is not None:
            extra[self.ID_FIELD] = message_id
        with self.lock:
            self.messages.append({**entry, **extra})

    def start(self) -> Self:
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()

    @classmethod
    @contextmanager
    def running(cls, *args: Any, **kwargs: Any) -> Iterator[Self]:
        """A started stand-in in mode "ok", stopped on leaving."""
        server = cls(*args, **kwargs).start()
        try:
            yield server
        finally:
            server.stop()


def stand_in_fixture(cls: type[StubServer], name: str) -> Callable[..., Iterator[StubServer]]:
    """The pytest fixture `name`: a started `cls()` in mode "ok", stopped after the test."""

    def fixture() -> Iterator[StubServer]:
        with cls.running() as server:
            yield server

    fixture.__doc__ = f"A started {cls.__name__} in mode 'ok' with its valid credentials."
    return pytest.fixture(name=name)(fixture)
