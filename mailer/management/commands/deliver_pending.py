"""The durable outbox's sweep by hand, from cron, or as a loop of its own (`--loop`): take back
stalled tries, then enqueue what is due (queue mode) or deliver it here (sync mode)."""

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from mailer.services import emails_sweep

logger = logging.getLogger("mailer.queue")


class Command(BaseCommand):
    help = (
        "Take back emails whose process died mid-send (still `sending` after their lease: "
        "SYNC_SENDING_LEASE_SECONDS for a web request in sync mode, SENDING_LEASE_SECONDS for a "
        "worker), ending each from its recorded attempts, and enqueue queued emails that are due "
        "but on no live message (enqueue lost, retry due). --inline delivers them in this "
        "process instead (the default in sync mode, which has no broker). --loop sweeps every "
        "SWEEP_INTERVAL_SECONDS until SIGTERM or Ctrl-C: sync mode's sweeper, one per host. "
        "Due webhook messages go the same way: sent here (inline) or enqueued."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--inline", action="store_true", help="deliver here instead of enqueueing"
        )
        parser.add_argument(
            "--limit", type=int, default=1000, help="at most this many emails of each kind"
        )
        parser.add_argument(
            "--loop", action="store_true", help="sweep again and again until stopped"
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between sweeps with --loop (default SWEEP_INTERVAL_SECONDS)",
        )

    def handle(self, *args, inline, limit, loop, interval, **options):
        inline = inline or settings.DELIVERY_MODE != "queue"
        if not loop:
            self._report(emails_sweep(inline=inline, limit=limit))
            return
        interval = settings.SWEEP_INTERVAL_SECONDS if interval is None else interval
        if interval <= 0:
            raise CommandError("--interval must be positive")
        self._loop(inline=inline, limit=limit, interval=interval)

    def _report(self, report) -> None:
        webhooks = f", webhooks {report.webhooks}" if report.webhooks else ""
        self.stdout.write(
            f"released {report.released}, enqueued {report.enqueued}, "
            f"delivered {report.delivered}, still waiting {report.waiting}{webhooks}"
        )

    def _loop(self, *, inline: bool, limit: int, interval: float) -> None:
        """Sweep every `interval` seconds. A sweep that fails (database or Redis away) is logged
        and the next one tries again; SIGTERM or SIGINT ends the loop once the sweep under way
        has stored what it did (a second one stops at once: leases cover whatever it held)."""
        stop = threading.Event()

        def on_signal(signum, frame):
            if stop.is_set():
                raise SystemExit(128 + signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        how = "delivering due emails here" if inline else "enqueueing due emails"
        self.stdout.write(f"Sweeping the outbox every {interval:g} s ({how})", ending="\n")
        self.stdout.flush()
        while not stop.is_set():
            close_old_connections()  # drop a connection the database closed meanwhile
            try:
                report = emails_sweep(inline=inline, limit=limit)
            except Exception:
                logger.exception("outbox sweep failed; trying again in %g s", interval)
            else:
                if any(report.__dict__.values()):  # only a sweep that did something
                    self._report(report)
                    self.stdout.flush()
            stop.wait(interval)
        self.stdout.write("Outbox sweep stopped")
