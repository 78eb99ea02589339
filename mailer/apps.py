"""App config for the mailer app."""

from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"
    verbose_name = "Email delivery"

    def ready(self) -> None:
        # Imported for what they register: the system checks and the metrics' signal receivers.
        from . import checks, metrics  # noqa: F401
