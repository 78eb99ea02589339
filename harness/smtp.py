"""The SMTP sink (aiosmtpd) shared by tests and bench: it records or counts what arrives, can
script failures, AUTH, STARTTLS or implicit TLS with a certificate made at run time; and a
blackhole that accepts connections and never answers.

As a process of its own (the bench's): python -m harness.smtp --port P [--blackhole-port B]
[--stats-port S]; GET http://127.0.0.1:S/ answers {count, first, last}, /reset zeroes them.
Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import logging
import re
import signal
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.ports import HOST, free_port


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost; returns (cert_path, key_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        # Parsed as a mail client would after its transport turned CRLF into local newlines.
        return message_from_bytes(self.data.replace(b"\r\n", b"\n"), policy=policy.default)


@dataclass
class ScriptedHandler:
    """Accepts messages and records them (or, with keep=False, only counts them: the bench's
    sink over 50,000 sends); each reply can be scripted to fail.

    mail_reply / data_reply: an SMTP reply like "421 4.7.0 Try later" instead of success.
    rcpt_replies: address -> reply for that recipient.
    data_delay: seconds to sleep before answering DATA (stall after the message was sent).
    drop_after_data: close the connection after receiving the message, without answering.
    pipelining: offer PIPELINING (RFC 2920) in the EHLO answer, as most servers do; aiosmtpd
    answers pipelined commands one after the other, in order, as RFC 2920 asks.
    """

    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    data_delay: float = 0.0
    drop_after_data: bool = False
    pipelining: bool = True
    keep: bool = True
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    count: int = 0  # messages accepted (since the last reset)
    # Distinct Message-IDs among them: a sender that sends a message twice counts once here.
    distinct: int = 0
    first: float | None = None  # when the first and the last of them arrived (time.time())
    last: float | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()  # the Message-IDs counted in `distinct`

    def reset(self) -> None:
        with self._lock:
            self.count, self.distinct, self.first, self.last = 0, 0, None, None
            self._seen.clear()

    def stats(self) -> dict:
        with self._lock:
            return {"count": self.count, "distinct": self.distinct, "first": self.first,
                    "last": self.last}  # fmt: skip

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self._lock:
            self.connections += 1
        session.host_name = hostname
        if self.pipelining:  # before the last line ("250 HELP"), which ends the answer
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.drop_after_data:
            server.transport.abort()
            return "250 never seen"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        now = time.time()
        message_id = _message_id(envelope.original_content or envelope.content or b"")
        with self._lock:
            self.count += 1
            if message_id is None or message_id not in self._seen:
                self.distinct += 1
                if message_id is not None:
                    self._seen.add(message_id)
            self.first = self.first or now
            self.last = now
            if self.keep:
                self.received.append(
                    Received(
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        envelope.original_content or envelope.content,
                    )
                )
        return "250 2.0.0 Ok: queued"


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def _message_id(data: bytes | str) -> bytes | None:
    """The Message-ID header's value in the message's header block (None: it has none)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1) if found else None


class SmtpServer:
    """An aiosmtpd server on a free loopback port, running in its own thread."""

    def __init__(
        self,
        handler: ScriptedHandler | None = None,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        port: int | None = None,
        auth_mechanisms_excluded: list[str] | None = None,
    ) -> None:
        self.handler = handler or ScriptedHandler()
        self.port = port or free_port()
        options: dict = {}
        if starttls is not None:
            options.update(tls_context=starttls, require_starttls=True)
        if credentials is not None:
            user, password = credentials

            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = auth_data.login.decode() == user and auth_data.password.decode() == password
                return AuthResult(success=ok, handled=False)  # False: let aiosmtpd answer 535

            options.update(
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=starttls is not None or implicit_tls is not None,
                auth_exclude_mechanism=auth_mechanisms_excluded or [],
            )
        self.controller = Controller(
            self.handler,
            hostname=HOST,
            port=self.port,
            ssl_context=implicit_tls,
            server_hostname="localhost",
            ready_timeout=10,
            **options,
        )

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller._thread is not None:  # stop() twice would raise
            self.controller.stop()


class Blackhole:
    """Accepts TCP connections and never says a word: a provider that hangs."""

    HELD = 500  # clients gave up on the oldest long ago

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server((HOST, port), backlog=128)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)
            if len(self.accepted) > self.HELD:
                self.accepted.pop(0).close()

    def start(self) -> Blackhole:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def stats_server(port: int, handler: ScriptedHandler) -> ThreadingHTTPServer:
    """GET / answers the sink's {count, first, last}; GET /reset zeroes them first."""

    class Stats(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/reset":
                handler.reset()
            body = json.dumps(handler.stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((HOST, port), Stats)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    """The sink as a process of its own: it counts (keeps nothing), so it can take any load."""
    parser = argparse.ArgumentParser(description="A counting SMTP sink on loopback.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--blackhole-port", type=int)
    parser.add_argument("--stats-port", type=int)
    args = parser.parse_args(argv)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink = SmtpServer(ScriptedHandler(keep=False), port=args.port).start()
    hole = Blackhole(args.blackhole_port).start() if args.blackhole_port else None
    stats = stats_server(args.stats_port, sink.handler) if args.stats_port else None
    print("ready", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if stats is not None:
            stats.shutdown()
        if hole is not None:
            hole.stop()
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
