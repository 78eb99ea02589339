"""The durable outbox's sweep by hand or from cron: take back stalled tries, enqueue what is due."""

from django.conf import settings
from django.core.management.base import BaseCommand

from mailer.services import emails_sweep


class Command(BaseCommand):
    help = (
        "Take back emails whose worker died mid-send (stuck in `sending` past "
        "SENDING_LEASE_SECONDS) and enqueue queued emails that are due but on no live message "
        "(enqueue lost, retry due). --inline delivers them in this process instead (the "
        "default in sync mode, which has no broker)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--inline", action="store_true", help="deliver here instead of enqueueing"
        )
        parser.add_argument(
            "--limit", type=int, default=1000, help="at most this many emails of each kind"
        )

    def handle(self, *args, inline, limit, **options):
        inline = inline or settings.DELIVERY_MODE != "queue"
        report = emails_sweep(inline=inline, limit=limit)
        self.stdout.write(
            f"released {report.released}, enqueued {report.enqueued}, "
            f"delivered {report.delivered}, still waiting {report.waiting}"
        )
