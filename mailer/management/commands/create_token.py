"""Create an API token for a user and print it (the raw token is the last line)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from mailer.services import token_create
from mailer.services.tokens import TokenLimitReached


class Command(BaseCommand):
    help = "Create an API token for USERNAME; prints the raw token as the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create the user (with an unusable password) if missing",
        )
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, *args, username, create_user, name, **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"no user named {username!r}; pass --create-user to create it")
            user = User.objects.create_user(username=username)
            self.stderr.write(
                f"created user {username!r} (no password; set one with "
                f"`manage.py changepassword {username}`)"
            )
        try:
            _, raw = token_create(account=user, name=name)
        except TokenLimitReached as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"token {name!r} for {username!r} (shown once, store it now):")
        self.stdout.write(raw)
