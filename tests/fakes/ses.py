"""Amazon SES stand-ins: moto's real HTTP server on loopback, and a server that only errs."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
DUMMY_KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}


@dataclass(frozen=True)
class MotoSes:
    endpoint_url: str

    def _client(self):
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client("sesv2", endpoint_url=self.endpoint_url)

    def verify(self, identity: str) -> None:
        """Verify an address or a whole domain; moto treats a created identity as verified."""
        self._client().create_email_identity(EmailIdentity=identity)

    def sent(self) -> list[dict]:
        """Raw messages moto accepted: dicts with id, source, destinations and raw_data."""
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json") as response:
            return json.load(response)["ses"]["RawMessage"]

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request).close()


# Each fixture's function has its own name so a test module can import it without its
# parameters shadowing the import.
@pytest.fixture(scope="session", name="moto_ses")
def moto_ses_fixture() -> Iterator[MotoSes]:
    """moto's server in a thread, on a loopback port the OS picks, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoSes(f"http://{host}:{port}")
    server.stop()


@pytest.fixture(name="ses")
def ses_fixture(moto_ses: MotoSes) -> MotoSes:
    """moto_ses with no identity and no sent message left over from an earlier test."""
    moto_ses.reset()
    return moto_ses


class ErrorServer(ThreadingHTTPServer):
    """Answers every request with one SESv2 (rest-json) error, shaped as AWS shapes it."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(("127.0.0.1", 0), _ErrorHandler)
        self.status, self.error_type = status, error_type
        self.body = json.dumps({"message": message}).encode()
        self.requests = 0  # how many requests came in: an SDK retry would show here
        self.endpoint_url = f"http://127.0.0.1:{self.server_address[1]}"


class _ErrorHandler(BaseHTTPRequestHandler):
    server: ErrorServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        self.send_response(self.server.status)
        self.send_header("x-amzn-ErrorType", self.server.error_type)
        self.send_header("x-amzn-RequestId", "fake-request-id")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(name="ses_error_server")
def ses_error_server_fixture() -> Iterator[Callable[[int, str, str], ErrorServer]]:
    """start(status, error_type, message) -> a started ErrorServer,
    e.g. start(429, "TooManyRequestsException", "Maximum sending rate exceeded.")."""
    servers: list[tuple[ErrorServer, threading.Thread]] = []

    def start(status: int, error_type: str, message: str) -> ErrorServer:
        server = ErrorServer(status, error_type, message)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
