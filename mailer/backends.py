"""A Django email backend that fails over across other MAILERS entries, for the site's own mail."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import InvalidMailer, mailers
from django.core.mail.backends.base import BaseEmailBackend

from .delivery.failover import Candidate, deliver
from .providers.base import Provider, ProviderError
from .providers.net import Deadline

logger = logging.getLogger("mailer.backends")


class DeliveryFailed(ProviderError):
    """No configured mailer accepted a message; the message says why."""


class FailoverEmailBackend(BaseEmailBackend):
    """MAILERS = {"default": {"BACKEND": "mailer.backends.FailoverEmailBackend",
    "OPTIONS": {"mailers": ["primary", "backup"]}}, "primary": {...}, "backup": {...}}

    Each named mailer must be a provider backend (mailer.providers.*). Circuit state is shared
    with the rest of the service through the cache, under "mailer:<alias>".
    """

    def __init__(
        self, *, mailers: list[str] | None = None, alias: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(alias=alias, **kwargs)
        if not mailers:
            raise InvalidMailer(
                "OPTIONS['mailers'] must list at least one MAILERS alias.", alias=alias
            )
        if alias is not None and alias in mailers:
            raise InvalidMailer("A failover mailer cannot list itself.", alias=alias)
        self.mailer_aliases = list(mailers)
        self._candidates: list[Candidate] | None = None

    def _build(self) -> list[Candidate]:
        candidates = []
        for name in self.mailer_aliases:
            backend = mailers[name]
            if not isinstance(backend, Provider):
                raise InvalidMailer(
                    f"MAILERS[{name!r}] is {type(backend).__name__}, not a provider backend "
                    "(mailer.providers.*), so its failures can't be classified.",
                    alias=self.alias,
                )
            candidates.append(
                Candidate(key=f"mailer:{name}", label=f"mailer '{name}'", provider=backend)
            )
        return candidates

    def open(self) -> bool:
        if self._candidates is not None:
            return False
        self._candidates = self._build()
        return True

    def close(self) -> None:
        for candidate in self._candidates or []:
            candidate.provider.close()
        self._candidates = None

    def send_messages(self, email_messages) -> int:
        from .services import breaker

        messages = [m for m in email_messages if m.recipients()]
        if not messages:
            return 0
        opened = self.open()
        sent = 0
        try:
            for message in messages:
                delivery = deliver(
                    message,
                    self._candidates or [],
                    breaker=breaker(),
                    budget=Deadline(settings.SEND_BUDGET_SECONDS),
                )
                if delivery.accepted is None:
                    raise DeliveryFailed(delivery.failure_reason, code="all_failed")
                sent += 1
        finally:
            if opened:
                self.close()
        return sent
