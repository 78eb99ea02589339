"""Create (once) the demo account of `make run` with an SMTP provider, and print a fresh token."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mailer.models import ProviderConfig
from mailer.services import provider_config_create, token_create, token_revoke


class Command(BaseCommand):
    help = (
        "Create the demo account once (password from DEMO_PASSWORD) with an SMTP provider "
        "pointing at the local sink; print the login and a fresh API token."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--smtp-host", default="127.0.0.1")
        parser.add_argument("--smtp-port", type=int, default=1025)

    def handle(self, *args, username, smtp_host, smtp_port, **options):
        password = os.environ.get("DEMO_PASSWORD")
        if not password:
            raise CommandError("DEMO_PASSWORD is not set (make run writes it to .env)")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(
                username=username, password=password, email=f"{username}@example.com"
            )
        if not ProviderConfig.objects.filter(account=user).exists():
            provider_config_create(
                account=user,
                kind="smtp",
                name="Local sink",
                priority=10,
                settings={"host": smtp_host, "port": smtp_port, "security": "none"},
                trusted=True,  # the operator's own sink, on loopback
            )
        # One live demo token at a time: each `make run` revokes the one before (the account
        # may hold at most MAX_API_TOKENS_PER_ACCOUNT).
        for earlier in user.api_tokens.filter(name="make run", revoked_at__isnull=True):
            token_revoke(token=earlier)
        _, raw = token_create(account=user, name="make run")
        self.stdout.write(f"Demo login:     {username} / {password}")
        self.stdout.write(f"Demo API token: {raw}")
