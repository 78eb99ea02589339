"""System checks (`manage.py check`): settings the app reads only when it first uses them."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from mailer.provider_settings import provider_urls
from mailer.providers import specs


@register()
def check_mail_provider_urls(app_configs=None, **kwargs) -> list[Error]:
    """Every MAIL_PROVIDER_URLS entry must be a provider URL the site's mail can be sent with."""
    urls = settings.MAIL_PROVIDER_URLS
    if not urls:
        return [
            Error(
                "MAIL_PROVIDER_URLS is empty: the site's own mail (password resets) can't be sent.",
                hint="Set it to one or more provider URLs, e.g. smtp://user:pass@host:587.",
                id="mailer.E001",
            )
        ]
    try:
        provider_urls(urls, source="MAIL_PROVIDER_URLS")
    except ValueError as exc:
        return [
            Error(
                f"The site's own mail can't be sent: {exc}",
                hint="Use one of "
                + ", ".join(spec.url_example for spec in specs().values())
                + " (see README: MAIL_PROVIDER_URLS).",
                id="mailer.E002",
            )
        ]
    return []
