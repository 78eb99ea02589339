"""App config for the mailer app."""

from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"
    verbose_name = "Email delivery"

    def ready(self) -> None:
        # Imported for what they register: the system checks and the metrics' signal receivers.
        from . import accountcache, checks, metrics  # noqa: F401
        from .models import ProviderConfig, Suppression, WebhookEndpoint

        accountcache.connect_signals(accountcache.CONFIG, ProviderConfig, WebhookEndpoint)
        # An account's suppressions can be many: they stay deletable in one statement (an
        # account's cascade, suppression_delete), which stamps its deletes itself.
        accountcache.connect_signals(accountcache.SUPPRESSIONS, Suppression, deletes=False)
