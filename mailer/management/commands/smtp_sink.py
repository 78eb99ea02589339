"""A local SMTP sink for development and benchmarks: accepts everything, logs one line a message."""

import asyncio
import logging
import signal

from aiosmtpd.controller import Controller
from django.core.management.base import BaseCommand

logger = logging.getLogger("mailer.sink")


class _LoggingSink:
    def __init__(self, stdout) -> None:
        self.stdout = stdout
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        subject = ""
        for line in envelope.content.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"subject:"):
                subject = line[8:].strip().decode("ascii", "replace")
        self.stdout.write(
            f"sink #{self.count}: {envelope.mail_from} -> "
            f"{', '.join(envelope.rcpt_tos)} {subject!r} "
            f"({len(envelope.content)} bytes)"
        )
        return "250 2.0.0 Ok: queued"


class Command(BaseCommand):
    help = "Run an SMTP server that accepts every message and prints a line for each."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument("--quiet", action="store_true", help="do not print each message")

    def handle(self, *args, host, port, quiet, **options):
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        handler = _LoggingSink(_Null() if quiet else self.stdout)
        controller = Controller(handler, hostname=host, port=port, ready_timeout=10)
        controller.start()
        self.stdout.write(f"SMTP sink listening on {host}:{port}")
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            loop.run_until_complete(stop.wait())
        finally:
            controller.stop()
            loop.close()


class _Null:
    def write(self, *args, **kwargs) -> None:
        pass
