"""A customer's webhook endpoint on loopback: a ThreadingHTTPServer that verifies every request
with the standardwebhooks library and the endpoint's secret, keeps what it verified, and answers
a status the test switches (200 by default). Tests wait on its arrivals (a Condition), never
on sleeps. Given a port, it listens there (so a test can first leave that port closed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from harness.ports import HOST


@dataclass(frozen=True)
class Arrival:
    """One verified request, and the status it was answered."""

    webhook_id: str
    timestamp: int
    payload: dict[str, Any]
    answered: int
    path: str

    @property
    def type(self) -> str:
        return self.payload["type"]

    @property
    def data(self) -> dict[str, Any]:
        return self.payload["data"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver

    def verify_request(self, request, client_address) -> bool:
        with self.receiver.changed:
            self.receiver.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.receiver.take(self.path, dict(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver:
    def __init__(self, port: int = 0, *, status: int = 200, secret: str | None = None) -> None:
        self.secret = secret  # the endpoint's, once the test has it
        self.status = status
        self.arrivals: list[Arrival] = []
        self.refused: list[str] = []  # why a request did not verify
        self.connections = 0
        self.changed = threading.Condition()
        self._server = _Server((HOST, port), _Handler)
        self._server.receiver = self
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hooks/in"

    def take(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            payload = Webhook(self.secret or "whsec_none").verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            with self.changed:
                self.refused.append(str(exc))
                self.changed.notify_all()
            return 401
        status = self.status
        lowered = {k.lower(): v for k, v in headers.items()}
        arrival = Arrival(
            lowered["webhook-id"], int(lowered["webhook-timestamp"]), payload, status, path
        )
        assert json.loads(body) == payload
        with self.changed:
            self.arrivals.append(arrival)
            self.changed.notify_all()
        return status

    def wait_for(self, check: Callable[[], Any], *, what: str, timeout: float = 60) -> Any:
        """check()'s first truthy value, looked at each time a request arrives."""
        with self.changed:
            found = self.changed.wait_for(check, timeout=timeout)
        assert found, f"timed out waiting for {what}; arrived: {self.summary()}"
        return found

    def of_type(self, event_type: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.type == event_type]

    def types(self) -> set[str]:
        return {a.type for a in self.arrivals}

    def summary(self) -> list[tuple[str, str, int]]:
        return [(a.type, a.webhook_id, a.answered) for a in self.arrivals] + [
            ("refused", why, 0) for why in self.refused
        ]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# Named apart from its function, so test modules can import it without shadowing it.
@pytest.fixture(name="receiver")
def receiver_fixture():
    """receiver(port=0, status=200, secret=None) -> a started WebhookReceiver; each is stopped
    at the end of the test."""
    started: list[WebhookReceiver] = []

    def start(**options) -> WebhookReceiver:
        started.append(WebhookReceiver(**options))
        return started[-1]

    yield start
    for each in started:
        each.stop()
