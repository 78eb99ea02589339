"""Hosts an attacker controls, on loopback: a server that trickles its answer forever, an HTTP
host that redirects to an internal one, an internal service with secrets, and a DNS server whose
answer for a name changes from a public address to 127.0.0.1 (rebinding)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset


class Trickler:
    """Accepts connections; optionally reads an HTTP request; then sends `first` and `line`
    every `interval` seconds, forever: each read of the client finishes within its timeout,
    and the answer never ends."""

    def __init__(self, first: bytes, line: bytes, *, interval: float, http: bool = False) -> None:
        self.first, self.line, self.interval, self.http = first, line, interval, http
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed_by_peer = threading.Event()
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.http:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                conn.sendall(self.first)
                while not self._stop.wait(self.interval):
                    conn.sendall(self.line)
            except OSError:
                self.closed_by_peer.set()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


class _Recording(BaseHTTPRequestHandler):
    """Records each request, then answers its class's `status`, `headers_out` and `body`."""

    status, headers_out, body = 200, {}, b""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.rfile.read(length)
        self.send_response(self.status)
        for name, value in {**self.headers_out, "Content-Length": str(len(self.body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(self.body)


class _HttpHost:
    """A ThreadingHTTPServer on loopback that records requests and gives one fixed answer."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        handler = type(
            "Handler", (_Recording,), {"status": status, "body": body, "headers_out": headers or {}}
        )
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.requests = []
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list:
        return self.server.requests

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Internal(_HttpHost):
    """An internal HTTP service that must never be reached: it answers a secret to anyone, in
    SendGrid's error shape, so a client that quotes such errors would quote it."""

    SECRET = "INTERNAL-SECRET-7f3a"

    def __init__(self) -> None:
        super().__init__(400, f'{{"errors": [{{"message": "{self.SECRET}"}}]}}'.encode())


class Redirector(_HttpHost):
    """An HTTP host that answers every request with `status` and a Location elsewhere, and a
    body that must not be echoed either."""

    def __init__(self, location: str, status: int = 302) -> None:
        super().__init__(status, f"moved; {Internal.SECRET}".encode(), {"Location": location})


class RebindingDns:
    """A DNS server on UDP loopback. Each name in `names` answers `public` for its first
    `public_answers` A queries, then 127.0.0.1 for ever after; AAAA has no answer."""

    def __init__(self, names: list[str], *, public: str = "93.184.215.14", public_answers=1):
        self.names = {n.rstrip(".").lower(): 0 for n in names}
        self.public, self.public_answers = public, public_answers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answers: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name in self.names and question.rdtype == dns.rdatatype.A:
                with self._lock:
                    self.names[name] += 1
                    count = self.names[name]
                address = self.public if count <= self.public_answers else "127.0.0.1"
                self.answers.append((name, address))
                response.answer.append(dns.rrset.from_text(question.name, 0, "IN", "A", address))
            self.sock.sendto(response.to_wire(), peer)

    def stop(self) -> None:
        self.sock.close()
