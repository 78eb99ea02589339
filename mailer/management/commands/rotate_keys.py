"""Re-encrypt every stored provider secret with the newest key in ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand
from django.db import transaction

from mailer import crypto
from mailer.models import ProviderConfig


class Command(BaseCommand):
    help = (
        "Re-encrypt provider secrets with the first key of ENCRYPTION_KEYS; afterwards the "
        "older keys can be removed."
    )

    def handle(self, *args, **options):
        count = 0
        with transaction.atomic():
            for config in ProviderConfig.objects.select_for_update().exclude(secrets_encrypted=""):
                config.secrets_encrypted = crypto.rotate(config.secrets_encrypted)
                config.save(update_fields=["secrets_encrypted"])
                count += 1
        self.stdout.write(f"re-encrypted the secrets of {count} provider config(s)")
