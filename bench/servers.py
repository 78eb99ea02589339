"""Loopback servers for the bench, in one process: a counting SMTP sink (aiosmtpd), a blackhole
SMTP server (accepts TCP, never answers) and a small HTTP endpoint that reports the sink's count.

Run: python -m bench.servers SINK_PORT BLACKHOLE_PORT STATS_PORT. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


class CountingSink:
    """Accepts every message; remembers how many arrived and when the first and last did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.count = 0
            self.first = None
            self.last = None

    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        with self.lock:
            self.count += 1
            self.first = self.first or now
            self.last = now
        return "250 2.0.0 Ok: queued"

    def stats(self) -> dict:
        with self.lock:
            return {"count": self.count, "first": self.first, "last": self.last}


def blackhole(port: int, stop: threading.Event) -> None:
    """Accept connections and hold them open in silence, as a provider that hangs does."""
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", port), backlog=128) as server:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)
            if len(held) > 500:  # clients gave up on these long ago
                held.pop(0).close()
    for conn in held:
        conn.close()


def stats_server(port: int, sink: CountingSink) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/reset":
                sink.reset()
            body = json.dumps(sink.stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    sink_port, blackhole_port, stats_port = (int(a) for a in sys.argv[1:4])
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink = CountingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, ready_timeout=10)
    controller.start()
    hole = threading.Thread(target=blackhole, args=(blackhole_port, stop), daemon=True)
    hole.start()
    stats = stats_server(stats_port, sink)
    print("ready", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stats.shutdown()
        controller.stop()
        hole.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
